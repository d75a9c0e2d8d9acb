"""One variant from start to finish: make its graphs, gate them, fall back (int8), and describe what was kept.

A variant within the parity gate (export.quantize.parity) and batch-independent
(export.quantize.batch_independence) is moved into place; one over either is deleted. An int8 variant over the
gate first gets the fewest MatMuls back in float32 that bring it inside, ranked by their error alone on training
sets (export.quantize.fallback; at most a third of them; recorded as "float32_matmuls"). Still over the gate, it is
made weight-only int8 instead (export.quantize.weight_only: int8 weights in blocks, activations quantized per row
at run time; about 3x smaller, not faster).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from export.errors import UsageError
from export.quantize import fp16, static_int8, weight_only
from export.quantize.batch_independence import independence, independence_ok, independence_tolerance
from export.quantize.calibration import CALIBRATION_BATCHES, CALIBRATION_MAX_SET, calibration_feeds
from export.quantize.graphs import ROLES, float32_graphs, variant_files
from export.quantize.parity import TOLERANCES, parity, within
from export.quantize.sources import AUTO, RANDOM, resolve

VARIANTS = ("int8", "fp16")
SELECTION_BATCH = 6  # sets per size when the int8 fallback ranks and chooses: twice the gate's, so the
# largest error it sees is nearer the tail the held-out gate will meet


@dataclass
class Attempt:
    """A variant being made: its scratch graphs (tmp), the sets it is calibrated and gated on, and what the int8
    fallbacks did to it."""
    folder: Path
    precision: str
    meta: dict[str, Any]
    calibration: str
    parity_data: str
    data_dir: Path | None
    tmp: list[Path]
    kept: dict[str, list[str]] = field(default_factory=dict)  # MatMuls the float32 fallback kept, per graph
    weight_only: bool = False

    def gate(self) -> dict[str, Any]:
        """Parity of the scratch graphs against float32 on the gate's (held-out) sets."""
        return parity(self.folder, self.tmp[0], self.tmp[1], self.meta, data=self.parity_data, data_dir=self.data_dir)


def _make_graphs(a: Attempt) -> None:
    """Write the variant's encoder and decoder to the scratch paths."""
    srcs = float32_graphs(a.folder)
    if a.precision == "fp16":
        for src, t in zip(srcs, a.tmp):
            fp16.make_fp16(src, t)
        return
    print(f"int8: calibrating on {a.calibration} sets ({CALIBRATION_BATCHES} padded batches, "
          f"|S| 1..{CALIBRATION_MAX_SET})")
    for src, t, feeds in zip(srcs, a.tmp, calibration_feeds(a.folder, a.meta, a.calibration, a.data_dir)):
        static_int8.make_int8(src, t, feeds)


def _float_fallback(a: Attempt) -> dict[str, list[str]]:
    """Full int8 missed the gate: put the fewest sensitivity-ranked MatMuls back in float32 (export.quantize.fallback,
    ranked on the calibration data's training split) and rewrite the scratch graphs with them. Returns the MatMuls
    kept float32 per graph; none (graphs unchanged) when more than a third of them would have to be."""
    from export.quantize.fallback import Pair, choose_float_nodes

    print("int8: over the gate; ranking the quantized MatMuls by their error alone (training split)")
    pair = Pair(float32_graphs(a.folder), (a.tmp[0], a.tmp[1]))
    try:
        def on_training_sets(enc: Path, dec: Path) -> dict[str, Any]:
            return parity(a.folder, enc, dec, a.meta, data=a.calibration, data_dir=a.data_dir, split="train",
                          verbose=False, seed=1, batch=SELECTION_BATCH)
        chosen = choose_float_nodes(pair, on_training_sets, TOLERANCES["int8"])
        if chosen is None:
            print("int8: more than a third of the quantized MatMuls would have to stay float32")
            return {}
        enc, dec = pair.write(set(chosen), "chosen")
        enc.replace(a.tmp[0])
        dec.replace(a.tmp[1])
    finally:
        pair.cleanup()
    return {role: [n for g, n in chosen if g == i] for i, role in enumerate(ROLES)}


