"""Sampling quality of a volume model (shapes): cached draws against the exact re-encoding sampler, side by side.

What runs: --shapes evaluation shapes (export.datasets.shapes, the evaluation stream: furniture), each observed at
|S| = --observed random voxel centres of the model's grid (seed + shape). Per mode, Model.sample_grid draws
--samples volumes with the same seed per shape in every mode and the model's default N' (model.json
cache.autoregressive: that many voxels drawn one at a time in a random order, the rest the mean given them; the
same N' for every mode). Modes: exact = the set encoded again at every step (cache=False, step_fraction 0, the
reference); "cached, buffer N" = over cached keys and values, S and everything drawn encoded again before the buffer
would exceed N. Per mode, over the voxels not observed:
  mean MSE    between the mean of the samples and the model's mean volume (Model.mean_grid)
  spread      per-voxel standard deviation across the samples (diversity)
  sample MSE  the samples against the truth (the truncated SDF)
  IoU         each sample's occupancy (SDF < 0) against the truth's, over the whole grid
Ratios are mode / exact; ± are standard errors over shapes.
"""
from __future__ import annotations

import sys
import time

import numpy as np

import common
from common import fmt, fmt_se

METRICS = ("mean_mse", "spread", "sample_mse", "iou")


def shape_metrics(x: np.ndarray, mean: np.ndarray, truth: np.ndarray, free: np.ndarray) -> dict[str, float]:
    """Metrics of samples x [M, P] of one shape against the model's mean [P] and the truth [P]."""
    spread = float(np.sqrt(x[:, free].var(0, ddof=1)).mean()) if len(x) > 1 else float("nan")
    inside = truth < 0
    ious = [((s < 0) & inside).sum() / max(1, ((s < 0) | inside).sum()) for s in x]
    return {"mean_mse": float(((x[:, free].mean(0) - mean[free]) ** 2).mean()), "spread": spread,
            "sample_mse": float(((x[:, free] - truth[free]) ** 2).mean()), "iou": float(np.mean(ious))}


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__)
    p.add_argument("--shapes", type=int, default=4)
    p.add_argument("--samples", type=int, default=2, help="samples per shape and mode")
    p.add_argument("--observed", type=int, default=32)
    p.add_argument("--buffers", type=common.int_list, default=[128, 64], help="cached modes' buffer sizes")
    a = p.parse_args(argv)
    import pt_plugin
    from export.datasets.shapes import evaluation_shapes

    model = common.load_model(a.model_path, a.threads)
    grid = tuple(model.grid)
    gpos = pt_plugin.grid_positions(*grid)
    modes = {"exact": {"cache": False, "step_fraction": 0.0}}
    modes.update({f"cached, buffer {b}": {"cache": True, "step_fraction": 0.0, "buffer_size": b} for b in a.buffers})
    n_ar = model.sampling_plan()[1]  # the default N′ of its default path (the cached one where it has the graphs)
    rows: dict[str, dict[str, list[float]]] = {m: {k: [] for k in METRICS} for m in modes}
    seconds = {m: 0.0 for m in modes}
    for i, shape in enumerate(evaluation_shapes(a.shapes, a.seed)):
        truth = shape.values(gpos)[:, 0]
        idx = np.random.default_rng(a.seed + i).choice(len(gpos), a.observed, replace=False)
        pos, val = gpos[idx], truth[idx, None]
        free = np.ones(len(gpos), bool)
        free[idx] = False
        mean = model.mean_grid(pos, val, grid).reshape(-1)
        for name, options in modes.items():
            t0 = time.perf_counter()
            x = model.sample_grid(pos, val, grid, a.samples, a.seed + 1000 + i, autoregressive=n_ar, **options)
            seconds[name] += time.perf_counter() - t0
            for k, v in shape_metrics(x.reshape(a.samples, -1), mean, truth, free).items():
                rows[name][k].append(v)
            common.log(f"shape {i + 1}/{a.shapes}, {name}: IoU {rows[name]['iou'][-1]:.3f}, "
                       f"{time.perf_counter() - t0:.0f} s")
    summary = {m: {k: common.mean_se(v) for k, v in r.items()} for m, r in rows.items()}
    ex = summary["exact"]
    body = []
    for name, r in summary.items():
        cells = [name]
        for k in METRICS:
            cells += [fmt_se(*r[k], 3), fmt(r[k][0] / ex[k][0] if ex[k][0] else None)]
        body.append(cells + [fmt(seconds[name] / a.shapes, 3)])
    print(common.machine_line(a.threads))
    print(f"{a.model_path}: {a.shapes} evaluation shapes x {a.samples} samples, |S| = {a.observed}, {n_ar} voxels "
          f"drawn one at a time, the rest the mean\n")
    print(common.table(["mode", "mean MSE", "×exact", "spread", "×exact", "sample MSE", "×exact", "IoU", "×exact",
                        "s per shape"], body))
    common.save_json(a.json, {"benchmark": "sampling_quality_volume", "args": vars(a), "autoregressive": n_ar,
                              "summary": summary, "per_shape": rows, "seconds_per_shape": {
                                  m: s / a.shapes for m, s in seconds.items()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
