"""Where calibration and parity sets come from: uniform random sets, or the draws of a registered data set.

A source is "random" (positions and values uniform over the model's ranges: no data needed), "auto" (the
model's training data, model.json training.data, where its data set gives draws and its data can be read
here; random otherwise), or any data spec of export.datasets whose data set gives draws (`choices()`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from export.datasets import FASHION_DIR, Dataset, SignalDraw, dataset, registry
from export.errors import ConfigError, DataError, UsageError

RANDOM = "random"
AUTO = "auto"


def random_draw(meta: dict[str, Any], n: int, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n sets of k samples at uniform positions with uniform values in the value range (no data needed)."""
    lo, hi = meta["value_range"]
    pos = rng.uniform(-1, 1, (n, k, meta["pos_dim"])).astype(np.float32)
    return pos, rng.uniform(lo, hi, (n, k, meta["val_dim"])).astype(np.float32)


def choices() -> list[str]:
    """What --calibration-data and --parity-data take: auto, random, and every registered spec with draws."""
    specs = [f"{d.name}:DIR" if d.takes_dir else d.name for d in registry().values() if d.draws is not None]
    return [AUTO, RANDOM, *specs]


def _with_draws(spec: str) -> Dataset | None:
    """The registered data set of `spec` if it gives draws, else None."""
    try:
        entry = dataset(spec)
    except ConfigError:
        return None
    return entry if entry.draws is not None else None


def _refusal(spec: str) -> UsageError:
    """The error for a spec that names no source: the sources there are (and why a registered one is not)."""
    try:
        why = f" ({dataset(spec).name} gives no sets to draw; random sets fit it)"
    except ConfigError:
        why = ""
    listed = choices()
    return UsageError(f"{spec!r}{why}: expected {', '.join(listed[:-1])} or {listed[-1]}")


def check(spec: str) -> str:
    """`spec` when it names a source; a UsageError listing the sources otherwise."""
    if spec in (AUTO, RANDOM) or _with_draws(spec) is not None:
        return spec
    raise _refusal(spec)


def _data_folder(data_dir: Path | None) -> str:
    """The data folder handed to the registry (--data-dir, else the registry's default)."""
    return str(data_dir or FASHION_DIR)


def resolve(meta: dict[str, Any], source: str, data_dir: Path | None) -> str:
    """"auto" becomes the model's training data where its data set gives draws and is available here, else
    random; any other source stands."""
    if source != AUTO:
        return source
    trained_on = meta.get("training", {}).get("data")
    entry = _with_draws(trained_on or "")
    return trained_on if entry is not None and entry.available(trained_on, _data_folder(data_dir)) else RANDOM


def draws(meta: dict[str, Any], source: str, data_dir: Path | None, split: str = "train") -> SignalDraw:
    """The sets of a source (resolved: not "auto") at `split` (calibration reads "train", parity "test");
    refuses a source that gives no sets or whose data is missing or does not fit the model."""
    if source == RANDOM:
        return random_draw
    entry = _with_draws(source)
    if entry is None:
        raise _refusal(source)
    entry.check_dims(meta["pos_dim"], meta["val_dim"])
    try:
        return entry.draws(source, _data_folder(data_dir), split)
    except DataError as e:
        raise DataError(f"sets from {source!r} ({split} split): {e}") from None
