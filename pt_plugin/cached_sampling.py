"""Autoregressive sampling over cached keys and values (the causal buffer, model.json "cache").

S is encoded once (context.onnx) into every layer's keys and values; each drawn position then joins a
buffer through step.onnx, which attends over the caches and answers the next position(s): a drawn value
costs one token's pass instead of a new encoding of the grown set (pt_plugin.sampling). The draw order,
the random numbers and the mean fill are those of hybrid_sample, so `cache=False` is its reference.
Caches live in arrays that double when full: nothing is reallocated per step, and a step reads at most about
twice the tokens it attends to.

buffer_size bounds the buffer: once it would hold more tokens, S and every value drawn so far are encoded
again as the new context (context.onnx, one set per sample) and the buffer starts empty: the buffer's
conditionals drift from the re-encoded ones as it grows. Each model's default (model.json cache.buffer_size) was
chosen by measurement against re-encoding. 0 re-encodes at every step (the re-encoding sampler's draws), None
never does (one encoding per call).
"""
from __future__ import annotations

from typing import Any, Callable, Protocol

import numpy as np

from .distribution import Distribution, draw_mixture
from .sampling import step_sizes

CACHES = ("enc_keys", "enc_values", "dec_keys", "dec_values")
QUERY_CHUNK = 4096  # query positions per call when the rest of the signal takes the mean
GROWTH_MIN = 64  # free cache slots the arrays start with beyond S


def first_room(tokens: int, capacity: int) -> int:
    """Cache slots the arrays start with for `tokens` tokens: room for GROWTH_MIN more, at most `capacity`."""
    return min(capacity, tokens + GROWTH_MIN)


def grown_room(room: int, tokens: int, capacity: int) -> int:
    """Cache slots once `tokens` must fit in `room`: unchanged when they do, else doubled (or `tokens` when more),
    at most `capacity`. pt_plugin.cost prices the steps by the same rule."""
    return room if tokens <= room else min(capacity, max(2 * room, tokens))


class CachedModel(Protocol):
    """What this sampler needs of a model (pt_plugin.model.Model with cache graphs)."""
    pos_dim: int
    val_dim: int
    value_range: tuple[float, float]
    centers: np.ndarray
    context_graph: Any
    step_graph: Any
    heads: int
    attention_budget: int  # attention scores per layer per graph call: how many grown sets context.onnx takes at once


class Caches:
    """Every layer's keys and values of T tokens, [layers, batch, heads, room, head_dim] each, grown in place.

    A step reads every slot it is fed (unfilled ones masked), so the arrays start with room for GROWTH_MIN more
    tokens and double when full (up to the call's capacity): a step reads at most about twice the filled part,
    and the copies on growth add up to less than the final size."""

    def __init__(self, first: list[np.ndarray], batch: int, capacity: int):
        self.capacity, self.batch = capacity, batch
        self.size = self.context = first[0].shape[3]  # tokens in all; of them, encoded together (the rest: buffer)
        self._allocate(first_room(self.size, capacity), [a.shape for a in first])
        for arr, a in zip(self.arrays, first):
            arr[:, :, :, :self.size] = a  # one context, every sample
        self.mask[:, :self.size] = True

    def _allocate(self, room: int, shapes: list[tuple[int, ...]], keep: int = 0) -> None:
        """Arrays with `room` slots, the first `keep` copied from the current ones; the step inputs rebuilt."""
        old = getattr(self, "arrays", None)
        self.arrays = [np.zeros((s[0], self.batch, s[2], room, s[4]), np.float32) for s in shapes]
        self.mask = np.zeros((self.batch, room), bool)  # true over the filled part
        if old is not None and keep:
            for arr, a in zip(self.arrays, old):
                arr[:, :, :, :keep] = a[:, :, :, :keep]
            self.mask[:, :keep] = True
        # the step inputs: each layer's slice of the arrays (contiguous, so onnxruntime reads them in place and
        # nothing is copied per step) and the mask; append() fills both in place
        self._feeds = {f"{name}_{i}": a[i] for name, a in zip(CACHES, self.arrays) for i in range(a.shape[0])}
        self._feeds["cache_mask"] = self.mask

    def _make_room(self, tokens: int, keep: int) -> None:
        room = self.arrays[0].shape[3]
        if tokens > room:
            self._allocate(grown_room(room, tokens, self.capacity), [a.shape for a in self.arrays], keep)

    def feeds(self) -> dict[str, np.ndarray]:
        """The step inputs: every layer's cache slice and the mask of its filled part (unfilled slots are masked out
        of every attention)."""
        return self._feeds

    def reset(self, context: list[np.ndarray]) -> None:
        """Replace every token by a new context (one per sample): the buffer starts empty."""
        t = context[0].shape[3]
        self._make_room(t, 0)
        for arr, a in zip(self.arrays, context):
            arr[:, :, :, :t] = a
        self.mask[:] = False
        self.mask[:, :t] = True
        self.size = self.context = t

    def overflows(self, tokens: int, buffer_size: int | None) -> bool:
        """Whether `tokens` more would make the buffer hold more than buffer_size (None: no bound)."""
        return buffer_size is not None and self.size - self.context + tokens > buffer_size

    def append(self, new: list[np.ndarray]) -> None:
        n = new[0].shape[3]
        self._make_room(self.size + n, self.size)
        for arr, a in zip(self.arrays, new):
            arr[:, :, :, self.size:self.size + n] = a
        self.mask[:, self.size:self.size + n] = True
        self.size += n


