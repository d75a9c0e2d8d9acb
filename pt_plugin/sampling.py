"""Hybrid autoregressive sampling (paper §4.3, Eq. 5-6), all samples of a call in one batch.

Exact mode (step_fraction=0, the paper's algorithm): every sample gets its own random order of
the query positions; the first N' are drawn one per encoder pass, each appended to its set;
the remaining N - N' positions take the mean given the grown set (Eq. 4).

Scheduled mode (step_fraction=f > 0): each pass draws m = ceil(f·|current set|) positions at
once — few while the set is small, more as it grows. The m positions are drawn independently
given the current set, so dependencies among the values drawn in the same pass are ignored;
with m = 1 it is the exact algorithm. benchmarks/sampling.py measures what this costs.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Protocol

import numpy as np

from .distribution import draw_mixture
from .errors import InputError

# the default: ceil(0.1·|set|) positions per encoder pass, measured within 5 % of the exact one-at-a-time
# sampler at 31x its speed (README, benchmarks/sampling_quality.py); 0 is the exact sampler
DEFAULT_STEP_FRACTION = 0.1
# N', the positions drawn in turn before the rest take the mean given the grown set: every cell of the
# bundled 28x28 and 32x32 image models; a quarter of the 8x32x32 clips (README, "Sampling")
DEFAULT_AUTOREGRESSIVE = 2048
ALL_POSITIONS = 2**62  # autoregressive=ALL_POSITIONS draws every position (the default with cache graphs)


class SetModel(Protocol):
    """What the sampler needs of a model (pt_plugin.model.Model): encode padded sets, decode queries, means.
    Declared here so that this module does not import the model (no import cycle)."""
    pos_dim: int
    val_dim: int
    value_range: tuple[float, float]
    centers: np.ndarray

    def _encode(self, pos: np.ndarray, val: np.ndarray, mask: np.ndarray) -> Any: ...

    def _decode(self, ctx: Any, qpos: np.ndarray, chunk: int = ...) -> list[np.ndarray]: ...

    def mean(self, context: Any, query_positions: np.ndarray, progress: Any = None) -> np.ndarray: ...


def step_sizes(start: int, total: int, step_fraction: float) -> list[int]:
    """How many positions each encoder pass draws, from a set of `start` samples, `total` in all."""
    if not 0 <= step_fraction < 1:
        raise InputError(f"step_fraction must be in [0, 1), got {step_fraction}; 0 is the exact one-at-a-time path")
    sizes, done = [], 0
    while done < total:
        m = 1 if step_fraction == 0 else max(1, math.ceil(step_fraction * (start + done)))
        m = min(m, total - done)
        sizes.append(m)
        done += m
    return sizes


def hybrid_sample(model: SetModel, pos: np.ndarray, val: np.ndarray, queries: np.ndarray, num_samples: int,
                  seed: int | None, autoregressive: int, step_fraction: float, temperature: float,
                  progress: Callable[[int, int], None] | None) -> np.ndarray:
    """[num_samples, Q, val_dim] draws; see the module docstring for the algorithm. progress(done, Q) counts
    positions: the drawn ones after each encoder pass, then the mean-filled rest."""
    rng = np.random.default_rng(seed)
    n, k = len(queries), len(pos)
    n_ar = min(autoregressive, n)
    lo, hi = model.value_range
    orders = np.stack([rng.permutation(n) for _ in range(num_samples)])  # a new random order per sample
    set_pos = np.empty((num_samples, k + n_ar, model.pos_dim), np.float32)
    set_val = np.empty((num_samples, k + n_ar, model.val_dim), np.float32)
    set_pos[:, :k], set_val[:, :k] = pos, val
    out = np.empty((num_samples, n, model.val_dim), np.float32)
    rows = np.arange(num_samples)[:, None]
    done = 0
    for m in step_sizes(k, n_ar, step_fraction):
        size = k + done
        ctx = model._encode(np.ascontiguousarray(set_pos[:, :size]), np.ascontiguousarray(set_val[:, :size]),
                            np.ones((num_samples, size), bool))
        idx = orders[:, done:done + m]
        qpos = queries[idx]
        law = model._decode(ctx, qpos, chunk=max(m, 1))
        # draws are clipped to the value range the model was trained on before joining the set
        draws = np.clip(draw_mixture(*law, model.centers, rng, temperature), lo, hi).astype(np.float32)
        out[rows, idx] = draws
        set_pos[:, size:size + m], set_val[:, size:size + m] = qpos, draws
        done += m
        if progress is not None:
            progress(done, n)
    if n_ar < n:
        ctx = model._encode(set_pos, set_val, np.ones((num_samples, k + n_ar), bool))
        rest = orders[:, n_ar:]
        report = None if progress is None else (lambda d, t: progress(n_ar + (n - n_ar) * d // t, n))
        out[rows, rest] = model.mean(ctx, queries[rest], progress=report)
    return out
