"""Reduced-precision graphs: `python -m export.quantize EXPORT_DIR [--int8] [--fp16] [--force] [--calibration-data S]`.

Reads EXPORT_DIR/encoder.onnx and decoder.onnx (written by export.onnx.graphs) and writes, next to them:
  int8 (CPU): encoder.int8.onnx, decoder.int8.onnx. onnxruntime's static quantization (quantize_static,
       QDQ format): MatMul weights int8 per output channel in a 7-bit range (reduce_range, so that AVX2
       machines without VNNI cannot saturate their u8·s8 products and give other figures than the ones
       recorded); the activation entering each quantized MatMul uint8 with a FIXED scale and zero point,
       calibrated (min/max) on CALIBRATION_BATCHES padded batches of sets with |S| log-uniform over
       1..2048 and queries on the grid and at random positions: random sets in the value range, or
       Fashion-MNIST images (--calibration-data; auto takes the model's training data where it is
       here). Fixed scales make a row's result its own: a set's outputs do not depend on the other sets,
       the padding or the other queries of a call (dynamic quantization took one scale per input
       tensor at run time, so they did). onnxruntime fuses each QuantizeLinear/DequantizeLinear pair
       around a MatMul into MatMulIntegerToFloat (QOperator's QLinearMatMul also quantizes the output:
       no faster here, larger error). Stay float32: MatMuls whose constant weight has fewer than
       MIN_INT8_ROWS input features (the Fourier projection of positions, the value embedding: they
       cost nothing and quantizing them triples the error of the mean), MatMuls of two activations
       (attention scores and weighting: softmax inputs and the -3e4 mask fill), and every other op
       (LayerNorm, Softmax, GELU, the sigma head's log/exp).
  fp16 (GPU): encoder.fp16.onnx, decoder.fp16.onnx. Weights and compute in float16, inputs and
       outputs float32 (onnxconverter-common's convert_float_to_float16, keep_io_types=True;
       constants beyond float16's range are clamped to ±1e4, e.g. the -3e4 attention-mask fill).
       onnxruntime's CPU provider runs it too, slowly: the parity check below runs there.
With neither flag, both are made.

Each variant is checked against the float32 graphs in onnxruntime on the CPU before it is kept:
random sample sets of sizes 1, 64, 784 (batch of 3, padded; with --parity-data, sets drawn from
a data set's test split), 784 random queries each, both graphs end to end. Gated: the mean value at
each query (Σ_b q_b (c_b + μ_b), model.json bin_centers), its largest and average absolute
difference to float32, against TOLERANCES (fractions of the width of the value range). Also
printed: raw output and probability differences. Then batch independence (`independence`): one
set alone vs. in a padded batch with other sets, its queries split over other decoder calls;
every output within INDEPENDENCE_TOLERANCE (float16: FP16_INDEPENDENCE_TOLERANCE). A variant
within both is moved into place and recorded in model.json under "variants" (files, method,
parity and batch-independence figures); one over either is deleted and the command exits 1.
An int8 variant over the gate first gets the fewest MatMuls back in float32 that bring it inside,
ranked by their error alone on training sets (export.quantize.fallback; at most a third of them;
recorded as "float32_matmuls"); --no-float-fallback skips that. Still over the gate, it is made
weight-only int8 instead (export.quantize.weight_only: int8 weights in blocks, activations quantized per row
at run time; about 3x smaller, not faster); --no-weight-only-fallback skips that.
model.json changes, so a bundled model needs `python -m export.onnx.registry` afterwards.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from export.errors import UsageError, reports_errors
from export.onnx.graphs import DECODER_INPUTS, DECODER_OUTPUTS, ENCODER_INPUTS, ENCODER_OUTPUTS, ExportError
from export.quantize import weight_only as int8_weight_only
from pt_plugin.metadata import sha256

VARIANTS = ("int8", "fp16")
MIN_INT8_ROWS = 16
# Gates on the mean value, as fractions of the value range, with ~5x headroom over what the 1.09M-parameter
# Fashion-MNIST export measures (int8 max 0.010 / mean 0.00075, fp16 max 0.0029 / mean 0.00019; the
# largest differences are at sets of 1 sample). A sharper, longer-trained model may come closer to them: the shipped
# 48k-step model measures int8 max 0.047 / mean 0.0040 (dynamic), 0.046 / 0.0044 (static, Fashion-MNIST calibration)
# and 0.073 / 0.0041 (static, random-set calibration: over the gate).
TOLERANCES = {"int8": {"mean_value_max_abs_diff": 0.05, "mean_value_mean_abs_diff": 0.005},
              "fp16": {"mean_value_max_abs_diff": 0.01, "mean_value_mean_abs_diff": 0.001}}
METHODS = {"int8": "onnxruntime.quantization.quantize_static (QDQ, MinMax calibration): MatMul weights int8 per "
                   "channel, reduce_range (7 bit), uint8 activations with fixed calibrated scales (batch-independent); "
                   f"MatMuls with < {MIN_INT8_ROWS} input features and activation-by-activation MatMuls kept float32",
           "fp16": "onnxconverter_common.float16.convert_float_to_float16(keep_io_types=True): float16 weights "
                   "and compute, float32 inputs and outputs"}
SET_SIZES = (1, 64, 784)
SELECTION_BATCH = 6  # sets per size when the int8 fallback ranks and chooses: twice the gate's, so the
# largest error it sees is nearer the tail the held-out gate will meet
INT8_FORMAT = "QDQ"  # QuantizeLinear/DequantizeLinear around float MatMuls: onnxruntime fuses them (see METHODS)
INT8_CALIBRATION = "MinMax"
CALIB_PERCENTILE = 99.999
CALIBRATION_SOURCES = ("random", "fashion-mnist", "shapes", "moving-fashion")
CALIBRATION_BATCHES = 24
CALIBRATION_MAX_SET = 2048
CALIBRATION_TOKENS = 4096  # sets per calibration batch x |S|, so that large sets come in small batches
CALIBRATION_QUERIES = 256
CALIBRATION_GRID_QUERIES = 4096  # a whole 28x28 or 32x32 image; a 32³ volume is subsampled (memory)
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
# A set's outputs alone vs. batched: the largest |Δ| allowed (float32 rounding: exp/log of log_sigma differ
# by 1 ulp with the row's place in the batch, 4.8e-7 on the shipped model; quantization noise is 1e-2..1).
INDEPENDENCE_TOLERANCE = 1e-6  # float32 and int8 (fixed scales): a set's outputs do not depend on its batch
# float16: onnxruntime's float16 kernels and conversions round per block, so a value can move by an ulp
# (2^-10 at magnitude 1, 2^-9 up to 4) with the shape of the batch it runs in
FP16_INDEPENDENCE_TOLERANCE = 4e-3


def independence_tolerance(precision: str) -> float:
    return FP16_INDEPENDENCE_TOLERANCE if precision == "fp16" else INDEPENDENCE_TOLERANCE


def variant_files(precision: str) -> list[str]:
    return [f"encoder.{precision}.onnx", f"decoder.{precision}.onnx"]


def _small_matmuls(model) -> list[str]:
    """MatMul nodes whose constant weight has fewer than MIN_INT8_ROWS input features."""
    dims = {t.name: list(t.dims) for t in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1
            and len(dims.get(n.input[1], [])) >= 2 and dims[n.input[1]][-2] < MIN_INT8_ROWS]


def _tag(model, precision: str) -> None:
    entry = model.metadata_props.add()
    entry.key, entry.value = "pt_plugin_precision", precision


def _activation_matmuls(model) -> list[str]:
    """MatMul nodes with no constant operand (attention scores and weighting): they stay float32."""
    consts = {t.name for t in model.graph.initializer}
    consts |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1
            and n.input[1] not in consts]


class _Feeds:
    """A CalibrationDataReader over a list of input dicts; set_range lets the calibrator take one at a time."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self.feeds, self.i, self.end = feeds, 0, len(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        self.i += 1
        return self.feeds[self.i - 1] if self.i <= self.end else None

    def set_range(self, start_index: int, end_index: int) -> None:
        self.i, self.end = start_index, min(end_index, len(self.feeds))

    def rewind(self) -> None:
        self.i, self.end = 0, len(self.feeds)

    def __len__(self) -> int:
        return len(self.feeds)


