"""Checks and documented conversions of user arrays, before anything reaches onnxruntime.

Conversions (documented): lists, float64 and other real dtypes become float32; non-contiguous
arrays are copied to contiguous ones; the caller's arrays are never modified.
Refusals (InputError): wrong rank or last dimension, mismatched lengths, empty sets, NaN or
infinite entries, positions outside [-1, 1], values outside the model's value range.
"""
from __future__ import annotations

import numpy as np

from .errors import InputError

POSITION_TOLERANCE = 1e-5  # positions may exceed [-1, 1] by this much (float rounding)


def as_float32(a, name: str) -> np.ndarray:
    """Any real array-like -> a new C-contiguous float32 array (the input is never modified)."""
    try:
        arr = np.asarray(a)
    except Exception as e:  # noqa: BLE001 - ragged lists and other non-arrays
        raise InputError(f"{name} could not be read as an array: {e}") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InputError(f"{name} must be a real-valued numeric array, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise InputError(f"{name} must be real-valued, got complex dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def check_finite(arr: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0].tolist()
        raise InputError(f"{name} contains NaN or infinite values (first at index {bad}); all entries must be finite")


def positions(a, pos_dim: int, name: str = "positions", batched: bool = False) -> np.ndarray:
    """[N, pos_dim] (or [B, N, pos_dim] when batched) float32 positions in [-1, 1]."""
    arr = as_float32(a, name)
    want = 3 if batched else 2
    if arr.ndim == 1 and pos_dim == 1 and not batched:
        arr = arr[:, None]
    if arr.ndim != want or arr.shape[-1] != pos_dim:
        shape = "[batch, N, pos_dim]" if batched else "[N, pos_dim]"
        raise InputError(f"{name} has shape {arr.shape}; expected {shape} with pos_dim={pos_dim}")
    check_finite(arr, name)
    if arr.size and np.abs(arr).max() > 1 + POSITION_TOLERANCE:
        raise InputError(f"{name} has entries outside [-1, 1] (max |x| = {np.abs(arr).max():.4g}); positions are "
                         "normalised coordinates: pixel (i, j) of an HxW grid is x=(j+0.5)/W*2-1, y=(i+0.5)/H*2-1 "
                         "(pt_plugin.grid_positions gives them)")
    return np.clip(arr, -1, 1)


def values(a, val_dim: int, value_range: tuple[float, float], name: str = "values",
           batched: bool = False) -> np.ndarray:
    """[N, val_dim] (or batched) float32 values inside the model's value range."""
    arr = as_float32(a, name)
    want = 3 if batched else 2
    if arr.ndim == want - 1 and val_dim == 1:
        arr = arr[..., None]
    if arr.ndim != want or arr.shape[-1] != val_dim:
        shape = "[batch, N, val_dim]" if batched else "[N, val_dim]"
        raise InputError(f"{name} has shape {arr.shape}; expected {shape} with val_dim={val_dim}")
    check_finite(arr, name)
    lo, hi = value_range
    slack = 1e-3 * (hi - lo)
    if arr.size and (arr.min() < lo - slack or arr.max() > hi + slack):
        raise InputError(f"{name} range from {arr.min():.4g} to {arr.max():.4g} lies outside the model's value range "
                         f"[{lo}, {hi}] (images: divide 8-bit pixels by 255)")
    return arr


def sample_set(pos, val, pos_dim: int, val_dim: int, value_range) -> tuple[np.ndarray, np.ndarray]:
    """A non-empty sample set S: positions [K, pos_dim] and values [K, val_dim] of equal length."""
    p = positions(pos, pos_dim, "sample positions")
    v = values(val, val_dim, value_range, "sample values")
    if len(p) != len(v):
        raise InputError(f"sample positions ({len(p)}) and sample values ({len(v)}) differ in length; "
                         "each position needs one value")
    if len(p) == 0:
        raise InputError("the sample set is empty; give at least one (position, value) sample")
    return p, v


def positive_int(n, name: str, minimum: int = 1) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {n!r}")
    return int(n)


def positive_float(x, name: str) -> float:
    """A finite number > 0 (temperatures, scales); bools and strings are refused."""
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)) or not 0 < x < np.inf:
        raise InputError(f"{name} must be a finite number > 0, got {x!r}")
    return float(x)
