"""Which protocol measures a model, and which one wrote a report: the one place that dispatches.

A protocol is a module of export.evaluate with
  NAME                               written to the report as settings.protocol
  evaluate(shipped, args) -> report  runs it (args: export.evaluate's options), writes metrics.json/.md into args.out
  markdown(report) -> str            the report as Markdown
  summary(report) -> dict            what model.json's "metrics" keeps
  card_blocks(report) -> dict        the MODEL_CARD.md blocks it fills (export.tools.model_card)
Reports carry their protocol, so nothing downstream guesses it from their keys.
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType

from export.errors import DataError, UsageError
from export.evaluate.protocol import Shipped

PROTOCOLS = {"gray": "export.evaluate.gray", "rgb": "export.evaluate.rgb", "curves": "export.evaluate.curves",
             "volume": "export.evaluate.volume", "video": "export.evaluate.video"}
BY_KIND = {"curve": "curves", "volume": "volume", "video": "video"}  # images: gray or rgb by their channels


def protocol(name: str) -> ModuleType:
    if name not in PROTOCOLS:
        raise DataError(f"unknown evaluation protocol {name!r}; expected one of {', '.join(PROTOCOLS)}")
    return importlib.import_module(PROTOCOLS[name])


def protocol_for(shipped: Shipped) -> ModuleType:
    """The protocol of a model's signal kind: images by channel count (1 gray, 3 RGB)."""
    kind, channels = shipped.kind, shipped.model.val_dim
    if kind == "image":
        if channels not in (1, 3):
            raise UsageError(f"{shipped.source}: no image protocol for {channels} channels; expected 1 or 3")
        return protocol("gray" if channels == 1 else "rgb")
    if kind not in BY_KIND:
        raise UsageError(f"{shipped.source}: no evaluation protocol for signal kind {kind!r}")
    return protocol(BY_KIND[kind])


def protocol_of(report: dict) -> ModuleType:
    """The protocol that wrote a report (settings.protocol)."""
    try:
        return protocol(report["settings"]["protocol"])
    except (KeyError, TypeError):
        raise DataError("the report names no protocol (settings.protocol); expected the metrics.json of "
                        "python -m export.evaluate") from None


def summary(report: dict) -> dict:
    """model.json's "metrics" for a report."""
    return protocol_of(report).summary(report)


def card_blocks(report: dict) -> dict[str, str]:
    """The model card blocks a report fills."""
    return protocol_of(report).card_blocks(report)


def record(folder: Path, report: dict) -> Path:
    """Write a report's summary into an export folder's model.json ("metrics"), the rest unchanged."""
    path = Path(folder) / "model.json"
    meta = json.loads(path.read_text())
    meta["metrics"] = summary(report)
    path.write_text(json.dumps(meta, indent=2) + "\n")
    return path
