"""int8 cache graphs: `python -m export.quantize.cache_int8 EXPORT_DIR [--force]`.

The causal buffer's graphs (context.onnx, step.onnx; export.onnx.cache_graphs) as context.int8.onnx and
step.int8.onnx, so that a model loaded with precision="int8" samples over cached keys and values too. They are
weight-only int8 (export.quantize.weight_only) whatever method the folder's int8 encoder and decoder used:
static int8 would need calibrated scales for every cache input, and a step reads one token, where weight-only
int8 costs what float32 costs (benchmarks/cached_sampling.py --int8) at a third of the size.

The gate: seeded sets of the model's data (or random), encoded by both context graphs; then STEP_TOKENS tokens
stepped one at a time by both step graphs over their own caches (teacher-forced: the same tokens), each time the
law at GATE_QUERIES positions. The largest and average difference of the mean value, as fractions of the value
range, must meet the int8 tolerances of the encoder and decoder (export.quantize.parity.TOLERANCES). Kept, the
graphs are recorded in model.json under variants.int8.cache with their figures; over the gate, nothing is kept.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from export.errors import UsageError, reports_errors
from export.quantize import weight_only
from export.quantize.graphs import session
from export.quantize.parity import TOLERANCES, within
from export.quantize.sources import AUTO, draws, resolve
from pt_plugin.cached_sampling import Caches
from pt_plugin.distribution import Distribution
from pt_plugin.metadata import sha256

SOURCES = ("context.onnx", "step.onnx")
FILES = ("context.int8.onnx", "step.int8.onnx")
GATE_SIZES = (1, 64, 256)  # |S| of the gate's contexts
GATE_BATCH = 2
GATE_QUERIES = 64
STEP_TOKENS = 8


def make_graphs(folder: Path, out: Path) -> list[Path]:
    """Weight-only int8 copies of the folder's cache graphs in `out` (tagged int8), in FILES order."""
    for src, name in zip(SOURCES, FILES):
        weight_only.make_weight_only(folder / src, out / name)
    return [out / name for name in FILES]


def _mean_gap(ref: list[np.ndarray], var: list[np.ndarray], centers: np.ndarray, width: float) -> np.ndarray:
    """|Δ mean value| / width at every query, between two graphs' laws (their last three outputs)."""
    return np.abs(Distribution(*ref[-3:], centers).mean() - Distribution(*var[-3:], centers).mean()) / width


def gate(folder: Path, context: Path, step: Path, meta: dict[str, Any], source: str,
         data_dir: Path | None, seed: int = 0) -> dict[str, Any]:
    """Mean-value differences of the int8 cache graphs to the float32 ones: after the context, and after each of
    STEP_TOKENS steps over each graph's own caches."""
    graphs = {"fp32": [session(folder / s) for s in SOURCES], "int8": [session(context), session(step)]}
    centers = np.asarray(meta["bin_centers"], np.float64)
    width = float(meta["value_range"][1] - meta["value_range"][0]) or 1.0
    draw, rng = draws(meta, source, data_dir, split="test"), np.random.default_rng(seed)
    worst, total, count = 0.0, 0.0, 0
    for size in GATE_SIZES:
        pos, val = draw(meta, GATE_BATCH, size + STEP_TOKENS, rng)
        qpos = rng.uniform(-1, 1, (GATE_BATCH, GATE_QUERIES, meta["pos_dim"])).astype(np.float32)
        feeds = {"sample_positions": pos[:, :size], "sample_values": val[:, :size],
                 "sample_mask": np.ones((GATE_BATCH, size), bool), "query_positions": qpos}
        laws, caches = {}, {}
        for name, (ctx, _) in graphs.items():
            outs = ctx.run(None, feeds)
            laws[name], caches[name] = outs, Caches(outs[:4], GATE_BATCH, size + STEP_TOKENS)
        gaps = [_mean_gap(laws["fp32"], laws["int8"], centers, width)]
        for t in range(size, size + STEP_TOKENS):
            token = {"token_positions": pos[:, t:t + 1], "token_values": val[:, t:t + 1], "query_positions": qpos}
            for name, (_, stp) in graphs.items():
                laws[name] = stp.run(None, {**token, **caches[name].feeds()})
                caches[name].append(laws[name][:4])
            gaps.append(_mean_gap(laws["fp32"], laws["int8"], centers, width))
        gaps = np.stack(gaps)
        worst, total, count = max(worst, float(gaps.max())), total + float(gaps.sum()), count + gaps.size
        print(f"  |S| = {size:4d} and {STEP_TOKENS} steps: mean value max |Δ| {gaps.max():.2e}, mean {gaps.mean():.2e}")
    return {"mean_value_max_abs_diff": worst, "mean_value_mean_abs_diff": total / count, "sets": source,
            "set_sizes": list(GATE_SIZES), "steps": STEP_TOKENS, "batch": GATE_BATCH, "num_queries": GATE_QUERIES,
            "note": "mean-value differences are fractions of the value range width, after the context and after "
                    "every step, each graph over its own caches"}