def make_int8(src: Path, dst: Path, feeds: list[dict[str, np.ndarray]], fmt: str = INT8_FORMAT,
              method: str = INT8_CALIBRATION) -> None:
    """Static int8: activation scales fixed by calibration on `feeds`, so each row's result is its own."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    model = onnx.load(str(src))
    exclude = _small_matmuls(model) + _activation_matmuls(model)
    extra = {"MatMulConstBOnly": True, "OpTypesToExcludeOutputQuantization": ["MatMul"],
             "CalibStridedMinMax": 1}  # ranges merged batch by batch: bounded memory
    if method == "Percentile":
        extra["CalibPercentile"] = CALIB_PERCENTILE
    logging.disable(logging.WARNING)  # "consider pre-processing": shapes are static enough here
    try:
        quantize_static(str(src), str(dst), _Feeds(feeds),
                        quant_format=QuantFormat.QDQ if fmt == "QDQ" else QuantFormat.QOperator,
                        op_types_to_quantize=["MatMul", "Gemm"], nodes_to_exclude=exclude, per_channel=True,
                        reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=getattr(CalibrationMethod, method), extra_options=extra)
    finally:
        logging.disable(logging.NOTSET)
    out = onnx.load(str(dst))
    _tag(out, "int8")
    onnx.save(out, str(dst))


def _make_weight_only(src: Path, dst: Path) -> None:
    """Weight-only int8 of one graph (export.quantize.weight_only); the MatMuls static int8 skips stay float32."""
    import onnx

    model = onnx.load(str(src))
    out = int8_weight_only.make_int8_weight_only(model, _small_matmuls(model) + _activation_matmuls(model))
    _tag(out, "int8")
    onnx.save(out, str(dst))


def make_fp16(src: Path, dst: Path) -> None:
    import onnx
    try:
        from onnxconverter_common import float16
    except ImportError:
        raise ExportError("fp16 needs onnxconverter-common: pip install onnxconverter-common") from None
    model = onnx.load(str(src))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the float32 number 1e-10 will be truncated to 1e-07" (weights, mask fill)
        out = float16.convert_float_to_float16(model, keep_io_types=True)
    _tag(out, "fp16")
    onnx.checker.check_model(out)
    onnx.save(out, str(dst))


def _session(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def padded_sets(meta: dict[str, Any], size: int, batch: int, num_queries: int, rng: np.random.Generator,
                draw: "SignalDraw | None" = None):
    """A padded batch of sets (lengths size, size-3, ...) and random queries, as graph inputs; the samples
    come from `draw` (signal_source), random positions and values by default."""
    pos, val = (draw or _random_signal)(meta, batch, size, rng)
    lengths = np.array([max(1, size - 3 * i) for i in range(batch)])
    mask = np.arange(size)[None, :] < lengths[:, None]
    val[~mask] = meta["value_range"][0]
    qpos = rng.uniform(-1, 1, (batch, num_queries, meta["pos_dim"])).astype(np.float32)
    return pos, val, mask, qpos


def _log_uniform_sizes(n: int, top: int, rng: np.random.Generator) -> np.ndarray:
    """n set sizes spread log-uniformly over 1..top, one per stratum of log size (so every scale is seen)."""
    u = (np.arange(n) + rng.uniform(size=n)) / n
    return np.clip(np.round(np.exp(u * np.log(top))), 1, top).astype(int)


def _random_signal(meta: dict[str, Any], n: int, k: int, rng: np.random.Generator):
    """n sets of k samples at uniform positions with uniform values in the value range (no data needed)."""
    lo, hi = meta["value_range"]
    pos = rng.uniform(-1, 1, (n, k, meta["pos_dim"])).astype(np.float32)
    return pos, rng.uniform(lo, hi, (n, k, meta["val_dim"])).astype(np.float32)


def _image_signal(images: np.ndarray, meta: dict[str, Any], n: int, k: int, rng: np.random.Generator):
    """n sets of k samples of random images, drawn like training draws them (half on pixel centres, bilinear)."""
    import torch

    from export.datasets.images import bilinear, random_positions

    g = torch.Generator().manual_seed(int(rng.integers(2**31)))
    h, w = images.shape[1:3]
    pos = random_positions(n, k, h, w, 0.5, g)
    imgs = torch.from_numpy(images[rng.integers(len(images), size=n)])
    return pos.numpy(), bilinear(imgs, pos).numpy().astype(np.float32)


SignalDraw = Callable[[dict, int, int, np.random.Generator], tuple[np.ndarray, np.ndarray]]


def _shape_signal(split: str) -> SignalDraw:
    """Sets of procedural shapes (export.datasets.shapes), positions drawn as training draws them (half near the
    surface); calibration uses the training stream, parity the evaluation stream."""
    from export.datasets.shapes import shapes

    def draw(meta: dict[str, Any], n: int, k: int, rng: np.random.Generator):
        bodies = shapes(n, "train" if split == "train" else "eval", seed=int(rng.integers(2**31)))
        pos = np.stack([body.positions(k, rng) for body in bodies]).astype(np.float32)
        val = np.stack([body.values(p) for body, p in zip(bodies, pos)]).astype(np.float32)
        return pos, val
    return draw


def _clip_signal(data_dir: Path | None, split: str) -> SignalDraw:
    """Sets of moving Fashion-MNIST clips (export.datasets.video) of `split`'s garments, positions drawn as training
    draws them (half on voxel centres, trilinear values)."""
    import torch

    from export.datasets.images import load_idx_images
    from export.datasets.video import make_clips, random_positions, shrink, trilinear

    garments = shrink(load_idx_images(str(data_dir or FASHION_DIR), "train" if split == "train" else "test"))

    def draw(meta: dict[str, Any], n: int, k: int, rng: np.random.Generator):
        g = torch.Generator().manual_seed(int(rng.integers(2**31)))
        clips = torch.from_numpy(make_clips(garments, n, rng))
        pos = random_positions(n, k, 0.5, g)
        return pos.numpy(), trilinear(clips, pos).numpy().astype(np.float32)
    return draw


def signal_source(meta: dict[str, Any], source: str, data_dir: Path | None, split: str = "train") -> SignalDraw:
    """Where calibration or parity sets come from: "random" (uniform positions and values), "shapes"
    (procedural SDFs), "moving-fashion" (clips of Fashion-MNIST garments) or an image data spec
    (fashion-mnist, idx:DIR, folder:DIR, cifar10:DIR) read at `split`; refuses data that does not fit the
    model."""
    if source == "random":
        return _random_signal
    from export.datasets.images import DataError, load_dataset

    if source in ("shapes", "moving-fashion"):
        if (meta["pos_dim"], meta["val_dim"]) != (3, 1):
            what = "3-D SDFs" if source == "shapes" else "grayscale (x, y, t) clips"
            raise ExportError(f"calibration data {source!r} are {what}; the model takes pos_dim {meta['pos_dim']}, "
                              f"val_dim {meta['val_dim']}")
        if source == "shapes":
            return _shape_signal(split)
        try:
            return _clip_signal(data_dir, split)
        except DataError as e:
            raise ExportError(f"calibration data 'moving-fashion' needs Fashion-MNIST garments: {e}") from None
    try:
        images = load_dataset(source, str(data_dir or FASHION_DIR), split)
    except DataError as e:
        raise ExportError(f"calibration data {source!r}: {e}") from None
    if meta["pos_dim"] != 2 or images.shape[-1] != meta["val_dim"]:
        raise ExportError(f"calibration data {source!r} holds {images.shape[-1]}-channel images; the model "
                          f"takes pos_dim {meta['pos_dim']}, val_dim {meta['val_dim']}")
    return lambda meta, n, k, rng: _image_signal(images, meta, n, k, rng)


def calibration_sets(meta: dict[str, Any], source: str = "random", data_dir: Path | None = None,
                     seed: int = 0, batches: int = CALIBRATION_BATCHES):
    """Padded batches (pos, val, mask, qpos) of sets with sizes log-uniform over 1..CALIBRATION_MAX_SET.

    Each batch holds one set of the drawn size and shorter ones padded to it (as pt_plugin pads:
    position 0, the lowest value); queries are the model's grid (every other batch) or random positions.
    """
    rng = np.random.default_rng(seed)
    draw = signal_source(meta, source, data_dir)
    grid = _grid(meta)
    out = []
    for i, k in enumerate(_log_uniform_sizes(batches, CALIBRATION_MAX_SET, rng)):
        b = int(np.clip(CALIBRATION_TOKENS // k, 1, 8))
        pos, val = draw(meta, b, k, rng)
        lengths = np.concatenate([[k], _log_uniform_sizes(b - 1, k, rng)])
        mask = np.arange(k)[None, :] < lengths[:, None]
        pos[~mask], val[~mask] = 0.0, meta["value_range"][0]
        if grid is not None and i % 2 == 0:  # grid cells (at most CALIBRATION_GRID_QUERIES: a 32³ volume
            cells = grid if len(grid) <= CALIBRATION_GRID_QUERIES else \
                grid[np.sort(rng.choice(len(grid), CALIBRATION_GRID_QUERIES, replace=False))]  # would not fit)
            qpos = np.broadcast_to(cells, (b,) + cells.shape).copy()
        else:
            qpos = rng.uniform(-1, 1, (b, CALIBRATION_QUERIES, meta["pos_dim"])).astype(np.float32)
        out.append((pos, val, mask, qpos))
    return out


def _grid(meta: dict[str, Any]) -> np.ndarray | None:
    """The model's training grid as query positions [H*W*..., pos_dim], or None for a continuous signal."""
    from pt_plugin import grid_positions

    shape = meta.get("grid")
    return grid_positions(*shape).reshape(-1, meta["pos_dim"]).astype(np.float32) if shape else None