def cache_bytes(model: Any, batch: int, tokens: int) -> int:
    """Bytes of the caches of `batch` samples of `tokens` tokens (keys and values of every layer), plus the copy a
    step call is fed."""
    arch = model.meta.get("architecture", {})
    layers = int(arch.get("enc_layers", 4)) + int(arch.get("dec_layers", 4))
    return 2 * 2 * layers * batch * tokens * int(arch.get("d_model", 256)) * 4


def _law_arrays(outs: list[np.ndarray], shape: tuple[int, ...] | None = None) -> tuple[np.ndarray, ...]:
    """(logits, offsets, log σ): a graph's last three outputs, their query axes reshaped to `shape` when given."""
    logits, offsets, log_sigma = outs[-3:]
    if shape is not None:
        logits, log_sigma = logits.reshape(*shape, -1), log_sigma.reshape(*shape, -1)
        offsets = offsets.reshape(*shape, *offsets.shape[-2:])
    return logits, offsets, log_sigma


def _law(outs: list[np.ndarray], model: CachedModel) -> Distribution:
    """The law of a graph's last three outputs (means clipped, as Model.mean)."""
    return Distribution(*_law_arrays(outs), model.centers, model.value_range)


def cached_sample(model: CachedModel, pos: np.ndarray, val: np.ndarray, queries: np.ndarray, num_samples: int,
                  seed: int | None, autoregressive: int, step_fraction: float, temperature: float,
                  progress: Callable[[int, int], None] | None, buffer_size: int | None = None) -> np.ndarray:
    """[num_samples, Q, val_dim] draws; the algorithm of pt_plugin.sampling.hybrid_sample over caches (at least one
    position drawn: with autoregressive=0 every position is a mean, which needs no cache); the buffer holds at most
    buffer_size tokens before the grown set is encoded again (None: never)."""
    rng = np.random.default_rng(seed)
    n, k = len(queries), len(pos)
    n_ar = min(autoregressive, n)
    lo, hi = model.value_range
    orders = np.stack([rng.permutation(n) for _ in range(num_samples)])  # the same orders as hybrid_sample
    out = np.empty((num_samples, n, model.val_dim), np.float32)
    rows = np.arange(num_samples)[:, None]
    sizes = step_sizes(k, n_ar, step_fraction)
    first = orders[:, :sizes[0]]
    outs = model.context_graph.run({"sample_positions": pos[None], "sample_values": val[None],
                                    "sample_mask": np.ones((1, k), bool),
                                    "query_positions": queries[first].reshape(1, -1, model.pos_dim)})
    caches = Caches(outs[:4], num_samples, k + n_ar)
    law = _law_arrays(outs, first.shape)  # every sample's first positions were asked of the one context
    done = 0
    for i, m in enumerate(sizes):
        idx = orders[:, done:done + m]
        # Distribution.sample's draw without building a checked Distribution per step; clipped, as hybrid_sample
        draws = np.clip(draw_mixture(*law, model.centers, rng, temperature), lo, hi).astype(np.float32)
        out[rows, idx] = draws
        done += m
        if progress is not None:
            progress(done, n)
        if i + 1 < len(sizes):
            nxt = queries[orders[:, done:done + sizes[i + 1]]]
            if caches.overflows(m, buffer_size):
                outs = _encode_grown(model, pos, val, queries, orders[:, :done], out, nxt)
                caches.reset(outs[:4])
            else:
                outs = _step(model, caches, queries[idx], draws, nxt)
            law = _law_arrays(outs)
    if n_ar < n:
        _fill_means(model, caches, pos, val, queries, orders, done, sizes, out, progress,
                    caches.overflows(sizes[-1], buffer_size))
    return out


