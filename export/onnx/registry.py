"""Write weights/registry.txt: `python -m export.onnx.registry [WEIGHTS_DIR]`.

One line per model file, `MODEL/FILE sha256:HEX`, the format pooch reads; the runtime checks
every bundled, cached or downloaded file against it. Reduced-precision graphs (export.quantize) are
listed when model.json records them under "variants", i.e. when they passed their parity check (with
their cache graphs, variants.<precision>.cache); the causal buffer's context.onnx and step.onnx when it
records them under "cache"; a model's demo signal (demo.npz) when it has one.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from export.errors import UsageError, reports_errors
from pt_plugin.weights import MODEL_FILES, OPTIONAL_FILES, sha256


def write_registry(root: Path) -> list[str]:
    lines = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if all((folder / f).is_file() for f in MODEL_FILES):
            meta = json.loads((folder / "model.json").read_text())
            recorded = [f for v in meta.get("variants", {}).values() for f in v.get("files", [])]
            recorded += [f for v in meta.get("variants", {}).values() for f in v.get("cache", {}).get("files", [])]
            recorded += meta.get("cache", {}).get("files", [])  # the causal buffer's graphs (export.onnx.cache_graphs)
            extra = [f for f in recorded if (folder / f).is_file()]
            extra += [f for f in OPTIONAL_FILES if (folder / f).is_file()]  # the demo signal
            for f in (*MODEL_FILES, *extra):
                lines.append(f"{folder.name}/{f} sha256:{sha256(folder / f)}")
    (root / "registry.txt").write_text("\n".join(lines) + "\n")
    return lines


@reports_errors
def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0] if args else "weights")
    if not root.is_dir():
        raise UsageError(f"{root} is not a folder; expected the weights folder (default weights)")
    for line in write_registry(root):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
