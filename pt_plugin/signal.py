"""What a model's numbers mean: model.json's `signal` block (kind, axes, grid, channels, units).

The runtime's model, sessions, distribution and sampler never look at the kind; the CLI and the
per-kind modules in pt_plugin.kinds do. Exports older than the block get one derived from
pos_dim / val_dim / grid, so every model has a Signal.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KINDS = ("image", "curve", "volume", "video")
DEFAULT_AXES = {1: ("x",), 2: ("x", "y"), 3: ("x", "y", "z")}
DEFAULT_CHANNELS = {1: ("value",), 3: ("r", "g", "b")}


@dataclass(frozen=True)
class Signal:
    """kind: image | curve | volume | video; axes: the position columns in order; grid: the training
    grid in array order (the reverse of axes: [H, W] for axes (x, y)) or None; channels: one name per
    value dimension; units and value_range: what a value means."""
    kind: str
    axes: tuple[str, ...]
    grid: tuple[int, ...] | None
    channels: tuple[str, ...]
    units: str
    value_range: tuple[float, float]

    @property
    def array_axes(self) -> tuple[str, ...]:
        """Names of the axes of a grid array, e.g. ("y", "x") for an image [H, W]."""
        return tuple(reversed(self.axes))

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "axes": list(self.axes), "grid": list(self.grid) if self.grid else None,
                "array_axes": list(self.array_axes), "channels": list(self.channels), "units": self.units,
                "value_range": list(self.value_range)}


def derived_signal(pos_dim: int, val_dim: int, grid, value_range) -> Signal:
    """The signal of an export without a `signal` block: 2-D models are images, 1-D ones curves."""
    kind = {1: "curve", 2: "image"}.get(pos_dim, "volume")
    channels = ("gray",) if (kind == "image" and val_dim == 1) else DEFAULT_CHANNELS.get(
        val_dim, tuple(f"v{i}" for i in range(val_dim)))
    axes = DEFAULT_AXES.get(pos_dim, tuple(f"x{i}" for i in range(pos_dim)))
    units = "intensity in [0, 1]" if kind == "image" else "value"
    return Signal(kind, axes, tuple(grid) if grid else None, channels, units, tuple(value_range))


def signal_from_json(block: dict[str, Any]) -> Signal:
    """A Signal from model.json's block (validated by pt_plugin.metadata before it gets here)."""
    return Signal(block["kind"], tuple(block["axes"]), tuple(block["grid"]) if block.get("grid") else None,
                  tuple(block["channels"]), str(block.get("units", "")), tuple(block["value_range"]))