def _encode_grown(model: CachedModel, pos: np.ndarray, val: np.ndarray, queries: np.ndarray, drawn: np.ndarray,
                  out: np.ndarray, query_pos: np.ndarray) -> list[np.ndarray]:
    """context.onnx over each sample's S plus its drawn positions (drawn: [samples, d] indices into queries): the
    caches of the grown sets and the law at query_pos. Samples go through in groups whose attention scores fit
    model.attention_budget (as Model.encode_batch splits), so a large set does not hold every sample's at once."""
    b = len(drawn)
    rows = np.arange(b)[:, None]
    spos = np.ascontiguousarray(np.concatenate([np.broadcast_to(pos, (b, *pos.shape)), queries[drawn]], 1), np.float32)
    sval = np.ascontiguousarray(np.concatenate([np.broadcast_to(val, (b, *val.shape)), out[rows, drawn]], 1),
                                np.float32)
    qpos = np.ascontiguousarray(query_pos, np.float32)
    t = spos.shape[1]
    group = max(1, int(model.attention_budget) // (int(model.heads) * t * t))
    parts = [model.context_graph.run({"sample_positions": spos[i:i + group], "sample_values": sval[i:i + group],
                                      "sample_mask": np.ones((len(spos[i:i + group]), t), bool),
                                      "query_positions": qpos[i:i + group]}) for i in range(0, b, group)]
    if len(parts) == 1:
        return parts[0]
    caches = [np.concatenate([p[j] for p in parts], 1) for j in range(4)]  # [layers, batch, ...]
    return caches + [np.concatenate([p[j] for p in parts], 0) for j in range(4, len(parts[0]))]


def _step(model: CachedModel, caches: Caches, token_pos: np.ndarray, token_val: np.ndarray,
          query_pos: np.ndarray, grow: bool = True) -> list[np.ndarray]:
    """One step.onnx call: the new tokens over the caches (appended unless grow=False), the law at query_pos."""
    outs = model.step_graph.run({"token_positions": np.ascontiguousarray(token_pos, np.float32),
                                 "token_values": np.ascontiguousarray(token_val, np.float32), **caches.feeds(),
                                 "query_positions": np.ascontiguousarray(query_pos, np.float32)})
    if grow:
        caches.append(outs[:4])
    return outs


def _fill_means(model: CachedModel, caches: Caches, pos: np.ndarray, val: np.ndarray, queries: np.ndarray,
                orders: np.ndarray, done: int, sizes: list[int], out: np.ndarray, progress, refresh: bool) -> None:
    """The positions not drawn take the mean given S and every drawn token (Eq. 4), a chunk of queries per call;
    the last drawn tokens ride along with each chunk (they are not cached yet), or, when they would overflow the
    buffer (refresh), each chunk is asked of the grown sets encoded again."""
    n = len(queries)
    rows = np.arange(len(orders))[:, None]
    last = orders[:, done - sizes[-1]:done]
    rest = orders[:, done:]
    for s in range(0, rest.shape[1], QUERY_CHUNK):
        cols = rest[:, s:s + QUERY_CHUNK]
        if refresh:
            outs = _encode_grown(model, pos, val, queries, orders[:, :done], out, queries[cols])
        else:
            outs = _step(model, caches, queries[last], out[rows, last], queries[cols], grow=False)
        out[rows, cols] = _law(outs, model).mean()
        if progress is not None:
            progress(done + s + cols.shape[1], n)
