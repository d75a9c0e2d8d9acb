"""What a mean or a sampling call will cost, before it runs: floating-point operations counted from
model.json's architecture (d_model, heads, layers, FFN width), turned into seconds by this machine's
speed, measured on one small timed mean call of the model itself.

The count covers the matrix products of every encoder and decoder pass (the bulk of the time); it
follows the sampler's schedule (pt_plugin.sampling.step_sizes), so the exact sampler, large grids and many
samples are priced as they will run. The command line refuses work estimated past a bound unless --yes.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from . import entropy
from .acquisition import REFRESH
from .cached_sampling import first_room, grown_room
from .sampling import step_sizes

CALIBRATION_SAMPLES = 64    # the timed call: one set of this many samples ...
CALIBRATION_QUERIES = 1024  # ... answered at this many positions
RESCORED = 4 * REFRESH      # candidates a lazy greedy pick scores again, about (fashion-mnist, k = 16: ~110)
# numpy's entropy arithmetic in flops of the graphs' speed, per density term: measured against a mean pass on
# 2 CPU threads (fashion-mnist: ~1,000 per component x node x neighbour; emoji: ~500 per draw x component x
# channel), rounded up
ENTROPY_FLOPS_SCALAR = 1200
ENTROPY_FLOPS_VECTOR = 600
# a cached sampling step (step.onnx) costs more than its arithmetic: a fixed call overhead (about 0.5-1.5 ms on the
# 2-core machine, ~1e8 flops at its speed) and reading every cached key and value (memory-bound, ~3 flops' time
# per byte there), both in flops of the graphs' speed
STEP_CALL_FLOPS = 1e8
CACHE_READ_FLOPS_PER_BYTE = 3


@dataclass(frozen=True)
class Architecture:
    """The sizes that set a model's cost (model.json "architecture"; defaults where an export lacks one)."""
    d_model: int
    enc_layers: int
    dec_layers: int
    ffn: int
    bins: int
    val_dim: int

    @classmethod
    def of(cls, meta: dict) -> "Architecture":
        arch = meta.get("architecture") or {}
        d = int(arch.get("d_model", 256))
        return cls(d, int(arch.get("enc_layers", 4)), int(arch.get("dec_layers", 4)), int(arch.get("ffn", 4 * d)),
                   int(meta.get("bins", 1)), int(meta.get("val_dim", 1)))


def encoder_flops(a: Architecture, k: int) -> float:
    """One set of k samples through the encoder: projections, k x k attention and the FFN of every layer."""
    return 2.0 * a.enc_layers * k * (4 * a.d_model ** 2 + 2 * k * a.d_model + 2 * a.d_model * a.ffn)


def decoder_flops(a: Architecture, k: int, q: int) -> float:
    """q queries of one set of k samples: cross-attention, FFN and the output head of every layer."""
    per_query = 2 * a.d_model ** 2 + 2 * k * a.d_model + 2 * a.d_model * a.ffn
    head = 2 * a.d_model * a.bins * (a.val_dim + 2)
    return 2.0 * (a.dec_layers * (q * per_query + k * 2 * a.d_model ** 2)) + 2.0 * q * head


def mean_flops(a: Architecture, k: int, q: int, sets: int = 1) -> float:
    """A mean (or distribution) of q positions given sets of k samples each."""
    return sets * (encoder_flops(a, k) + decoder_flops(a, k, q))


def sample_flops(a: Architecture, k: int, n: int, num_samples: int, autoregressive: int,
                 step_fraction: float) -> float:
    """num_samples draws of n positions from a set of k: every encoder pass of the schedule, its decoder
    calls, and the mean of the positions left after the first `autoregressive`."""
    n_ar = min(autoregressive, n)
    total, done = 0.0, 0
    for m in step_sizes(k, n_ar, step_fraction):
        total += encoder_flops(a, k + done) + decoder_flops(a, k + done, m)
        done += m
    if n_ar < n:
        total += mean_flops(a, k + n_ar, n - n_ar)
    return num_samples * total


