"""What a registered data set provides, and the registry that finds one by its spec.

A data spec is `NAME` or `NAME:DIR` (fashion-mnist, gp-curves, folder:data/emoji/train). Training,
export, quantization, evaluation and the tools ask `dataset(spec)` for what they need; none of them
names a data set. Adding one: a module in export/datasets/ whose `DATASETS` tuple holds its `Dataset`
entries, and its name in `MODULES` (docs/ARCHITECTURE.md has a worked example).

This module stays light (no torch): the modules behind the registry are imported on first lookup.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import numpy as np

from export.errors import ConfigError, DataError

DEFAULT_DATA = "fashion-mnist"                    # what `python -m export.train` trains on without a config
FASHION_DIR = "/usr/share/datasets/fashion-mnist"  # where Debian's dataset-fashion-mnist puts the IDX files
MODULES = ("export.datasets.images", "export.datasets.curves", "export.datasets.shapes", "export.datasets.video")

# (model.json-like dict with pos_dim/val_dim/value_range, n sets, k samples each, rng) -> positions, values
SignalDraw = Callable[[dict, int, int, np.random.Generator], "tuple[np.ndarray, np.ndarray]"]


class TrainingData(NamedTuple):
    """What export.train trains on: a sampler per starting step, fixed validation batches, a log line."""
    sampler: Callable[[int], Any]  # first step -> an object whose .batch() is (spos, sval, mask, qpos, qval)
    validation: list               # the same held-out batches at every validation
    what: str                      # e.g. "59500 images"


@dataclass(frozen=True)
class Dataset:
    """One data set and the functions every part of export/ asks it for.

    `spec` arguments are the full spec (`folder:DIR`), `data_dir` the config's data folder (used by the
    data sets read from Fashion-MNIST's IDX files)."""
    name: str        # the spec's name: "fashion-mnist", or the prefix of "folder:DIR"
    kind: str        # the pt_plugin signal kind it trains: image | curve | volume | video
    about: str       # one line for help texts and model cards
    dims: tuple[int, int] | None  # (pos_dim, val_dim) the data fixes; None: images, whose channels decide
    training: Callable[[Any, int], TrainingData]                # (export.config.Config, DDP rank)
    demo: Callable[[str, str, int], dict[str, np.ndarray]]      # (spec, data_dir, seed) -> demo.npz arrays
    draws: Callable[[str, str, str], SignalDraw] | None = None  # (spec, data_dir, split): sets as training
    #                                                             draws them (int8 calibration, parity); None: none
    available: Callable[[str, str], bool] = lambda spec, data_dir: True  # can its data be read here?
    takes_dir: bool = False  # the spec is NAME:DIR

    def check_dims(self, pos_dim: int, val_dim: int) -> None:
        """Refuse a model whose position or value dimension this data cannot fill."""
        if self.dims is not None and (pos_dim, val_dim) != self.dims:
            raise DataError(f"{self.name} ({self.about}) needs a model with pos_dim {self.dims[0]} and val_dim "
                            f"{self.dims[1]}; got {pos_dim} and {val_dim}")


def split_spec(spec: str) -> tuple[str, str]:
    """("folder", "DIR") for "folder:DIR", ("gp-curves", "") for "gp-curves"."""
    name, _, where = spec.partition(":")
    return name, where


_REGISTRY: dict[str, Dataset] = {}


def registry() -> dict[str, Dataset]:
    """Every registered data set by name (the modules of MODULES, imported once)."""
    if not _REGISTRY:
        for module in MODULES:
            for entry in importlib.import_module(module).DATASETS:
                if entry.name in _REGISTRY:
                    raise ConfigError(f"data set {entry.name!r} is registered twice ({module})")
                _REGISTRY[entry.name] = entry
    return _REGISTRY


def names() -> list[str]:
    """The specs a user can write, e.g. ["fashion-mnist", "idx:DIR", ...], for help texts and errors."""
    return [f"{d.name}:DIR" if d.takes_dir else d.name for d in registry().values()]


def dataset(spec: str) -> Dataset:
    """The registered data set of a spec; a ConfigError naming the known ones otherwise."""
    name, where = split_spec(spec or "")
    entry = registry().get(name)
    if entry is None or entry.takes_dir != bool(where):
        raise ConfigError(f"unknown data {spec!r}; expected one of {', '.join(names())}")
    return entry
