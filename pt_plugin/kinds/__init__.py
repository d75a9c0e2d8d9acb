"""One small module per signal kind (image, curve, video, volume), chosen by model.json's signal.kind."""
from __future__ import annotations

from ..errors import InputError
from ..signal import Signal
from .base import Kind, Observation, Outputs
from .curve import CurveKind
from .image import ImageKind
from .video import VideoKind

KINDS: dict[str, type[Kind]] = {"image": ImageKind, "curve": CurveKind, "video": VideoKind}


def kind_for(signal: Signal) -> Kind:
    """The Kind that reads, observes and writes signals of this model."""
    if signal.kind not in KINDS:
        raise InputError(f"pt-plugin's command line has no reader or writer for {signal.kind} signals yet "
                         f"({', '.join(KINDS)} have one); use the Python API (mean_grid, sample_grid)")
    return KINDS[signal.kind]()


__all__ = ["Kind", "Observation", "Outputs", "kind_for", "KINDS"]
