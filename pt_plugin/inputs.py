"""Checks and documented conversions of user arrays, before anything reaches onnxruntime.

Conversions (documented): lists, float64 and other real dtypes become float32; non-contiguous
arrays are copied to contiguous ones; the caller's arrays are never modified.
Refusals (InputError): wrong rank or last dimension, mismatched lengths, empty sets, NaN or
infinite entries, positions outside [-1, 1], values outside the model's value range; scalar
arguments of the wrong type or range (counts, seeds, fractions, grid shapes); calls whose memory
estimate exceeds PT_PLUGIN_MAX_MEMORY_GB (see check_memory).
"""
from __future__ import annotations

import inspect
import math
import os
from typing import Any, Callable

import numpy as np

from .errors import InputError
from .text import gib, number

POSITION_TOLERANCE = 1e-5  # positions may exceed [-1, 1] by this much (float rounding)
MEMORY_ENV = "PT_PLUGIN_MAX_MEMORY_GB"
DEFAULT_MAX_MEMORY_GB = 4.0  # a call whose estimate exceeds this is refused before it allocates anything


def as_array(a, name: str, dtype=np.float32) -> np.ndarray:
    """Any real array-like -> a new C-contiguous array of dtype (always a copy: the input is never modified)."""
    try:
        arr = np.asarray(a)
    except Exception as e:  # noqa: BLE001 - ragged lists and other non-arrays
        raise InputError(f"{name} could not be read as an array ({e}); expected a real-valued numeric array "
                         "(rows of equal length)") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InputError(f"{name} must be a real-valued numeric array, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise InputError(f"{name} must be real-valued, got complex dtype {arr.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.array(arr, dtype=dtype, order="C", copy=True)
    if out.dtype.kind == "f" and out.size and np.any(np.isinf(out) & np.isfinite(arr)):
        raise InputError(f"{name} has entries too large for {np.dtype(dtype).name} (max |x| = "
                         f"{number(np.abs(arr[np.isfinite(arr)]).max())}); expected values of a sensible magnitude")
    return out


def as_float32(a, name: str) -> np.ndarray:
    """Any real array-like -> a new C-contiguous float32 array (the input is never modified)."""
    return as_array(a, name, np.float32)


def check_finite(arr: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0].tolist()
        raise InputError(f"{name} contains NaN or infinite values (first at index {bad}); all entries must be finite")


def refuse_bool(a, name: str, expected: str) -> None:
    """Refuse a bool array where numbers are meant (True would silently become 1.0)."""
    dtype = getattr(a, "dtype", None)
    if dtype is None:
        try:
            dtype = np.asarray(a).dtype
        except Exception:  # noqa: BLE001 - ragged lists: as_array says what is wrong with them
            return
    if dtype == np.bool_:
        raise InputError(f"{name} is an array of bools; expected {expected}")


def positions(a, pos_dim: int, name: str = "positions", batched: bool = False) -> np.ndarray:
    """[N, pos_dim] (or [B, N, pos_dim] when batched) float32 positions in [-1, 1]; bools are refused."""
    refuse_bool(a, name, "float positions in [-1, 1]")
    arr = as_float32(a, name)
    want = 3 if batched else 2
    if arr.ndim == 1 and pos_dim == 1 and not batched:
        arr = arr[:, None]
    if arr.ndim != want or arr.shape[-1] != pos_dim:
        shape = "[batch, N, pos_dim]" if batched else "[N, pos_dim]"
        raise InputError(f"{name} has shape {arr.shape}; expected {shape} with pos_dim={pos_dim}")
    check_finite(arr, name)
    if arr.size and np.abs(arr).max() > 1 + POSITION_TOLERANCE:
        raise InputError(f"{name} has entries outside [-1, 1] (max |x| = {number(np.abs(arr).max())}); positions are "
                         "normalised coordinates: pixel (i, j) of an HxW grid is x=(j+0.5)/W*2-1, y=(i+0.5)/H*2-1 "
                         "(pt_plugin.grid_positions gives them)")
    return np.clip(arr, -1, 1)


def values(a, val_dim: int, value_range: tuple[float, float], name: str = "values",
           batched: bool = False) -> np.ndarray:
    """[N, val_dim] (or batched) float32 values inside the model's value range; bools are refused."""
    refuse_bool(a, name, f"numbers inside the model's value range {list(value_range)}")
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
        raise InputError(f"{name} range from {number(arr.min())} to {number(arr.max())} lies outside the model's "
                         f"value range [{number(lo)}, {number(hi)}] (images: divide 8-bit pixels by 255)")
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


def _is_int(n) -> bool:
    """A Python or numpy integer, not a bool (True would silently count as 1)."""
    return isinstance(n, (int, np.integer)) and not isinstance(n, (bool, np.bool_))


def _is_real(x) -> bool:
    """A Python or numpy real number, not a bool or a string."""
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def positive_int(n, name: str, minimum: int = 1) -> int:
    """An integer >= minimum (counts, chunk sizes); floats, strings, bools and None are refused."""
    if not _is_int(n) or n < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {n!r}")
    return int(n)


def positive_float(x, name: str) -> float:
    """A finite number > 0 (temperatures, scales); bools and strings are refused."""
    if not _is_real(x) or not 0 < x < np.inf:
        raise InputError(f"{name} must be a finite number > 0, got {x!r}")
    return float(x)


def fraction(x, name: str) -> float:
    """A number in [0, 1) (step_fraction); None, bools and strings are refused."""
    if not _is_real(x) or not 0 <= x < 1:
        raise InputError(f"{name} must be a number in [0, 1), got {x!r}; 0 is the exact one-at-a-time path")
    return float(x)


MAX_THREADS = 1024  # the most CPU threads a session may be given (the CLI's --threads range too)


def threads(n, name: str = "threads") -> int | None:
    """None (the default), or an integer 0..MAX_THREADS (0 = onnxruntime's default): one rule for the threads
    argument, --threads and the PT_PLUGIN_THREADS / OMP_NUM_THREADS variables."""
    if n is None:
        return None
    if not _is_int(n) or not 0 <= n <= MAX_THREADS:
        raise InputError(f"{name} must be an integer from 0 to {MAX_THREADS} (0 = onnxruntime's default), got {n!r}")
    return int(n)


def seed(s, name: str = "seed"):
    """None, an integer >= 0 (numpy integers too) or a numpy Generator (used as is): what default_rng takes."""
    if s is None or isinstance(s, np.random.Generator):
        return s
    if not _is_int(s) or s < 0:
        raise InputError(f"{name} must be None, an integer >= 0 or a numpy Generator, got {s!r}")
    return int(s)


def callback(fn, name: str = "progress") -> Callable | None:
    """None or a callable (progress callbacks are called as fn(done, total))."""
    if fn is not None and not callable(fn):
        raise InputError(f"{name} must be None or a callable fn(done, total), got {fn!r}")
    return fn


def attention_budget(n) -> int:
    """A positive integer number of attention-score elements; whole floats (1e6) become ints."""
    if isinstance(n, (float, np.floating)) and math.isfinite(n) and n == int(n):
        n = int(n)
    if not _is_int(n) or n < 1:
        raise InputError(f"attention_budget must be a positive integer (attention-score elements per graph call "
                         f"and layer, e.g. {1 << 24}), got {n!r}")
    return int(n)


def grid_shape(shape, ndim: int | None = None, name: str = "shape") -> tuple[int, ...]:
    """A grid shape as a tuple of positive ints, one per axis (ndim of them when given).

    Accepts tuples and lists of integers and 1-D numpy integer arrays; refuses a bare number,
    floats (28.0 too), strings, bools, zero or negative sizes and the wrong number of axes.
    """
    want = f"{ndim} positive integers" if ndim else "positive integers, one per axis"
    example = ", ".join(["28"] * (ndim or 2))
    if isinstance(shape, np.ndarray):
        if shape.ndim != 1 or not np.issubdtype(shape.dtype, np.integer):
            raise InputError(f"{name} must be {want}, e.g. ({example}); got an array of dtype {shape.dtype} "
                             f"and shape {shape.shape}")
        shape = shape.tolist()
    if not isinstance(shape, (tuple, list)):
        raise InputError(f"{name} must be a tuple of {want}, e.g. ({example}); got {shape!r}")
    if not shape or not all(_is_int(s) for s in shape) or min(shape) < 1:
        raise InputError(f"{name} must be {want}, e.g. ({example}); got {tuple(shape)!r}")
    if ndim is not None and len(shape) != ndim:
        raise InputError(f"{name} must have {ndim} axes, e.g. ({example}); got {len(shape)}: {tuple(shape)!r}")
    return tuple(int(s) for s in shape)


def set_list(sets) -> list[tuple[Any, Any]]:
    """encode_batch's argument: a list, tuple or other iterable of (positions, values) pairs, as a list."""
    if sets is None or isinstance(sets, (str, bytes, dict, np.ndarray)) or not hasattr(sets, "__iter__"):
        raise InputError(f"sets must be a list of (positions, values) pairs, got {type(sets).__name__}")
    items = list(sets)
    for i, s in enumerate(items):
        if not isinstance(s, (tuple, list)) or len(s) != 2:
            got = f"{len(s)} items" if isinstance(s, (tuple, list)) else type(s).__name__
            raise InputError(f"set {i} must be a (positions, values) pair, got {got}")
    return [tuple(s) for s in items]


def sampling_options(method: Callable, options: dict) -> dict:
    """Checked keyword options for method (Model.sample): unknown names and bad values are refused up front."""
    params = inspect.signature(method).parameters
    allowed = [n for n, p in params.items() if p.kind == p.KEYWORD_ONLY or p.default is not p.empty]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise InputError(f"unknown option(s) {', '.join(unknown)}; expected some of {', '.join(allowed)}")
    checks = {"autoregressive": lambda v: None if v is None else positive_int(v, "autoregressive", 0),
              "step_fraction": lambda v: None if v is None else fraction(v, "step_fraction"),  # None: the default
              "buffer_size": lambda v: None if v is None else positive_int(v, "buffer_size", 0),
              "temperature": lambda v: positive_float(v, "temperature"),
              "seed": seed, "progress": callback,
              "num_samples": lambda v: positive_int(v, "num_samples")}
    return {k: checks[k](v) if k in checks else v for k, v in options.items()}


# -- memory guards ----------------------------------------------------------------------------
FLOAT = 4  # bytes of a float32


def max_memory_bytes() -> float:
    """The memory one call may need: PT_PLUGIN_MAX_MEMORY_GB (GiB, "inf" for no limit), default 4 GiB."""
    raw = os.environ.get(MEMORY_ENV)
    if not raw:
        return DEFAULT_MAX_MEMORY_GB * 2**30
    try:
        gb = float(raw)
    except ValueError:
        gb = float("nan")
    if not gb > 0:
        raise InputError(f"{MEMORY_ENV}={raw!r} is not a positive number of GiB (e.g. 4, or inf for no limit)")
    return gb * 2**30


def check_memory(nbytes: float, what: str, advice: str) -> None:
    """Refuse a call whose estimated peak memory exceeds max_memory_bytes(), with the estimate and the knobs."""
    limit = max_memory_bytes()
    if nbytes > limit:
        raise InputError(f"{what} would need about {gib(nbytes)} of memory, more than the {gib(limit)} limit; "
                         f"{advice}, or raise the limit with {MEMORY_ENV} (GiB, default {DEFAULT_MAX_MEMORY_GB:g})")


def _architecture(model) -> tuple[int, int, int]:
    """(heads, d_model, ffn) of a model, from model.json's architecture (defaults where missing)."""
    arch = model.meta.get("architecture", {}) if isinstance(getattr(model, "meta", None), dict) else {}
    d = int(arch.get("d_model", 256))
    return int(getattr(model, "heads", arch.get("n_heads", 1))), d, int(arch.get("ffn", 4 * d))


def encoder_bytes(model, sets: int, k: int) -> int:
    """Peak bytes to encode `sets` sets of k samples: every set's memory [K, D] plus one call's attention.

    One encoder call holds heads·K² attention scores per set (twice: scores and softmax) for as many
    sets as model.attention_budget allows, and at least one whole set.
    """
    heads, d, ffn = _architecture(model)
    per_set = heads * k * k
    per_call = min(sets, max(1, model.attention_budget // max(per_set, 1)))
    kept = sets * k * (d + model.pos_dim + model.val_dim + 1)
    call = per_call * (2 * per_set + k * (ffn + 4 * d))
    return FLOAT * (kept + call)


def decoder_bytes(model, sets: int, k: int, queries: int, kept_per_query: int, chunk: int = 4096) -> int:
    """Peak bytes to decode `queries` positions per set: the outputs kept plus one chunk's attention and outputs."""
    heads, d, ffn = _architecture(model)
    bins = len(model.centers)
    group = min(sets, max(1, model.attention_budget // max(heads * k * k, 1)))
    step = max(1, min(chunk, queries, model.attention_budget // max(heads * group * k, 1)))
    call = group * step * (2 * heads * k + ffn + 4 * d + 3 * bins * (model.val_dim + 2))
    return FLOAT * (sets * queries * (kept_per_query + model.pos_dim) + call)


def check_encode_memory(model, sets: int, k: int) -> None:
    """Refuse encoding sets whose attention or memory would exceed the limit (see check_memory)."""
    check_memory(encoder_bytes(model, sets, k), f"encoding {sets:,} set(s) of up to {k:,} samples",
                 "use fewer samples per set (one set of K samples needs heads*K^2 attention scores), "
                 "lower model.attention_budget to encode fewer sets per call, or split the batch")


def check_query_memory(model, sets: int, k: int, queries: int, kept_per_query: int) -> None:
    """Refuse queries whose outputs would exceed the limit; kept_per_query = floats returned per position."""
    check_memory(decoder_bytes(model, sets, k, queries, kept_per_query),
                 f"answering {queries:,} queries for {sets:,} set(s)",
                 "ask for fewer query positions per call (split them), use mean() instead of a full "
                 "query() distribution, or lower model.attention_budget")


def check_sample_memory(model, num_samples: int, k: int, n: int, autoregressive: int) -> None:
    """Refuse sampling whose buffers would exceed the limit.

    The sampler keeps [num_samples, K + N', pos_dim + val_dim] sets, [num_samples, N] orders and
    outputs, encodes num_samples sets of up to K + N' samples, and decodes the last N - N' positions.
    """
    n_ar = min(autoregressive, n)
    size = k + n_ar
    buffers = FLOAT * num_samples * (size * (model.pos_dim + model.val_dim) + n * (model.pos_dim + model.val_dim + 2))
    total = buffers + encoder_bytes(model, num_samples, size) + decoder_bytes(model, num_samples, size, n - n_ar,
                                                                              model.val_dim)
    check_memory(total, f"drawing {num_samples:,} sample(s) of {n:,} positions from a set of {k:,}",
                 "draw fewer samples per call (call again with other seeds), use fewer autoregressive "
                 "positions, or lower model.attention_budget")
