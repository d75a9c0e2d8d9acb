"""Sampling quality of a volume or video model: cached draws against the exact re-encoding sampler, side by side.

What runs: --shapes evaluation signals, each observed at |S| = --observed random cells of the model's grid (seed +
signal): for a volume model (shapes) the evaluation shapes of export.datasets.shapes (furniture), for a video model
(moving-fashion) the evaluation clips of export.datasets.video (test garments). Per mode, Model.sample_grid draws
--samples signals with the same seed per signal in every mode and the same N' (--autoregressive, default the
model's own, model.json cache.autoregressive: that many cells drawn one at a time in a random order, the rest the
mean given them). Modes: exact = the set encoded again at every step (cache=False, step_fraction 0, the
reference); "cached, buffer N" = over cached keys and values, S and everything drawn encoded again before the buffer
would exceed N. Per mode, over the voxels not observed:
  mean MSE    between the mean of the samples and the model's mean volume (Model.mean_grid)
  spread      per-voxel standard deviation across the samples (diversity)
  sample MSE  the samples against the truth (the truncated SDF, the clip's values)
  IoU         volumes: each sample's occupancy (SDF < 0) against the truth's, over the whole grid
Ratios are mode / exact; ± are standard errors over signals.
"""
from __future__ import annotations

import sys
import time

import numpy as np

import common
from common import fmt, fmt_se

METRICS = ("mean_mse", "spread", "sample_mse", "iou")
LABELS = {"mean_mse": "mean MSE", "spread": "spread", "sample_mse": "sample MSE", "iou": "IoU"}


def shape_metrics(x: np.ndarray, mean: np.ndarray, truth: np.ndarray, free: np.ndarray,
                  occupancy: bool = True) -> dict[str, float]:
    """Metrics of samples x [M, P] of one signal against the model's mean [P] and the truth [P] (IoU: volumes)."""
    spread = float(np.sqrt(x[:, free].var(0, ddof=1)).mean()) if len(x) > 1 else float("nan")
    out = {"mean_mse": float(((x[:, free].mean(0) - mean[free]) ** 2).mean()), "spread": spread,
           "sample_mse": float(((x[:, free] - truth[free]) ** 2).mean())}
    if occupancy:
        inside = truth < 0
        out["iou"] = float(np.mean([((s < 0) & inside).sum() / max(1, ((s < 0) | inside).sum()) for s in x]))
    return out


def evaluation_signals(kind: str, n: int, seed: int, positions: np.ndarray, data_dir) -> list[np.ndarray]:
    """n evaluation signals of the model's kind as values [P] at the grid's cell centres (array order)."""
    if kind == "volume":
        from export.datasets.shapes import evaluation_shapes

        return [shape.values(positions)[:, 0] for shape in evaluation_shapes(n, seed)]
    if kind == "video":
        from export.datasets.video import evaluation_clips

        return [clip.reshape(-1) for clip in evaluation_clips(n, seed, str(data_dir))]
    raise SystemExit(f"a volume or video model is needed, got a {kind} model")


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__)
    p.add_argument("--shapes", type=int, default=4, help="evaluation signals (shapes or clips)")
    p.add_argument("--samples", type=int, default=2, help="samples per shape and mode")
    p.add_argument("--observed", type=int, default=32)
    p.add_argument("--buffers", type=common.int_list, default=[128, 64], help="cached modes' buffer sizes")
    p.add_argument("--autoregressive", type=int, help="cells drawn one at a time (default: the model's N')")
    a = p.parse_args(argv)
    import pt_plugin

    model = common.load_model(a.model_path, a.threads)
    grid = tuple(model.grid)
    gpos = pt_plugin.grid_positions(*grid)
    modes = {"exact": {"cache": False, "step_fraction": 0.0}}
    modes.update({f"cached, buffer {b}": {"cache": True, "step_fraction": 0.0, "buffer_size": b} for b in a.buffers})
    # the default N′ of its default path (the cached one where it has the graphs)
    n_ar = a.autoregressive or model.sampling_plan()[1]
    kind = model.signal.kind
    metrics = METRICS if kind == "volume" else METRICS[:3]
    rows: dict[str, dict[str, list[float]]] = {m: {k: [] for k in metrics} for m in modes}
    seconds = {m: 0.0 for m in modes}
    for i, truth in enumerate(evaluation_signals(kind, a.shapes, a.seed, gpos, a.data_dir)):
        idx = np.random.default_rng(a.seed + i).choice(len(gpos), a.observed, replace=False)
        pos, val = gpos[idx], truth[idx, None]
        free = np.ones(len(gpos), bool)
        free[idx] = False
        mean = model.mean_grid(pos, val, grid).reshape(-1)
        for name, options in modes.items():
            t0 = time.perf_counter()
            x = model.sample_grid(pos, val, grid, a.samples, a.seed + 1000 + i, autoregressive=n_ar, **options)
            seconds[name] += time.perf_counter() - t0
            for k, v in shape_metrics(x.reshape(a.samples, -1), mean, truth, free, kind == "volume").items():
                rows[name][k].append(v)
            common.log(f"signal {i + 1}/{a.shapes}, {name}: sample MSE {rows[name]['sample_mse'][-1]:.4f}, "
                       f"{time.perf_counter() - t0:.0f} s")
    summary = {m: {k: common.mean_se(v) for k, v in r.items()} for m, r in rows.items()}
    ex = summary["exact"]
    body = []
    for name, r in summary.items():
        cells = [name]
        for k in metrics:
            cells += [fmt_se(*r[k], 3), fmt(r[k][0] / ex[k][0] if ex[k][0] else None)]
        body.append(cells + [fmt(seconds[name] / a.shapes, 3)])
    print(common.machine_line(a.threads))
    print(f"{a.model_path}: {a.shapes} evaluation {kind}s x {a.samples} samples, |S| = {a.observed}, {n_ar} cells "
          f"drawn one at a time, the rest the mean\n")
    print(common.table(["mode"] + [h for k in metrics for h in (LABELS[k], "×exact")] + ["s per signal"], body))
    common.save_json(a.json, {"benchmark": "sampling_quality_grid", "args": vars(a), "autoregressive": n_ar,
                              "summary": summary, "per_shape": rows, "seconds_per_shape": {
                                  m: s / a.shapes for m, s in seconds.items()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
