"""Model: the two ONNX graphs behind one numpy API (encode once, query many times).

The encoder turns a sample set S into a memory; the decoder answers any number of query
positions against it, in chunks so memory stays bounded. Sessions are made once and reused;
onnxruntime's run() is thread-safe, so a Model can serve several threads.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from . import inputs, metadata
from .acquisition import ACQUIRE_OPTIONS, Acquisition, acquire
from .cached_sampling import cache_bytes, cached_sample
from .distribution import Distribution
from .errors import InputError, WeightsError
from .graphs import Graph, session_device, to_numpy
from .grids import cell_index, grid_positions
from .sampling import ALL_POSITIONS, DEFAULT_AUTOREGRESSIVE, DEFAULT_STEP_FRACTION, hybrid_sample
from .sessions import (
    MIN_ONNXRUNTIME,
    ONE_QUERY_DISABLED_OPTIMIZERS,
    make_session,
    ort_version,
    require_onnxruntime,
    thread_count,
    version_tuple,
)
from .signal import Signal
from .weights import DEFAULT_MODEL, cache_graph_files, graph_files, locate

DEFAULT_CHUNK = 4096  # queries per decoder call per set

# attention-score elements one onnxruntime call may hold per layer: larger batches are encoded in
# groups of sets and decoded in smaller query chunks, so peak memory stays bounded for any batch and
# query count (one set's encoder still needs heads·K² of them). 2**24 floats = 64 MiB: on the CPU
# it cut the peak of a 16 x 2048-sample mean from 4.9 GiB to 0.5 GiB, and ran faster
# (docs/benchmarks/mean_inference.md); GPUs get 4x more so their batches stay wide.
ATTENTION_BUDGET = {"cpu": 1 << 24, "cuda": 1 << 26}


@dataclass(frozen=True)
class ModelInfo:
    """What a loaded model is: its signal, bins, value range and where it runs."""
    name: str
    version: str
    pos_dim: int
    val_dim: int
    grid: tuple[int, ...] | None
    bins: int
    value_range: tuple[float, float]
    providers: tuple[str, ...]
    path: str
    metadata: dict = field(repr=False)
    precision: str = "fp32"
    io_binding: bool = False
    signal: Signal | None = None


@dataclass
class Context:
    """An encoded batch of sample sets, held as consecutive batch groups (see Model.attention_budget).

    Each group is (rows, memory, mask): memory [b, K, D] as a numpy array, or an onnxruntime
    OrtValue left on the device with IOBinding; mask [b, K] (True = real sample). model_id is the
    identity of the graphs that encoded it (Model.identity); another model refuses the Context.
    """
    groups: list[tuple[slice, Any, np.ndarray]]
    model_id: str = ""
    model_name: str = ""

    @property
    def batch(self) -> int:
        return self.groups[-1][0].stop

    @property
    def memory(self) -> np.ndarray:
        """The whole memory [B, K, D] on the host (copied from the device where it lives there)."""
        return np.concatenate([to_numpy(m) for _, m, _ in self.groups])

    @property
    def mask(self) -> np.ndarray:
        return np.concatenate([m for _, _, m in self.groups])

    def __repr__(self) -> str:
        return f"Context(batch={self.batch}, samples={self.groups[0][2].shape[1]}, groups={len(self.groups)})"


class Model:
    """A PixelTransformer export: distribution queries, mean signals and hybrid autoregressive sampling.

    precision: "fp32" (encoder.onnx, decoder.onnx), "int8" (CPU) or "fp16" (GPU): the graphs
    encoder.<precision>.onnx / decoder.<precision>.onnx that `python -m export.quantize` writes and
    checks against fp32 (its figures are in model.json "variants"). Inputs and outputs stay float32.
    io_binding: None (default) uses onnxruntime IOBinding where the session runs on CUDA, so the
    encoder's memory stays on the GPU between the encoder and decoder calls; True/False force it.
    attention_budget (attribute): attention-score elements one graph call may hold per layer; see
    ATTENTION_BUDGET. Lower it to use less memory, raise it for wider batches on a big GPU.
    """

    def __init__(self, path: Path, device: str = "auto", providers: Sequence | None = None,
                 threads: int | None = None, precision: str = "fp32", io_binding: bool | None = None):
        self.path = Path(path)
        files = graph_files(precision)
        thread_count(threads)  # a bad threads argument or PT_PLUGIN_THREADS is refused before any file is read
        self.meta = metadata.read(self.path)
        fp32_needs = str(self.meta.get("requires_onnxruntime") or MIN_ONNXRUNTIME)  # opset 23's Attention: 1.23
        if precision != "fp32":
            missing = [f for f in files if not (self.path / f).is_file()]
            if missing:
                raise InputError(f"{self.path} has no {precision} graphs ({', '.join(missing)} missing); make them "
                                 f"with `python -m export.quantize {self.path} --{precision}` (pt-plugin source "
                                 "checkout), or use precision='fp32'")
            if precision not in self.meta.get("variants", {}):
                raise InputError(f"{self.path}/model.json records no checked {precision} variant, so "
                                 f"{' and '.join(files)} may be left from an earlier export; remake them with "
                                 f"`python -m export.quantize {self.path} --{precision} --force` (pt-plugin source "
                                 "checkout)")
            variant = self.meta["variants"][precision]
            if variant.get("requires_onnxruntime"):
                fp32_loads = version_tuple(ort_version()) >= version_tuple(fp32_needs)
                require_onnxruntime(variant["requires_onnxruntime"], f"the {precision} graphs of {self.path} (they "
                                    f"use {variant.get('method', 'newer operators')})",
                                    instead=", or use precision='fp32'" if fp32_loads else "")
        # refused here with the reason, not inside session creation
        require_onnxruntime(fp32_needs, f"the graphs of {self.path} (ONNX opset {self.meta.get('opset', 20)})",
                            instead="")
        digests = metadata.verify_files(self.path, self.meta, files)
        self.precision = precision
        self.identity = metadata.identity(digests, precision)
        self._session_args, self._cache_graphs = (device, providers, threads), {}  # cache graphs: on first use
        encoder = self._session(files[0], "encoder", device, providers, threads)
        decoder = self._session(files[1], "decoder", device, providers, threads)
        if io_binding is None:
            io_binding = session_device(encoder)[0] == "cuda"
        self.encoder, self.decoder = Graph(encoder, bool(io_binding)), Graph(decoder, bool(io_binding))
        self.attention_budget = ATTENTION_BUDGET[self.encoder.device]
        m = self.meta
        self.heads = int(m.get("architecture", {}).get("n_heads", 1))
        self.pos_dim, self.val_dim = int(m["pos_dim"]), int(m["val_dim"])
        self.value_range = (float(m["value_range"][0]), float(m["value_range"][1]))
        self.centers = np.asarray(m["bin_centers"], np.float64)
        self.signal = metadata.signal(m)
        self.grid = self.signal.grid  # one source: model.json's grid, which metadata checks against signal.grid

    def _session(self, name: str, role: str, device, providers, threads, disabled_optimizers: tuple[str, ...] = ()):
        """A session of one graph file, checked against model.json; a damaged file is a WeightsError."""
        path = self.path / name
        try:
            session = make_session(path, device, providers, threads, disabled_optimizers=disabled_optimizers)
        except (InputError, WeightsError):
            raise
        except Exception as e:  # onnxruntime's InvalidProtobuf, Fail, NoSuchFile, ...: re-raised below
            first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            too_new = "ir version" in first.lower() or "opset" in first.lower()
            if type(e).__module__.startswith("onnxruntime") and too_new:
                import onnxruntime as ort

                needs = self.meta.get("requires_onnxruntime") or MIN_ONNXRUNTIME
                raise InputError(f"{path} needs a newer onnxruntime than {ort.__version__} ({first}); model.json "
                                 f"asks for onnxruntime >= {needs}: upgrade onnxruntime-gpu") from None
            if type(e).__module__.startswith("onnxruntime"):
                raise WeightsError(f"{path} is not a loadable ONNX graph ({type(e).__name__}: {first}); export or "
                                   "download it again") from None
            raise
        metadata.check_graph(session, role, self.meta, path)
        return session

    @property
    def attention_budget(self) -> int:
        """Attention-score elements one graph call may hold per layer (see ATTENTION_BUDGET)."""
        return self._attention_budget

    @attention_budget.setter
    def attention_budget(self, value) -> None:
        self._attention_budget = inputs.attention_budget(value)

    @property
    def info(self) -> ModelInfo:
        m = self.meta
        return ModelInfo(m["name"], m["version"], self.pos_dim, self.val_dim, self.grid, int(m["bins"]),
                         self.value_range, tuple(self.encoder.get_providers()), str(self.path), m, self.precision,
                         self.encoder.io_binding, self.signal)

    def __repr__(self) -> str:
        i = self.info
        return (f"Model({i.name!r} v{i.version}, {self.signal.kind} {'/'.join(self.signal.axes)} -> "
                f"{'/'.join(self.signal.channels)}, grid={i.grid}, bins={i.bins}, precision={i.precision!r}, "
                f"providers={list(i.providers)}, io_binding={i.io_binding})")

    # -- sample sets -------------------------------------------------------------------------
    def check_set(self, positions, values) -> tuple[np.ndarray, np.ndarray]:
        """Validated float32 copies of one sample set (see pt_plugin.inputs for the rules)."""
        return inputs.sample_set(positions, values, self.pos_dim, self.val_dim, self.value_range)

    def encode(self, positions, values) -> Context:
        """Encode one sample set S (positions [K, pos_dim], values [K, val_dim]) for repeated queries."""
        p, v = self.check_set(positions, values)
        inputs.check_encode_memory(self, 1, len(p))
        return self._encode(p[None], v[None], np.ones((1, len(p)), bool))

    def encode_batch(self, sets: Sequence[tuple]) -> Context:
        """Encode several sets of different sizes at once (padded, with a mask)."""
        sets = inputs.set_list(sets)
        if len(sets) == 0:
            raise InputError("encode_batch needs at least one (positions, values) set")
        checked = [self.check_set(p, v) for p, v in sets]
        k = max(len(p) for p, _ in checked)
        b = len(checked)
        inputs.check_encode_memory(self, b, k)
        pos = np.zeros((b, k, self.pos_dim), np.float32)
        val = np.full((b, k, self.val_dim), self.value_range[0], np.float32)
        mask = np.zeros((b, k), bool)
        for i, (p, v) in enumerate(checked):
            pos[i, :len(p)], val[i, :len(v)], mask[i, :len(p)] = p, v, True
        return self._encode(pos, val, mask)

    def _encode(self, pos: np.ndarray, val: np.ndarray, mask: np.ndarray) -> Context:
        """Encoder over [B, K, ...] inputs, in groups of sets whose attention fits the budget."""
        b, k = mask.shape
        per_call = max(1, self.attention_budget // (self.heads * k * k))
        groups = []
        for s in range(0, b, per_call):
            rows = slice(s, min(b, s + per_call))
            (memory,) = self.encoder.run({"sample_positions": pos[rows], "sample_values": val[rows],
                                          "sample_mask": mask[rows]}, keep=("memory",))
            groups.append((rows, memory, mask[rows]))
        return Context(groups, self.identity, f"{self.meta['name']} ({self.precision})")

    def _context(self, context) -> Context:
        """A Context this model encoded, or a (positions, values) tuple encoded now; another model's is refused."""
        if isinstance(context, Context):
            if context.model_id != self.identity:
                raise InputError(f"this Context was encoded by another model ({context.model_name or 'unknown'}); "
                                 f"this is {self.meta['name']} ({self.precision}): a Context holds one model's "
                                 "encoding, so encode the set again with this model's encode()")
            return context
        if isinstance(context, tuple) and len(context) == 2:
            return self.encode(*context)
        raise InputError("context must be a Context from encode()/encode_batch() or a (positions, values) tuple")

    # -- queries -----------------------------------------------------------------------------
    def _decode(self, ctx: Context, qpos: np.ndarray, chunk: int = DEFAULT_CHUNK) -> list[np.ndarray]:
        """Raw decoder outputs (logits, offsets, log_sigma) for qpos [B, Q, pos_dim], put together again."""
        outs: list[np.ndarray] = []
        for rows, cols, part in self._decode_chunks(ctx, qpos, chunk):
            if not outs:
                outs = [np.empty(qpos.shape[:2] + p.shape[2:], p.dtype) for p in part]
            for out, p in zip(outs, part):
                out[rows, cols] = p
        return outs

    def _decode_chunks(self, ctx: Context, qpos: np.ndarray, chunk: int) -> Iterator[tuple[slice, slice, list]]:
        """(rows, query columns, decoder outputs) piece by piece, so reductions need memory for one piece."""
        for rows, memory, mask in ctx.groups:
            b, k = mask.shape
            step = max(1, min(chunk, self.attention_budget // (self.heads * b * k)))
            for s in range(0, qpos.shape[1], step):
                cols = slice(s, s + step)
                yield rows, cols, self.decoder.run({"memory": memory, "sample_mask": mask,
                                                    "query_positions": np.ascontiguousarray(qpos[rows, cols])})

    def _query_positions(self, ctx: Context, query_positions) -> tuple[np.ndarray, bool]:
        """[B, Q, pos_dim] positions and whether the caller gave one shared [Q, pos_dim] set."""
        inputs.refuse_bool(query_positions, "query positions", "float positions in [-1, 1]")
        query_positions = inputs.as_float32(query_positions, "query positions")
        batched = np.ndim(query_positions) == 3
        q = inputs.positions(query_positions, self.pos_dim, "query positions", batched=batched)
        if batched and q.shape[0] != ctx.batch:
            raise InputError(f"query positions hold {q.shape[0]} sets but the context has {ctx.batch}")
        if q.shape[-2] == 0:
            raise InputError("no query positions given; expected at least one")
        return (q if batched else np.broadcast_to(q, (ctx.batch,) + q.shape)), batched

    def query(self, context, query_positions, chunk: int = DEFAULT_CHUNK) -> Distribution:
        """p(v | S) at query positions [Q, pos_dim] (or [B, Q, pos_dim] for a batched context).

        context: a Context from this model's encode()/encode_batch(), or a (positions, values) tuple.
        Returns a Distribution of shape [Q] for one set with shared queries, else [B, Q].
        """
        ctx = self._context(context)
        q, batched = self._query_positions(ctx, query_positions)
        inputs.check_query_memory(self, ctx.batch, ctx.groups[0][2].shape[1], q.shape[1],
                                  3 * len(self.centers) * (self.val_dim + 2))
        logits, offsets, log_sigma = self._decode(ctx, q, inputs.positive_int(chunk, "chunk"))
        dist = Distribution(logits, offsets, log_sigma, self.centers, self.value_range)
        return dist[0] if ctx.batch == 1 and not batched else dist

    def mean(self, context, query_positions, chunk: int = DEFAULT_CHUNK, return_std: bool = False,
             progress: Callable[[int, int], None] | None = None):
        """Mean value at each query position (paper Eq. 4), [Q, val_dim] or [B, Q, val_dim].

        context: a Context from this model's encode()/encode_batch(), or a (positions, values) tuple
        (encoded here). Reduced chunk by chunk: memory stays bounded for any number of queries. With
        return_std, also the standard deviation of the value law at each position. progress(done, total)
        is called after every decoder call, counting query positions over all sets.
        """
        progress = inputs.callback(progress)
        ctx = self._context(context)
        q, batched = self._query_positions(ctx, query_positions)
        chunk = inputs.positive_int(chunk, "chunk")
        inputs.check_query_memory(self, ctx.batch, ctx.groups[0][2].shape[1], q.shape[1],
                                  self.val_dim * (2 if return_std else 1))
        mean = np.empty(q.shape[:2] + (self.val_dim,), np.float32)
        std = np.empty_like(mean) if return_std else None
        done, total = 0, q.shape[0] * q.shape[1]
        for rows, cols, out in self._decode_chunks(ctx, q, chunk):
            dist = Distribution(*out, self.centers, self.value_range)
            mean[rows, cols] = dist.mean()
            if std is not None:
                std[rows, cols] = np.sqrt(dist.variance())
            if progress is not None:
                done += out[0].shape[0] * out[0].shape[1]
                progress(done, total)
        if ctx.batch == 1 and not batched:
            mean, std = mean[0], (None if std is None else std[0])
        return (mean, std) if return_std else mean

    # -- sampling ----------------------------------------------------------------------------
    def sample(self, positions, values, query_positions, num_samples: int = 1, seed: int | None = None,
               autoregressive: int | None = None, step_fraction: float | None = None,
               temperature: float = 1.0, progress: Callable[[int, int], None] | None = None,
               cache: bool | None = None, buffer_size: int | None = None) -> np.ndarray:
        """Whole signals at query_positions drawn from p(signal | S), [num_samples, Q, val_dim].

        Hybrid autoregressive sampling (paper §4.3): a new random order per sample; the first
        `autoregressive` positions are drawn in turn, each added to S; the rest take the mean given
        the grown set. step_fraction 0 is the paper's exact algorithm (one position per encoder
        pass); > 0 (default 0.1) draws ceil(step_fraction·|set|) positions per pass, independently
        given the current set (measured within 5 % of exact; see pt_plugin.sampling). temperature < 1
        sharpens every draw (bin choice and σ), giving smoother, less varied samples; 1 samples the
        model as trained. progress(done, total) counts query positions: after every encoder pass (the
        drawn ones), then while the rest take the mean. All samples run in one batch.

        positions and values are arrays, not a Context: sampling re-encodes the set as it grows.

        cache: with the causal buffer's graphs (model.json "cache", context.onnx and step.onnx) S is encoded
        once and each drawn value costs one token's pass over cached keys and values (pt_plugin.cached_sampling);
        None (default) uses them when the model has them, False re-encodes as above (the reference), True
        requires them. Defaults then differ: every position drawn exactly (autoregressive = all, or the model's
        cache.autoregressive where model.json records one; step_fraction 0), against DEFAULT_AUTOREGRESSIVE and
        DEFAULT_STEP_FRACTION when re-encoding.
        buffer_size (cached only): once the buffer of drawn tokens would exceed it, S and every value drawn so far
        are encoded again as the new context; None (default) takes the model's (model.json cache.buffer_size, chosen
        by measurement against re-encoding; never re-encode if absent), 0 re-encodes at every step.
        """
        if isinstance(positions, Context):
            raise InputError("sample() takes the sample set itself (positions, values), not a Context: sampling "
                             "adds drawn values to the set and encodes it again; call sample(positions, values, "
                             "query_positions, ...)")
        num_samples, seed = inputs.positive_int(num_samples, "num_samples"), inputs.seed(seed)
        cached, autoregressive, step_fraction = self.sampling_plan(autoregressive, step_fraction, cache)
        temperature = inputs.positive_float(temperature, "temperature")
        progress = inputs.callback(progress)
        p, v = self.check_set(positions, values)
        q = inputs.positions(query_positions, self.pos_dim, "query positions")
        if len(q) == 0:
            raise InputError("no query positions given; expected at least one")
        buffer_size = self.buffer_plan(buffer_size, cached)
        if cached and min(autoregressive, len(q)) > 0:
            if buffer_size is not None and buffer_size < min(autoregressive, len(q)):  # the sets are encoded again
                inputs.check_sample_memory(self, num_samples, len(p), len(q), autoregressive)
            inputs.check_memory(cache_bytes(self, num_samples, len(p) + min(autoregressive, len(q))),
                                f"caching keys and values of {num_samples:,} sample(s) of {len(p) + len(q):,} tokens",
                                "draw fewer samples per call (call again with other seeds), draw fewer positions "
                                "(autoregressive=N, the rest take the mean), or pass cache=False")
            return cached_sample(self, p, v, q, num_samples, seed, autoregressive, step_fraction, temperature,
                                 progress, buffer_size)
        inputs.check_sample_memory(self, num_samples, len(p), len(q), autoregressive)
        return hybrid_sample(self, p, v, q, num_samples, seed, autoregressive, step_fraction, temperature, progress)

    def buffer_plan(self, buffer_size: int | None = None, cached: bool = True) -> int | None:
        """The causal buffer's size that sample() will use (None: the buffer never re-encodes)."""
        if buffer_size is None:
            trained = self.meta.get("cache", {}).get("buffer_size")
            return None if trained is None else int(trained)
        if not cached:
            raise InputError(f"buffer_size={buffer_size!r} applies to cached sampling only; this call re-encodes the "
                             "set at every step (cache=False or no cache graphs): leave buffer_size=None")
        return inputs.positive_int(buffer_size, "buffer_size", 0)

    @property
    def has_cache(self) -> bool:
        """Whether this model samples over cached keys and values: model.json "cache", and at int8 or fp16 the
        variant's own cache graphs (model.json variants.<precision>.cache)."""
        if "cache" not in self.meta:
            return False
        return self.precision == "fp32" or "cache" in self.meta.get("variants", {}).get(self.precision, {})

    @property
    def cached_autoregressive(self) -> int:
        """How many positions the cached sampler draws by default (the rest take the mean): model.json's
        cache.autoregressive where a model records one (a signal of tens of thousands of positions, where drawing
        every one would take minutes), else every position."""
        recorded = self.meta.get("cache", {}).get("autoregressive")
        if recorded is None:
            return ALL_POSITIONS
        if isinstance(recorded, bool) or not isinstance(recorded, int) or recorded < 1:
            raise WeightsError(f"{self.path}/model.json: cache.autoregressive must be a whole number >= 1, got "
                               f"{recorded!r}; export the cache graphs again")
        return recorded

    def sampling_plan(self, autoregressive: int | None = None, step_fraction: float | None = None,
                      cache: bool | None = None) -> tuple[bool, int, float]:
        """(cached, autoregressive, step_fraction) that sample() will use for these options (None: the default
        of the path taken; see sample)."""
        if cache is not None and not isinstance(cache, (bool, np.bool_)):
            raise InputError(f"cache must be True, False or None (use the cache graphs when present), got {cache!r}")
        if cache and not self.has_cache:
            if "cache" in self.meta:  # the fp32 cache graphs are there, not this precision's
                why = f"no {' / '.join(cache_graph_files(self.precision))} in model.json variants"
                how = f"`python -m export.quantize.cache_int8 {self.path}`"
            else:
                why, how = "no context.onnx / step.onnx in model.json", \
                    "`python -m export.onnx.cache_graphs CHECKPOINT --into FOLDER`"
            raise InputError(f"{self.meta['name']} ({self.precision}) has no cache graphs ({why}); make them with "
                             f"{how} (pt-plugin source checkout), or pass cache=False")
        cached = self.has_cache if cache is None else bool(cache)
        if autoregressive is None:
            autoregressive = self.cached_autoregressive if cached else DEFAULT_AUTOREGRESSIVE
        if step_fraction is None:
            step_fraction = 0.0 if cached else DEFAULT_STEP_FRACTION
        return (cached, inputs.positive_int(autoregressive, "autoregressive", 0),
                inputs.fraction(step_fraction, "step_fraction"))

    @property
    def context_graph(self) -> Graph:
        """context.onnx (loaded on first use, its sha256 checked against model.json)."""
        return self._cache_graph("context")

    @property
    def step_graph(self) -> Graph:
        """step.onnx (loaded on first use, its sha256 checked against model.json)."""
        return self._cache_graph("step")

    def _cache_graph(self, role: str) -> Graph:
        if role not in self._cache_graphs:
            name = dict(zip(("context", "step"), cache_graph_files(self.precision)))[role]
            needs = self.meta.get("variants", {}).get(self.precision, {}).get("cache", {}).get("requires_onnxruntime")
            if needs:
                require_onnxruntime(needs, f"the {self.precision} cache graphs of {self.path}",
                                    instead=", or pass cache=False")
            metadata.verify_files(self.path, self.meta, (name,))
            # a step is one token per sample: its products have one query row (sessions.ONE_QUERY_DISABLED_OPTIMIZERS)
            disabled = ONE_QUERY_DISABLED_OPTIMIZERS if role == "step" else ()
            session = self._session(name, role, *self._session_args, disabled_optimizers=disabled)
            self._cache_graphs[role] = Graph(session, self.encoder.io_binding)
        return self._cache_graphs[role]

    # -- acquisition ---------------------------------------------------------------------------
    def acquire(self, positions, values, k: int = 1, candidates=None, criterion: str = "variance",
                seed: int | None = None, **options) -> Acquisition:
        """The k positions worth observing next given S, picked greedily (pt_plugin.acquisition.acquire).

        candidates: positions [N, pos_dim]; None takes the free cells of the training grid (or of
        shape=). criterion: "variance" | "entropy" | "improvement" | "random". options: shape=,
        fantasy="mean" | "sample", lazy=True. Returns an Acquisition (positions, indices, scores).
        """
        unknown = sorted(set(options) - set(ACQUIRE_OPTIONS))
        if unknown:
            raise InputError(f"unknown option(s) {', '.join(unknown)} for acquire; expected some of "
                             f"{', '.join(ACQUIRE_OPTIONS)}")
        return acquire(self, positions, values, k, candidates, criterion, seed, **options)

    # -- grids -------------------------------------------------------------------------------
    def grid_shape(self, shape=None) -> tuple[int, ...]:
        """The grid to work on: `shape` (array order, one length per axis: [H, W] for an image) or the
        model's training grid. Any shape is valid (positions are continuous): a finer grid than the
        training one is super-resolution."""
        if shape is None:
            if self.grid is None:
                raise InputError(f"model {self.meta['name']!r} has no training grid ({self.signal.kind}); give "
                                 f"shape=, one length per axis ({len(self.signal.axes)} axes, array order "
                                 f"{list(self.signal.array_axes)})")
            return self.grid
        return inputs.grid_shape(shape, self.pos_dim, f"shape (array order {list(self.signal.array_axes)})")

    def mean_grid(self, positions, values, shape=None, return_std: bool = False, chunk: int = DEFAULT_CHUNK,
                  progress: Callable[[int, int], None] | None = None):
        """The mean signal [*shape, val_dim] at the cell centres of a grid given S (default: the training
        grid); with return_std also the standard deviation of the value law at every cell. progress: see mean()."""
        shape = self.grid_shape(shape)
        out = self.mean((positions, values), grid_positions(*shape), chunk=chunk, return_std=return_std,
                        progress=progress)
        if not return_std:
            return out.reshape(*shape, self.val_dim)
        return out[0].reshape(*shape, self.val_dim), out[1].reshape(*shape, self.val_dim)

    def sample_grid(self, positions, values, shape=None, num_samples: int = 1, seed: int | None = None,
                    **kwargs) -> np.ndarray:
        """num_samples signals [N, *shape, val_dim] on a grid drawn from p(signal | S); kwargs go to sample().

        Cells whose centre holds a sample of S keep its value and are not drawn again.
        """
        shape = self.grid_shape(shape)
        num_samples, seed = inputs.positive_int(num_samples, "num_samples"), inputs.seed(seed)
        kwargs = inputs.sampling_options(self.sample, kwargs)  # refused even when every cell is observed
        p, v = self.check_set(positions, values)
        inputs.check_sample_memory(self, num_samples, len(p), math.prod(shape), 0)  # the outputs
        grid = grid_positions(*shape)
        cell, on_centre = cell_index(p, shape)
        out = np.empty((num_samples, len(grid), self.val_dim), np.float32)
        free = np.setdiff1d(np.arange(len(grid)), cell[on_centre])
        out[:, cell[on_centre]] = v[on_centre]
        if len(free):
            out[:, free] = self.sample(p, v, grid[free], num_samples, seed, **kwargs)
        return np.clip(out, *self.value_range).reshape(num_samples, *shape, self.val_dim)

    # -- images ------------------------------------------------------------------------------
    def _image_shape(self, shape) -> tuple[int, int]:
        if self.pos_dim != 2:
            raise InputError(f"image helpers need a 2-D model; this one has pos_dim {self.pos_dim} (use mean_grid / "
                             "sample_grid)")
        return self.grid_shape(shape)

    def mean_image(self, positions, values, shape=None, return_std: bool = False):
        """Mean image [H, W, val_dim] given S (mean_grid for 2-D models); with return_std also the per-pixel std."""
        return self.mean_grid(positions, values, self._image_shape(shape), return_std)

    def sample_images(self, positions, values, shape=None, num_samples: int = 1, seed: int | None = None,
                      **kwargs) -> np.ndarray:
        """num_samples images [N, H, W, val_dim] from p(image | S) (sample_grid for 2-D models)."""
        return self.sample_grid(positions, values, self._image_shape(shape), num_samples, seed, **kwargs)


def load(name_or_path: str | os.PathLike = DEFAULT_MODEL, device: str = "auto",
         providers: Sequence | None = None, threads: int | None = None, model_path=None,
         precision: str = "fp32", io_binding: bool | None = None) -> Model:
    """Load a registered model by name (bundled, cached or downloaded; `pt-plugin models` lists them) or
    an export folder (model_path=, or a path as the first argument). Names resolve through the registry
    only, so a folder in the working directory never stands in for a registered model.

    precision: "fp32" (default), "int8" (CPU) or "fp16" (CUDA); io_binding: see Model.
    """
    graph_files(precision)  # an unknown precision is an InputError before anything is looked up
    if model_path is not None:
        return Model(locate(model_path, precision, path=True), device, providers, threads, precision, io_binding)
    return Model(locate(name_or_path, precision), device, providers, threads, precision, io_binding)
