"""Reduced-precision graphs: `python -m export.quantize EXPORT_DIR [--int8] [--fp16] [--force]`.

Reads EXPORT_DIR/encoder.onnx and decoder.onnx (written by export.onnx) and writes, next to them:
  int8 (CPU): encoder.int8.onnx, decoder.int8.onnx. onnxruntime's dynamic quantization: MatMul
       weights int8 per output channel in a 7-bit range (reduce_range, so that AVX2 machines without
       VNNI cannot saturate their u8·s8 products and give other figures than the ones recorded),
       activations uint8, quantized at run time. MatMuls whose constant weight has fewer than
       MIN_INT8_ROWS input features (the Fourier projection of positions, the value embedding) stay
       float32: they cost nothing and quantizing them triples the error of the mean.
  fp16 (GPU): encoder.fp16.onnx, decoder.fp16.onnx. Weights and compute in float16, inputs and
       outputs float32 (onnxconverter-common's convert_float_to_float16, keep_io_types=True;
       constants beyond float16's range are clamped to ±1e4, e.g. the -3e4 attention-mask fill).
       onnxruntime's CPU provider runs it too, slowly: the parity check below runs there.
With neither flag, both are made.

Each variant is checked against the float32 graphs in onnxruntime on the CPU before it is kept:
random sample sets of sizes 1, 64, 784 (batch of 3, padded), 784 random queries each, both graphs
end to end. Gated: the mean value at each query (Σ_b q_b (c_b + μ_b), model.json bin_centers), its
largest and average absolute difference to float32, against TOLERANCES (fractions of the width of
the value range). Also printed: raw output and probability differences. A variant within
tolerance is moved into place and recorded in model.json under "variants" (files, method, parity
figures); one over it is deleted and the command exits 1. model.json changes, so a bundled model
needs `python -m export.registry` afterwards.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .onnx import DECODER_INPUTS, DECODER_OUTPUTS, ENCODER_INPUTS, ENCODER_OUTPUTS, ExportError

VARIANTS = ("int8", "fp16")
MIN_INT8_ROWS = 16
# Gates on the mean value, as fractions of the value range, with ~5x headroom over what the 1.09M-parameter
# Fashion-MNIST export measures (int8 max 0.010 / mean 0.00075, fp16 max 0.0029 / mean 0.00019; the
# largest differences are at sets of 1 sample). A sharper, longer-trained model may come closer to them.
TOLERANCES = {"int8": {"mean_value_max_abs_diff": 0.05, "mean_value_mean_abs_diff": 0.005},
              "fp16": {"mean_value_max_abs_diff": 0.01, "mean_value_mean_abs_diff": 0.001}}
METHODS = {"int8": "onnxruntime.quantization.quantize_dynamic: MatMul weights int8 per channel, reduce_range "
                   f"(7 bit), dynamic uint8 activations; MatMuls with < {MIN_INT8_ROWS} input features kept float32",
           "fp16": "onnxconverter_common.float16.convert_float_to_float16(keep_io_types=True): float16 weights "
                   "and compute, float32 inputs and outputs"}
SET_SIZES = (1, 64, 784)


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


def make_int8(src: Path, dst: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(src))
    logging.disable(logging.WARNING)  # "consider pre-processing": shapes are static enough here
    try:
        quantize_dynamic(model, str(dst), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                         op_types_to_quantize=["MatMul", "Gemm"], nodes_to_exclude=_small_matmuls(model),
                         extra_options={"MatMulConstBOnly": True})
    finally:
        logging.disable(logging.NOTSET)
    out = onnx.load(str(dst))
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


def random_sets(meta: dict[str, Any], size: int, batch: int, num_queries: int, rng: np.random.Generator):
    """A padded batch of random sets (lengths size, size-3, ...) and random queries, as graph inputs."""
    lo, hi = meta["value_range"]
    pos = rng.uniform(-1, 1, (batch, size, meta["pos_dim"])).astype(np.float32)
    val = rng.uniform(lo, hi, (batch, size, meta["val_dim"])).astype(np.float32)
    lengths = np.array([max(1, size - 3 * i) for i in range(batch)])
    mask = np.arange(size)[None, :] < lengths[:, None]
    val[~mask] = lo
    qpos = rng.uniform(-1, 1, (batch, num_queries, meta["pos_dim"])).astype(np.float32)
    return pos, val, mask, qpos


def parity(folder: Path, encoder: Path, decoder: Path, meta: dict[str, Any], sizes=SET_SIZES, batch: int = 3,
           num_queries: int = 784, seed: int = 0, verbose: bool = True) -> dict[str, Any]:
    """Differences of a variant (encoder, decoder paths) to the float32 graphs in `folder`."""
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
    worst = {k: 0.0 for k in ("memory", *DECODER_OUTPUTS, "probs", "mean_value")}
    total, count = 0.0, 0
    for size in sizes:
        pos, val, mask, qpos = random_sets(meta, size, batch, num_queries, rng)
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
    out.update({"set_sizes": list(sizes), "batch": batch, "num_queries": num_queries, "seed": seed,
                "provider": "CPUExecutionProvider", "onnxruntime": ort.__version__,
                "note": "mean-value differences are fractions of the value range width"})
    return out


def within(figures: dict[str, Any], tolerance: dict[str, float]) -> bool:
    return all(figures[k] <= v for k, v in tolerance.items())


def make_variant(folder: Path, precision: str, force: bool = False) -> tuple[bool, dict[str, Any]]:
    """Write, check and (if within tolerance) keep one variant; returns (ok, its model.json entry)."""
    files = [folder / f for f in variant_files(precision)]
    existing = [str(f) for f in files if f.exists()]
    if existing and not force:
        raise ExportError(f"{', '.join(existing)} already exist; pass --force to replace them")
    meta = json.loads((folder / "model.json").read_text())
    tmp = [f.with_suffix(".onnx.tmp") for f in files]
    make = make_int8 if precision == "int8" else make_fp16
    try:
        for src, t in zip((folder / "encoder.onnx", folder / "decoder.onnx"), tmp):
            make(src, t)
        print(f"{precision}: parity against float32 (onnxruntime CPU)")
        figures = parity(folder, tmp[0], tmp[1], meta)
        tol = TOLERANCES[precision]
        figures["tolerance"] = tol
        ok = within(figures, tol)
        if ok:
            for t, f in zip(tmp, files):
                t.replace(f)
    finally:
        for t in tmp:
            t.unlink(missing_ok=True)
    sizes = {f.name: f.stat().st_size for f in files if f.exists()}
    entry = {"files": [f.name for f in files], "method": METHODS[precision], "bytes": sizes, "parity": figures}
    print(f"{precision}: mean value max |Δ| {figures['mean_value_max_abs_diff']:.2e} (tolerance "
          f"{tol['mean_value_max_abs_diff']:.0e}), mean |Δ| {figures['mean_value_mean_abs_diff']:.2e} (tolerance "
          f"{tol['mean_value_mean_abs_diff']:.0e}): {'OK' if ok else 'FAILED, not kept'}")
    return ok, entry


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.quantize", description=__doc__.splitlines()[0])
    p.add_argument("export_dir", help="folder with encoder.onnx, decoder.onnx, model.json (from export.onnx)")
    p.add_argument("--int8", action="store_true", help="int8 dynamic quantization (CPU)")
    p.add_argument("--fp16", action="store_true", help="float16 weights and compute (GPU)")
    p.add_argument("--force", action="store_true", help="replace existing variant files")
    a = p.parse_args(argv)
    folder = Path(a.export_dir)
    wanted = [v for v in VARIANTS if getattr(a, v)] or list(VARIANTS)
    missing = [f for f in ("encoder.onnx", "decoder.onnx", "model.json") if not (folder / f).is_file()]
    if missing:
        print(f"error: {folder} is not an export folder: missing {', '.join(missing)} "
              "(write one with `python -m export.onnx CHECKPOINT --out DIR`)", file=sys.stderr)
        return 2
    failed = []
    for precision in wanted:
        try:
            ok, entry = make_variant(folder, precision, a.force)
        except ExportError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if not ok:
            failed.append(precision)
            continue
        meta = json.loads((folder / "model.json").read_text())
        meta.setdefault("variants", {})[precision] = entry
        (folder / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
        print(f"wrote {', '.join(entry['files'])} ({sum(entry['bytes'].values())} bytes) and model.json "
              "variants entry")
    if failed:
        print(f"parity FAILED for {', '.join(failed)}: over tolerance, nothing kept", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