def _int8_fallbacks(a: Attempt, figures: dict[str, Any], float_fallback: bool,
                    weight_only_fallback: bool) -> dict[str, Any]:
    """An int8 variant over the gate: MatMuls back in float32, then weight-only int8; the figures it ends with."""
    tol = TOLERANCES["int8"]
    if not within(figures, tol) and float_fallback:
        a.kept = _float_fallback(a)
        if a.kept:
            print(f"int8: {sum(map(len, a.kept.values()))} MatMuls kept float32; parity again")
            figures = a.gate()
    if not within(figures, tol) and weight_only_fallback:
        print("int8: static int8 is over the gate; weight-only int8 instead (export.quantize.weight_only)")
        for src, t in zip(float32_graphs(a.folder), a.tmp):
            weight_only.make_weight_only(src, t)
        a.kept, a.weight_only = {}, True
        figures = a.gate()
    return figures


def _method(a: Attempt) -> str:
    """How the kept graphs were made, for model.json."""
    if a.weight_only:
        return weight_only.METHOD
    method = (static_int8.METHOD + f"; calibrated on {a.calibration} sets") if a.precision == "int8" else fp16.METHOD
    if a.kept:
        method += (f"; {sum(map(len, a.kept.values()))} MatMuls kept float32, those with the largest error alone "
                   "(export.quantize.fallback, ranked on training sets)")
    return method


def _entry(a: Attempt, files: list[Path], figures: dict[str, Any], alone: dict[str, float]) -> dict[str, Any]:
    """The variant's model.json entry: files, method, sizes, parity and batch-independence figures."""
    entry = {"files": [f.name for f in files], "method": _method(a),
             "bytes": {f.name: f.stat().st_size for f in files if f.exists()}, "parity": figures,
             "batch_independence": {**alone, "tolerance": independence_tolerance(a.precision)}}
    if a.kept:
        entry["float32_matmuls"] = a.kept
    if a.weight_only:  # pt_plugin.load refuses these graphs, with this figure, on an older onnxruntime
        entry["requires_onnxruntime"] = weight_only.MIN_ONNXRUNTIME
    return entry


def _print_verdict(precision: str, figures: dict[str, Any], alone: dict[str, float], ok: bool) -> None:
    """The gated figures against their tolerances, and whether the variant was kept."""
    tol = figures["tolerance"]
    print(f"{precision}: mean value max |Δ| {figures['mean_value_max_abs_diff']:.2e} (tolerance "
          f"{tol['mean_value_max_abs_diff']:.0e}), mean |Δ| {figures['mean_value_mean_abs_diff']:.2e} (tolerance "
          f"{tol['mean_value_mean_abs_diff']:.0e}); a set alone vs. in a padded batch and other query chunks: max "
          f"|Δ| {max(alone.values()):.1e} (tolerance {independence_tolerance(precision):.0e}): "
          f"{'OK' if ok else 'FAILED, not kept'}")


def make_variant(folder: Path, precision: str, force: bool = False, calibration: str = AUTO,
                 data_dir: Path | None = None, parity_data: str = RANDOM,
                 float_fallback: bool = True, weight_only_fallback: bool = True) -> tuple[bool, dict[str, Any]]:
    """Write, check and (if within tolerance and batch-independent) keep one variant; returns (ok, its entry).
    An int8 variant over the gate gets a few MatMuls back in float32 first (`float_fallback`), then, still over
    it, is made weight-only int8 instead (`weight_only_fallback`)."""
    files = [folder / f for f in variant_files(precision)]
    existing = [str(f) for f in files if f.exists()]
    if existing and not force:
        raise UsageError(f"{', '.join(existing)} already exist; pass --force to replace them")
    meta = json.loads((folder / "model.json").read_text())
    a = Attempt(folder, precision, meta, resolve(meta, calibration, data_dir), resolve(meta, parity_data, data_dir),
                data_dir, [f.with_suffix(".onnx.tmp") for f in files])
    try:
        _make_graphs(a)
        print(f"{precision}: parity against float32 (onnxruntime CPU)")
        figures = a.gate()
        if precision == "int8":
            figures = _int8_fallbacks(a, figures, float_fallback, weight_only_fallback)
        figures["tolerance"] = TOLERANCES[precision]
        alone = independence(a.tmp[0], a.tmp[1], meta)
        ok = within(figures, figures["tolerance"]) and independence_ok(alone, precision)
        if ok:
            for t, f in zip(a.tmp, files):
                t.replace(f)
    finally:
        for t in a.tmp:
            t.unlink(missing_ok=True)
    _print_verdict(precision, figures, alone, ok)
    return ok, _entry(a, files, figures, alone)