def cache_rooms(k: int, sizes: list[int], cap: int, buffer_size: int | None) -> list[int | None]:
    """Per call after the first of a cached draw of the schedule `sizes` from k samples: the cache slots its step.onnx
    call reads, or None where the sampler encodes the grown set again instead. The arrays grow by
    pt_plugin.cached_sampling's rule (first_room, grown_room), up to cap (k + every position drawn)."""
    rooms: list[int | None] = []
    room, done, buffered = first_room(k, cap), 0, 0
    for m in sizes[:-1]:
        done += m
        if buffer_size is not None and buffered + m > buffer_size:
            rooms.append(None)
            buffered = 0
        else:
            rooms.append(room)
            buffered += m
        room = grown_room(room, k + done, cap)
    return rooms


def cached_sample_flops(a: Architecture, k: int, n: int, num_samples: int, autoregressive: int,
                        step_fraction: float, buffer_size: int | None) -> float:
    """The same draws over cached keys and values (pt_plugin.cached_sampling): S encoded once, then per step the
    new tokens through every layer over the caches' slots (cache_rooms), or, when the buffer is full, the grown set
    encoded again; the mean of the positions left takes one more step over the caches."""
    n_ar = min(autoregressive, n)
    cap = k + n_ar
    d = a.d_model
    sizes = step_sizes(k, n_ar, step_fraction)
    total, done = mean_flops(a, k, 1), 0
    for i, room in enumerate(cache_rooms(k, sizes, cap, buffer_size)):
        m, q = sizes[i], sizes[i + 1]
        done += m
        if room is None:  # the grown set encoded again, and the next positions' law given it
            total += num_samples * (encoder_flops(a, k + done) + decoder_flops(a, k + done, q))
            continue
        token = 2.0 * (a.enc_layers * (4 * d * d + 2 * room * d + 2 * d * a.ffn) + a.dec_layers * 2 * d * d)
        cache_bytes = 2 * (a.enc_layers + a.dec_layers) * num_samples * room * d * 4
        total += (STEP_CALL_FLOPS + CACHE_READ_FLOPS_PER_BYTE * cache_bytes
                  + num_samples * (m * token + decoder_flops(a, room, q) - a.dec_layers * 4.0 * room * d * d))
    if n_ar < n:
        total += num_samples * decoder_flops(a, cap, n - n_ar)
    return total


def criterion_flops(a: Architecture, criterion: str) -> float:
    """The criterion's own arithmetic per scored candidate (entropy's numerics; the others are negligible)."""
    if criterion != "entropy":
        return 0.0
    if a.val_dim == 1:
        return ENTROPY_FLOPS_SCALAR * a.bins * entropy.GH_NODES * min(a.bins, 2 * entropy.WINDOW + 1)
    return ENTROPY_FLOPS_VECTOR * entropy.MC_DRAWS * a.bins * a.val_dim


def acquire_flops(a: Architecture, k: int, n: int, picks: int, criterion: str) -> float:
    """Acquiring `picks` of n candidates given k samples by lazy greedy: every candidate scored once, then per
    further pick the grown set encoded and about RESCORED candidates scored again ("random" scores none)."""
    if criterion == "random":
        return 0.0
    scored = n + (picks - 1) * min(n, RESCORED)
    flops = mean_flops(a, k, n)
    for j in range(1, picks):
        flops += mean_flops(a, k + j, min(n, RESCORED))
    return flops + scored * criterion_flops(a, criterion)


def measured_speed(model) -> float:
    """Floating-point operations per second of this model here: one small mean call, timed after a warm-up."""
    a = Architecture.of(model.meta)
    rng = np.random.default_rng(0)
    lo, hi = model.value_range
    pos = rng.uniform(-1, 1, (CALIBRATION_SAMPLES, model.pos_dim)).astype(np.float32)
    val = rng.uniform(lo, hi, (CALIBRATION_SAMPLES, model.val_dim)).astype(np.float32)
    queries = rng.uniform(-1, 1, (CALIBRATION_QUERIES, model.pos_dim)).astype(np.float32)
    best = math.inf
    for _ in range(2):
        start = time.perf_counter()
        model.mean((pos, val), queries, return_std=True)
        best = min(best, time.perf_counter() - start)
    return mean_flops(a, CALIBRATION_SAMPLES, CALIBRATION_QUERIES) / max(best, 1e-6)