def calibration_feeds(folder: Path, meta: dict[str, Any], source: str = "random", data_dir: Path | None = None,
                      seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Encoder and decoder inputs for calibration; the decoder's memory comes from the float32 encoder."""
    enc = _session(folder / "encoder.onnx")
    enc_feeds, dec_feeds = [], []
    for pos, val, mask, qpos in calibration_sets(meta, source, data_dir, seed):
        feed = {"sample_positions": pos, "sample_values": val, "sample_mask": mask}
        (memory,) = enc.run(None, feed)
        enc_feeds.append(feed)
        dec_feeds.append({"memory": memory, "sample_mask": mask, "query_positions": qpos})
    return enc_feeds, dec_feeds


def _run(sessions, pos: np.ndarray, val: np.ndarray, mask: np.ndarray, query_chunks: list[np.ndarray]):
    """Memory and decoder outputs of both graphs; the decoder is called once per query chunk [B, Qc, pos_dim]."""
    enc, dec = sessions
    (memory,) = enc.run(None, {"sample_positions": pos, "sample_values": val, "sample_mask": mask})
    parts = [dec.run(None, {"memory": memory, "sample_mask": mask, "query_positions": q}) for q in query_chunks]
    return memory, [np.concatenate(p, axis=1) for p in zip(*parts)]


def independence(encoder: Path, decoder: Path, meta: dict[str, Any], seed: int = 0) -> dict[str, float]:
    """Largest difference of one set's outputs alone vs. in padded batches and other query chunks.

    The set (37 samples, 300 queries) runs alone in one call, then as row 1 of a batch of 3 padded
    to 200 samples (the other sets random, padding random) with its queries split over two decoder
    calls, the first led by 50 queries of the other rows' own. Figures: max |Δ| of memory on its
    real rows, of logits, offsets, log_sigma, and of the mean value (a fraction of the value range).
    """
    from pt_plugin.distribution import Distribution

    rng = np.random.default_rng(seed)
    sessions = (_session(encoder), _session(decoder))
    k, width, nq = 37, 200, 300
    pos, val = _random_signal(meta, 3, width, rng)
    mask = np.arange(width)[None, :] < np.array([[5], [k], [width]])
    qpos = rng.uniform(-1, 1, (3, nq + 50, meta["pos_dim"])).astype(np.float32)
    mem1, out1 = _run(sessions, pos[1:2, :k], val[1:2, :k], mask[1:2, :k], [qpos[1:2, 50:]])
    memb, outb = _run(sessions, pos, val, mask, [qpos[:, :150], qpos[:, 150:]])
    outb = [o[1:2, 50:] for o in outb]
    diffs = {"memory": float(np.abs(mem1[0] - memb[1, :k]).max())}
    diffs.update({n: float(np.abs(a - b).max()) for n, a, b in zip(DECODER_OUTPUTS, out1, outb)})
    centers = np.asarray(meta["bin_centers"], np.float64)
    span = float(meta["value_range"][1] - meta["value_range"][0]) or 1.0
    diffs["mean_value"] = float(np.abs(Distribution(*out1, centers).mean() - Distribution(*outb, centers).mean()).max()
                                / span)
    return diffs


def parity(folder: Path, encoder: Path, decoder: Path, meta: dict[str, Any], sizes=SET_SIZES, batch: int = 3,
           num_queries: int = 784, seed: int = 0, verbose: bool = True, data: str = "random",
           data_dir: Path | None = None, split: str = "test") -> dict[str, Any]:
    """Differences of a variant (encoder, decoder paths) to the float32 graphs in `folder`, on random sets or
    on sets drawn from a split (the held-out test split by default) of a data spec (`data`; a palette model's
    outputs on random colours are off its domain)."""
    import onnxruntime as ort

    from pt_plugin.distribution import Distribution

    ref = (_session(folder / "encoder.onnx"), _session(folder / "decoder.onnx"))
    var = (_session(encoder), _session(decoder))
    names = ([i.name for i in var[0].get_inputs()], [o.name for o in var[0].get_outputs()],
             [i.name for i in var[1].get_inputs()], [o.name for o in var[1].get_outputs()])
    if names != (ENCODER_INPUTS, ENCODER_OUTPUTS, DECODER_INPUTS, DECODER_OUTPUTS):
        raise ExportError(f"{encoder.name}/{decoder.name}: input/output names {names} differ from the contract")
    centers = np.asarray(meta["bin_centers"], np.float64)
    width = float(meta["value_range"][1] - meta["value_range"][0]) or 1.0
    rng = np.random.default_rng(seed)
    draw = signal_source(meta, data, data_dir, split=split)
    worst = {k: 0.0 for k in ("memory", *DECODER_OUTPUTS, "probs", "mean_value")}
    total, count = 0.0, 0
    for size in sizes:
        pos, val, mask, qpos = padded_sets(meta, size, batch, num_queries, rng, draw)
        outs = []
        for enc, dec in (ref, var):
            (mem,) = enc.run(None, {"sample_positions": pos, "sample_values": val, "sample_mask": mask})
            outs.append((mem, dec.run(None, {"memory": mem, "sample_mask": mask, "query_positions": qpos})))
        (m0, d0), (m1, d1) = outs
        for a, b in zip([m0, *d0], [m1, *d1]):
            if a.shape != b.shape or b.dtype != np.float32:
                raise ExportError(f"variant output {b.dtype} {b.shape} differs from float32 {a.dtype} {a.shape}")
        row = {"memory": float(np.abs(np.where(mask[..., None], m0 - m1, 0)).max())}
        row.update({n: float(np.abs(a - b).max()) for n, a, b in zip(DECODER_OUTPUTS, d0, d1)})
        p0, p1 = Distribution(*d0, centers), Distribution(*d1, centers)
        row["probs"] = float(np.abs(p0.probs - p1.probs).max())
        dm = np.abs(p0.mean() - p1.mean()) / width
        row["mean_value"] = float(dm.max())
        total, count = total + float(dm.sum()), count + dm.size
        for k, v in row.items():
            worst[k] = max(worst[k], v)
        if verbose:
            print(f"  set size {size:4d} (batch {batch}, padded): max |Δ| memory {row['memory']:.2e}, logits "
                  f"{row['logits']:.2e}, offsets {row['offsets']:.2e}, log_sigma {row['log_sigma']:.2e}, probs "
                  f"{row['probs']:.2e}; mean value max {row['mean_value']:.2e}, mean {dm.mean():.2e}")
    out = {f"{k}_max_abs_diff": v for k, v in worst.items()}
    out["mean_value_mean_abs_diff"] = total / count
    out.update({"sets": data, "split": split, "set_sizes": list(sizes), "batch": batch, "num_queries": num_queries,
                "seed": seed,
                "provider": "CPUExecutionProvider", "onnxruntime": ort.__version__,
                "note": "mean-value differences are fractions of the value range width"})
    return out


def within(figures: dict[str, Any], tolerance: dict[str, float]) -> bool:
    return all(figures[k] <= v for k, v in tolerance.items())


def resolve_data_source(meta: dict[str, Any], source: str, data_dir: Path | None) -> str:
    """"auto": the model's own training data where it can be had here (fashion-mnist and moving-fashion when
    Fashion-MNIST is readable, shapes always: they are generated), else random sets."""
    if source != "auto":
        return source
    trained_on = meta.get("training", {}).get("data")
    here = (data_dir or FASHION_DIR) / "train-images-idx3-ubyte.gz"
    if trained_on == "shapes":
        return "shapes"
    return trained_on if trained_on in ("fashion-mnist", "moving-fashion") and here.is_file() else "random"


def independence_ok(diffs: dict[str, float], precision: str = "int8") -> bool:
    """Every figure of `independence` within the precision's tolerance (rounding, not quantization)."""
    return all(v <= independence_tolerance(precision) for v in diffs.values())


def _make_graphs(folder: Path, precision: str, tmp: list[Path], calibration: str, data_dir: Path | None,
                 meta: dict[str, Any]) -> None:
    """Write the variant's encoder and decoder to the paths in tmp."""
    srcs = (folder / "encoder.onnx", folder / "decoder.onnx")
    if precision == "fp16":
        for src, t in zip(srcs, tmp):
            make_fp16(src, t)
        return
    print(f"int8: calibrating on {calibration} sets ({CALIBRATION_BATCHES} padded batches, "
          f"|S| 1..{CALIBRATION_MAX_SET})")
    for src, t, feeds in zip(srcs, tmp, calibration_feeds(folder, meta, calibration, data_dir)):
        make_int8(src, t, feeds)


def _float_fallback(folder: Path, tmp: list[Path], meta: dict[str, Any], calibration: str,
                    data_dir: Path | None) -> dict[str, list[str]]:
    """Full int8 missed the gate: put the fewest sensitivity-ranked MatMuls back in float32 (export.quantize.fallback,
    ranked on the calibration data's training split) and rewrite tmp with them. Returns the MatMuls kept float32
    per graph; none (tmp unchanged) when more than a third of them would have to be."""
    from export.quantize.fallback import Pair, choose_float_nodes

    print("int8: over the gate; ranking the quantized MatMuls by their error alone (training split)")
    pair = Pair((folder / "encoder.onnx", folder / "decoder.onnx"), (tmp[0], tmp[1]))
    try:
        def on_training_sets(enc: Path, dec: Path) -> dict[str, Any]:
            return parity(folder, enc, dec, meta, data=calibration, data_dir=data_dir, split="train",
                          verbose=False, seed=1, batch=SELECTION_BATCH)
        chosen = choose_float_nodes(pair, on_training_sets, TOLERANCES["int8"])
        if chosen is None:
            print("int8: more than a third of the quantized MatMuls would have to stay float32")
            return {}
        enc, dec = pair.write(set(chosen), "chosen")
        enc.replace(tmp[0])
        dec.replace(tmp[1])
    finally:
        pair.cleanup()
    return {role: [n for g, n in chosen if g == i] for i, role in enumerate(("encoder", "decoder"))}


def make_variant(folder: Path, precision: str, force: bool = False, calibration: str = "auto",
                 data_dir: Path | None = None, parity_data: str = "random",
                 float_fallback: bool = True, weight_only_fallback: bool = True) -> tuple[bool, dict[str, Any]]:
    """Write, check and (if within tolerance and batch-independent) keep one variant; returns (ok, its entry).
    An int8 variant over the gate gets a few MatMuls back in float32 first (`float_fallback`), then, still over
    it, is made weight-only int8 instead (`weight_only_fallback`)."""
    files = [folder / f for f in variant_files(precision)]
    existing = [str(f) for f in files if f.exists()]
    if existing and not force:
        raise ExportError(f"{', '.join(existing)} already exist; pass --force to replace them")
    meta = json.loads((folder / "model.json").read_text())
    calibration = resolve_data_source(meta, calibration, data_dir)
    parity_data = resolve_data_source(meta, parity_data, data_dir)
    tmp = [f.with_suffix(".onnx.tmp") for f in files]
    kept: dict[str, list[str]] = {}
    weight_only = False
    try:
        _make_graphs(folder, precision, tmp, calibration, data_dir, meta)
        print(f"{precision}: parity against float32 (onnxruntime CPU)")
        figures = parity(folder, tmp[0], tmp[1], meta, data=parity_data, data_dir=data_dir)
        tol = TOLERANCES[precision]
        if precision == "int8" and not within(figures, tol) and float_fallback:
            kept = _float_fallback(folder, tmp, meta, calibration, data_dir)
            if kept:
                print(f"int8: {sum(map(len, kept.values()))} MatMuls kept float32; parity again")
                figures = parity(folder, tmp[0], tmp[1], meta, data=parity_data, data_dir=data_dir)
        if precision == "int8" and not within(figures, tol) and weight_only_fallback:
            print("int8: static int8 is over the gate; weight-only int8 instead (export.quantize.weight_only)")
            for src, t in zip((folder / "encoder.onnx", folder / "decoder.onnx"), tmp):
                _make_weight_only(src, t)
            kept, weight_only = {}, True
            figures = parity(folder, tmp[0], tmp[1], meta, data=parity_data, data_dir=data_dir)
        figures["tolerance"] = tol
        alone = independence(tmp[0], tmp[1], meta)
        ok = within(figures, tol) and independence_ok(alone, precision)
        if ok:
            for t, f in zip(tmp, files):
                t.replace(f)
    finally:
        for t in tmp:
            t.unlink(missing_ok=True)
    sizes = {f.name: f.stat().st_size for f in files if f.exists()}
    method = METHODS[precision] + (f"; calibrated on {calibration} sets" if precision == "int8" else "")
    if weight_only:
        method = int8_weight_only.METHOD
    if kept:
        method += (f"; {sum(map(len, kept.values()))} MatMuls kept float32, those with the largest error alone "
                   "(export.quantize.fallback, ranked on training sets)")
    entry = {"files": [f.name for f in files], "method": method, "bytes": sizes, "parity": figures,
             "batch_independence": {**alone, "tolerance": independence_tolerance(precision)}}
    if kept:
        entry["float32_matmuls"] = kept
    if weight_only:  # pt_plugin.load refuses these graphs, with this figure, on an older onnxruntime
        entry["requires_onnxruntime"] = int8_weight_only.MIN_ONNXRUNTIME
    print(f"{precision}: mean value max |Δ| {figures['mean_value_max_abs_diff']:.2e} (tolerance "
          f"{tol['mean_value_max_abs_diff']:.0e}), mean |Δ| {figures['mean_value_mean_abs_diff']:.2e} (tolerance "
          f"{tol['mean_value_mean_abs_diff']:.0e}); a set alone vs. in a padded batch and other query chunks: max "
          f"|Δ| {max(alone.values()):.1e} (tolerance {independence_tolerance(precision):.0e}): "
          f"{'OK' if ok else 'FAILED, not kept'}")
    return ok, entry


def data_source(spec: str) -> str:
    """argparse type: auto, random, shapes, moving-fashion, or an image data spec of export.datasets.images
    (fashion-mnist, idx:DIR, folder:DIR, cifar10:DIR)."""
    kind, sep, where = spec.partition(":")
    if spec in ("auto", *CALIBRATION_SOURCES) or (kind in ("idx", "folder", "cifar10") and sep and where):
        return spec
    raise argparse.ArgumentTypeError(f"{spec!r}: expected auto, random, fashion-mnist, shapes, moving-fashion, "
                                     "idx:DIR, folder:DIR or cifar10:DIR")


@reports_errors
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.quantize", description=__doc__.splitlines()[0])
    p.add_argument("export_dir", help="folder with encoder.onnx, decoder.onnx, model.json (from export.onnx.graphs)")
    p.add_argument("--int8", action="store_true", help="int8 static quantization (CPU)")
    p.add_argument("--fp16", action="store_true", help="float16 weights and compute (GPU)")
    p.add_argument("--force", action="store_true", help="replace existing variant files")
    p.add_argument("--calibration-data", type=data_source, default="auto",
                   help="int8 activation scales from random sets, procedural shapes, moving-fashion clips or "
                        "images (fashion-mnist, idx:DIR, folder:DIR, cifar10:DIR; their training split); auto: the "
                        "model's training data when it is fashion-mnist or moving-fashion (and Fashion-MNIST is "
                        "readable) or shapes, else random")
    p.add_argument("--parity-data", type=data_source, default="random",
                   help="the sets the parity gate runs on: random (default), shapes, moving-fashion (test "
                        "garments), or images as for --calibration-data, their test split (folder:DIR: every image "
                        "in DIR; use held-out images); auto as for --calibration-data")
    p.add_argument("--no-float-fallback", dest="float_fallback", action="store_false",
                   help="int8 over the gate fails at once (by default the MatMuls with the largest error alone, "
                        "at most a third, go back to float32 until the rest passes)")
    p.add_argument("--no-weight-only-fallback", dest="weight_only_fallback", action="store_false",
                   help="int8 still over the gate after the float32 fallback fails (by default it is made "
                        "weight-only int8 instead: export.quantize.weight_only)")
    p.add_argument("--data-dir", type=Path, help=f"Fashion-MNIST folder (default {FASHION_DIR})")
    a = p.parse_args(argv)
    folder = Path(a.export_dir)
    wanted = [v for v in VARIANTS if getattr(a, v)] or list(VARIANTS)
    missing = [f for f in ("encoder.onnx", "decoder.onnx", "model.json") if not (folder / f).is_file()]
    if missing:
        raise UsageError(f"{folder} is not an export folder: missing {', '.join(missing)} "
                         "(write one with `python -m export.onnx CHECKPOINT --out DIR`)")
    failed = []
    for precision in wanted:
        ok, entry = make_variant(folder, precision, a.force, a.calibration_data, a.data_dir, a.parity_data,
                                 a.float_fallback, a.weight_only_fallback)
        if not ok:
            failed.append(precision)
            continue
        meta = json.loads((folder / "model.json").read_text())
        meta.setdefault("variants", {})[precision] = entry
        meta.setdefault("files", {}).update({f: f"sha256:{sha256(folder / f)}" for f in entry["files"]})
        (folder / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
        print(f"wrote {', '.join(entry['files'])} ({sum(entry['bytes'].values())} bytes) and model.json "
              "variants entry")
    if failed:
        print(f"FAILED for {', '.join(failed)}: parity over tolerance or outputs batch-dependent, nothing kept",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