def add_int8_cache(folder: Path, force: bool = False, source: str = AUTO, data_dir: Path | None = None) -> bool:
    """Make, gate and (within the int8 tolerances) keep context.int8.onnx and step.int8.onnx, recorded in
    model.json variants.int8.cache; returns whether they were kept. Over the gate, nothing changes in the folder
    except that a stale record and its files are removed."""
    meta_path = folder / "model.json"
    meta = json.loads(meta_path.read_text())
    if "cache" not in meta or not all((folder / s).is_file() for s in SOURCES):
        raise UsageError(f"{folder} has no cache graphs; add them first: python -m export.onnx.cache_graphs "
                         f"CHECKPOINT --into {folder}")
    if "int8" not in meta.get("variants", {}):
        raise UsageError(f"{folder} has no int8 variant; make it first: python -m export.quantize {folder} --int8")
    existing = [f for f in FILES if (folder / f).exists()]
    if existing and not force:
        raise UsageError(f"{', '.join(existing)} already exist in {folder}; pass --force to replace them")
    source = resolve(meta, source, data_dir)
    with tempfile.TemporaryDirectory(prefix=".cache-int8-", dir=folder) as staging:
        context, step = make_graphs(folder, Path(staging))
        print(f"int8 cache graphs: parity against float32 on {source} sets")
        figures = gate(folder, context, step, meta, source, data_dir)
        figures["tolerance"] = TOLERANCES["int8"]
        ok = within(figures, figures["tolerance"])
        variant = meta["variants"]["int8"]
        if ok:
            for p in (context, step):
                p.replace(folder / p.name)
            variant["cache"] = {"files": list(FILES), "method": weight_only.DESCRIPTION,
                                "bytes": {f: (folder / f).stat().st_size for f in FILES}, "parity": figures,
                                "requires_onnxruntime": weight_only.MIN_ONNXRUNTIME}
            meta.setdefault("files", {}).update({f: f"sha256:{sha256(folder / f)}" for f in FILES})
        else:
            variant.pop("cache", None)
            for f in FILES:
                (folder / f).unlink(missing_ok=True)
                meta.get("files", {}).pop(f, None)
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    tol = figures["tolerance"]
    print(f"int8 cache graphs: mean value max |Δ| {figures['mean_value_max_abs_diff']:.2e} (tolerance "
          f"{tol['mean_value_max_abs_diff']:.0e}), mean |Δ| {figures['mean_value_mean_abs_diff']:.2e} (tolerance "
          f"{tol['mean_value_mean_abs_diff']:.0e}): {'kept' if ok else 'FAILED, not kept'}")
    return ok


@reports_errors
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.quantize.cache_int8", description=__doc__.splitlines()[0])
    p.add_argument("export_dir", help="an export folder with cache graphs and an int8 variant")
    p.add_argument("--force", action="store_true", help="replace existing int8 cache graphs")
    p.add_argument("--parity-data", default=AUTO, help="the gate's sets: auto (default: the model's data where "
                   "it is here, else random), random, or a data spec as for export.quantize")
    p.add_argument("--data-dir", type=Path, help="data folder of the data sets that need one")
    a = p.parse_args(argv)
    if not add_int8_cache(Path(a.export_dir), a.force, a.parity_data, a.data_dir):
        return 1
    print("a bundled model needs python -m export.onnx.registry afterwards")
    return 0


if __name__ == "__main__":
    sys.exit(main())
