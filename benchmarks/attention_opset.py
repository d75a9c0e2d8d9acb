"""Opset 23 graphs (each attention one standard Attention node) against opset 20 (MatMul, Softmax, MatMul), side by
side in one run (issue 32): the mean at growing |S|, and optionally the cached exact sampler.

Setup: the checkpoint is exported twice into a temporary folder, `python -m export.onnx CK --opset 20` and
`--opset 23`, each with its cache graphs (`python -m export.onnx.cache_graphs`, buffer_size --buffer-size), and the
demo.npz of the bundled model of the same name when there is one. The weights are the same; parity of each export
against torch is checked as the exporter always checks it, and the two exports' means are compared here.

What runs, on the model's training grid (--grid) with |S| = each of --sizes random cells of its demo signal:
  mean:    Model.mean_grid over every cell (one encoder pass over S, the grid decoded)
  sample:  (--sample K) sample_grid(cache=True) of every free cell from |S| = K, one draw (context.onnx's
           re-encodings of the grown set are where opset 23 can pay; step.onnx is the same graph at both opsets)
Every call runs in a fresh process (model loaded and warmed first), opsets interleaved, --repeats each; medians.
Columns: seconds, peak MiB (growth of the peak RSS), 20/23 (how many times faster opset 23 is), and for the mean
x prev (seconds over the previous size's: a doubling of |S| ideally costs ≤ 4x).
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import common
from cached_sampling import one_call

ROOT = Path(__file__).resolve().parents[1]
OPSETS = (20, 23)


def export_both(checkpoint: Path, grid: str, buffer_size: int, into: Path) -> dict[int, Path]:
    """The checkpoint exported at each opset (with cache graphs) into into/opsetN/NAME."""
    name = checkpoint.stem
    out = {}
    for opset in OPSETS:
        folder = into / f"opset{opset}" / name
        common.log(f"exporting {checkpoint} at opset {opset} into {folder}")
        for cmd in (["-m", "export.onnx", str(checkpoint), "--out", str(folder), "--grid", grid, "--opset", str(opset)],
                    ["-m", "export.onnx.cache_graphs", str(checkpoint), "--into", str(folder), "--buffer-size",
                     str(buffer_size)]):
            subprocess.run([sys.executable, *cmd], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        demo = ROOT / "weights" / name / "demo.npz"
        if demo.is_file():
            shutil.copy(demo, folder / "demo.npz")
        out[opset] = folder
    return out


def mean_of(folder: str, observed: int, seed: int) -> np.ndarray:
    model = common.load_model(Path(folder), 1)
    shape = tuple(model.grid)
    return model.mean_grid(*common.demo_observation(model, shape, observed, seed), shape)


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__)
    p.add_argument("--checkpoint", type=Path, default=ROOT / "weights" / "checkpoints" / "moving-fashion.pt")
    p.add_argument("--grid", default="8,32,32", help="the checkpoint's training grid in array order")
    p.add_argument("--sizes", default="1024,2048,4096,8192", help="|S| of the mean runs")
    p.add_argument("--sample", type=int, default=0, metavar="K", help="also time cached sampling of every cell from "
                                                                     "|S| = K (0: no)")
    p.add_argument("--buffer-size", type=int, default=512, help="buffer_size recorded with the cache graphs")
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)
    sizes = common.int_list(a.sizes)
    with tempfile.TemporaryDirectory() as tmp:
        folders = {o: str(f) for o, f in export_both(a.checkpoint, a.grid, a.buffer_size, Path(tmp)).items()}
        diff = max(float(np.abs(common.isolated(mean_of, folders[20], k, a.seed)
                                - common.isolated(mean_of, folders[23], k, a.seed)).max()) for k in sizes[:2])
        modes = {"mean": "mean", "sample": "cached exact"}  # benchmarks/cached_sampling.py's timed calls, batch 1
        calls = {(mode, k, o): (lambda mode=mode, k=k, o=o: common.isolated(one_call, folders[o], a.threads, k, a.seed,
                                                                             modes[mode], 1))
                 for mode, ks in (("mean", sizes), ("sample", [a.sample] if a.sample else []))
                 for k in ks for o in OPSETS}
        results = common.interleave(calls, {c: (1 if c[0] == "sample" else a.repeats) for c in calls}, progress=True)
    seconds = {c: common.median([r.seconds for r in v]) for c, v in results.items()}
    peaks = {c: max(r.peak_mib for r in v) for c, v in results.items()}
    rows = []
    for mode, k, _ in [c for c in calls if c[2] == OPSETS[0]]:
        s20, s23 = seconds[(mode, k, 20)], seconds[(mode, k, 23)]
        prev = [x for x in sizes if x < k][-1:] if mode == "mean" else []
        growth = [common.fmt(seconds[(mode, k, o)] / seconds[(mode, prev[0], o)], 2) if prev else "–" for o in OPSETS]
        rows.append([mode, str(k), common.fmt(s20, 3), common.fmt(s23, 3), common.fmt(s20 / s23, 2), *growth,
                     common.fmt(peaks[(mode, k, 20)], 0), common.fmt(peaks[(mode, k, 23)], 0)])
    print(common.machine_line(a.threads))
    print(f"{a.checkpoint.name}: grid {a.grid}, medians of {a.repeats} calls (fresh processes, interleaved); "
          f"largest |mean(opset 20) - mean(opset 23)| {diff:.1e}\n")
    print(common.table(["mode", "|S|", "s opset 20", "s opset 23", "20/23", "x prev 20", "x prev 23", "peak MiB 20",
                        "peak MiB 23"], rows))
    common.save_json(a.json, {"checkpoint": a.checkpoint.name, "grid": a.grid, "threads": a.threads,
                              "max_mean_diff": diff,
                              "seconds": {f"{m} {k} opset{o}": s for (m, k, o), s in seconds.items()},
                              "peak_mib": {f"{m} {k} opset{o}": s for (m, k, o), s in peaks.items()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
