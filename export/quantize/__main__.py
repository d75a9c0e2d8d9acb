"""Reduced-precision graphs: `python -m export.quantize EXPORT_DIR [--int8] [--fp16] [--force] [--calibration-data S]`.

Reads EXPORT_DIR/encoder.onnx and decoder.onnx (written by export.onnx.graphs) and writes, next to them,
encoder.int8.onnx and decoder.int8.onnx (static int8 for the CPU: export.quantize.static_int8) and
encoder.fp16.onnx and decoder.fp16.onnx (float16 for the GPU: export.quantize.fp16); with neither flag, both.
Each is checked against float32 before it is kept and recorded in model.json under "variants"
(export.quantize.variant); the command exits 1 when one is not kept. model.json changes, so a bundled model
needs `python -m export.onnx.registry` afterwards.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from export.datasets import FASHION_DIR
from export.errors import UsageError, reports_errors
from export.quantize import sources
from export.quantize.variant import VARIANTS, make_variant
from pt_plugin.metadata import sha256


def source(spec: str) -> str:
    """argparse type of --calibration-data and --parity-data: a source of export.quantize.sources."""
    try:
        return sources.check(spec)
    except UsageError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def parser() -> argparse.ArgumentParser:
    """The command's options; the data sources listed are the registered data sets that give sets to draw."""
    listed = ", ".join(sources.choices()[2:])
    p = argparse.ArgumentParser(prog="python -m export.quantize", description=__doc__.splitlines()[0])
    p.add_argument("export_dir", help="folder with encoder.onnx, decoder.onnx, model.json (from export.onnx.graphs)")
    p.add_argument("--int8", action="store_true", help="int8 static quantization (CPU)")
    p.add_argument("--fp16", action="store_true", help="float16 weights and compute (GPU)")
    p.add_argument("--force", action="store_true", help="replace existing variant files")
    p.add_argument("--calibration-data", type=source, default=sources.AUTO,
                   help=f"int8 activation scales from random sets or sets of a data set ({listed}; their training "
                        "split); auto: the model's training data when its data set gives sets and its data is "
                        "here, else random")
    p.add_argument("--parity-data", type=source, default=sources.RANDOM,
                   help="the sets the parity gate runs on: random (default), or a data set as for "
                        "--calibration-data, its test split (folder:DIR: every image in DIR; use held-out images); "
                        "auto as for --calibration-data")
    p.add_argument("--no-float-fallback", dest="float_fallback", action="store_false",
                   help="int8 over the gate fails at once (by default the MatMuls with the largest error alone, "
                        "at most a third, go back to float32 until the rest passes)")
    p.add_argument("--no-weight-only-fallback", dest="weight_only_fallback", action="store_false",
                   help="int8 still over the gate after the float32 fallback fails (by default it is made "
                        "weight-only int8 instead: export.quantize.weight_only)")
    p.add_argument("--data-dir", type=Path, help=f"data folder of the data sets that need one (default {FASHION_DIR})")
    return p


def record(folder: Path, precision: str, entry: dict[str, Any]) -> None:
    """Add a kept variant to model.json: its entry under "variants", its files' sha256 under "files"."""
    meta = json.loads((folder / "model.json").read_text())
    cache = meta.get("variants", {}).get(precision, {}).get("cache")
    meta.setdefault("variants", {})[precision] = entry
    if cache:  # the variant's cache graphs (export.quantize.cache_int8) come from context.onnx / step.onnx: unchanged
        entry["cache"] = cache
    meta.setdefault("files", {}).update({f: f"sha256:{sha256(folder / f)}" for f in entry["files"]})
    (folder / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {', '.join(entry['files'])} ({sum(entry['bytes'].values())} bytes) and model.json variants entry")


@reports_errors
def main(argv: list[str] | None = None) -> int:
    """Make, check and record the asked variants; 0 when every one was kept, 1 otherwise."""
    a = parser().parse_args(argv)
    folder = Path(a.export_dir)
    missing = [f for f in ("encoder.onnx", "decoder.onnx", "model.json") if not (folder / f).is_file()]
    if missing:
        raise UsageError(f"{folder} is not an export folder: missing {', '.join(missing)} "
                         "(write one with `python -m export.onnx CHECKPOINT --out DIR`)")
    failed = []
    for precision in [v for v in VARIANTS if getattr(a, v)] or list(VARIANTS):
        ok, entry = make_variant(folder, precision, a.force, a.calibration_data, a.data_dir, a.parity_data,
                                 a.float_fallback, a.weight_only_fallback)
        if ok:
            record(folder, precision, entry)
        else:
            failed.append(precision)
    if failed:
        print(f"FAILED for {', '.join(failed)}: parity over tolerance or outputs batch-dependent, nothing kept",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
