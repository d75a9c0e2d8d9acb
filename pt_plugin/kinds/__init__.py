"""One small module per signal kind (image, curve, video, volume), chosen by model.json's signal.kind."""
from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..signal import Signal
from .base import Kind, Observation, Outputs
from .curve import CurveKind
from .image import ImageKind
from .pictures import picture_format
from .video import VideoKind
from .volume import VolumeKind

KINDS: dict[str, type[Kind]] = {"image": ImageKind, "curve": CurveKind, "video": VideoKind, "volume": VolumeKind}


def kind_for(signal: Signal) -> Kind:
    """The Kind that reads, observes and writes signals of this model."""
    if signal.kind not in KINDS:
        raise InputError(f"pt-plugin's command line has no reader or writer for {signal.kind} signals yet "
                         f"({', '.join(KINDS)} have one); use the Python API (mean_grid, sample_grid)")
    return KINDS[signal.kind]()


def check_out_name(path) -> None:
    """Before the model is known: --out must end in a picture format, or in a suffix some kind writes (.ply)."""
    others = {s: k.name for k in KINDS.values() for s in k.out_suffixes}
    if Path(path).suffix.lower() not in others:
        try:
            picture_format(Path(path))
        except InputError as e:
            also = "; ".join(f"{name} models also write {', '.join(s for s in others if others[s] == name)}"
                             for name in dict.fromkeys(others.values()))
            raise InputError(f"{e}{'; ' + also if also else ''}") from None


__all__ = ["Kind", "Observation", "Outputs", "kind_for", "check_out_name", "KINDS"]
