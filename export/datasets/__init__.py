"""Data sets: every signal the export package trains on, and the registry that names them.

`dataset(spec)` is the one place the rest of export/ learns what a data spec (fashion-mnist,
folder:DIR, gp-curves, ...) trains on, which signal kind it is, its demo, and the sets that calibrate
and check int8 graphs (export/datasets/base.py says how to add one).
"""
from export.datasets.base import (  # noqa: F401 - the registry's public names
    DEFAULT_DATA,
    FASHION_DIR,
    Dataset,
    SignalDraw,
    TrainingData,
    dataset,
    names,
    registry,
    split_spec,
)
