"""Evaluation of SDF models on procedural shapes (issue 14): `python -m export.evaluate CHECKPOINT` on a shapes
checkpoint.

Protocol: for each |S| and each evaluation shape (export.datasets.shapes.test_shapes, the eval seed
stream), |S| samples are drawn as in training (half from the shell |sdf| < 0.05, half uniform in
the cube) and the same S is given to every method. Scored:
  NLL       nats per query at QUERIES fresh positions drawn the same way (probabilistic methods);
  MSE       of the mean (truncated) SDF at those queries;
  IoU       of the occupancy (sdf < 0) of the mean on the GRID³ cell centres against the truth's;
  Chamfer   between the marching-cubes mesh of the mean at GRID³ and the true mesh at 2·GRID³ (both
            closed at the grid's border, as the CLI's meshes are):
            mean nearest-vertex distance both ways, summed (position units of the [-1, 1] cube).
            A mean with no zero crossing has no surface; it scores the Chamfer distance of a single
            point at the origin (a finite penalty, counted in `no_surface`).
Baselines: the nearest sample; RBF interpolation (scipy's RBFInterpolator, the kernel picked per |S|
on validation shapes by MSE); a kNN posterior over BANK training-stream shapes: weights
w_i ∝ exp(−‖v_S − s_i(S)‖² / 2τ²) over the shapes' values at S, the mean Σ w_i s_i and the density
Σ w_i N(v; s_i(x), σ²) from the best shapes that hold 99.9% of the weight (at most KNN_TOP), τ and σ
picked per |S| on validation shapes by NLL.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from export.checkpoint import load_checkpoint, total_steps
from export.datasets.shapes import TRUNCATION, Shape, shapes
from export.model import Mixture, PixelTransformer
from pt_plugin.grids import grid_positions
from pt_plugin.kinds.meshes import extract_mesh

SIZES = (16, 32, 64, 256)
GRID, QUERIES, BANK, KNN_TOP = 32, 2048, 2000, 64
TAUS, SIGMAS = (0.01, 0.02, 0.05, 0.1), (0.005, 0.01, 0.02, 0.05)
RBF_KERNELS = ("thin_plate_spline", "linear", "cubic")
METHODS = {"model": "PixelTransformer", "knn": "kNN posterior", "rbf": "RBF", "nearest": "Nearest"}


# ------------------------------------------------------------------------------------- scoring

def mesh_vertices(grid: np.ndarray, max_points: int = 6000, seed: int = 0) -> np.ndarray | None:
    """Vertices [P, 3] (x, y, z) of the zero level set of an SDF grid [Z, Y, X], closed at the grid's border
    as the CLI's meshes are (pt_plugin.kinds.meshes); None without a surface. At most max_points, seeded."""
    mesh = extract_mesh(grid, 0.0, outside=TRUNCATION)
    if mesh is None:
        return None
    xyz = mesh.vertices.astype(np.float64)
    if len(xyz) > max_points:
        xyz = xyz[np.random.default_rng(seed).choice(len(xyz), max_points, replace=False)]
    return xyz


def chamfer(pred: np.ndarray | None, truth: np.ndarray) -> float:
    """Mean nearest-neighbour distance pred→truth plus truth→pred; an empty pred counts as the origin."""
    from scipy.spatial import cKDTree

    pred = np.zeros((1, 3)) if pred is None else pred
    return float(cKDTree(truth).query(pred)[0].mean() + cKDTree(pred).query(truth)[0].mean())


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    a, b = pred < 0, truth < 0
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def gauss_mix_nll(v: np.ndarray, centres: np.ndarray, weights: np.ndarray, sigma: float) -> np.ndarray:
    """−log Σ_i w_i N(v; c_i, σ²) per query: v [Q], centres [K, Q], weights [K]."""
    z = -0.5 * ((v[None] - centres) / sigma) ** 2 - math.log(sigma * math.sqrt(2 * math.pi))
    z = z + np.log(np.maximum(weights, 1e-300))[:, None]
    m = z.max(0)
    return -(m + np.log(np.exp(z - m).sum(0)))


# ------------------------------------------------------------------------------------- methods

@torch.no_grad()
def model_predict(model: PixelTransformer, spos: np.ndarray, sval: np.ndarray, qpos: np.ndarray,
                  qval: np.ndarray | None = None, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray | None]:
    """The mixture's mean [Q] at qpos (clipped to the value range) and, with qval, −log p(qval) [Q]."""
    lo, hi = model.cfg.value_range
    t = lambda a: torch.from_numpy(np.asarray(a, np.float32))[None]  # noqa: E731
    pos, val, mask = t(spos), t(sval), torch.ones(1, len(spos), dtype=torch.bool)
    memory = model.encoder(pos, val, mask)
    means, nlls = [], []
    for i in range(0, len(qpos), chunk):
        mix = Mixture(*model.decoder(memory, mask, t(qpos[i:i + chunk])), model.centers)
        means.append(mix.mean()[0, :, 0].clamp(lo, hi).double().numpy())
        if qval is not None:
            nlls.append(-mix.log_prob(t(qval[i:i + chunk, None]))[0].double().numpy())
    return np.concatenate(means), (np.concatenate(nlls) if qval is not None else None)


def nearest_predict(spos: np.ndarray, sval: np.ndarray, qpos: np.ndarray) -> np.ndarray:
    from scipy.spatial import cKDTree

    return sval[cKDTree(spos).query(qpos)[1], 0]


def rbf_predict(spos: np.ndarray, sval: np.ndarray, qpos: np.ndarray, kernel: str) -> np.ndarray:
    from scipy.interpolate import RBFInterpolator

    try:
        f = RBFInterpolator(spos.astype(np.float64), sval[:, 0].astype(np.float64), kernel=kernel)
        return np.clip(f(qpos.astype(np.float64)), -TRUNCATION, TRUNCATION)
    except (np.linalg.LinAlgError, ValueError):  # too few points for the kernel's polynomial: a constant
        return np.full(len(qpos), float(sval.mean()))


class KnnPosterior:
    """Training-stream shapes weighted by their agreement with S (module docstring)."""

    def __init__(self, bank: list[Shape]):
        self.bank = bank

    def weights(self, spos: np.ndarray, sval: np.ndarray, tau: float) -> tuple[np.ndarray, np.ndarray]:
        """(indices of the bank shapes that carry the weight, their normalised weights): the best ones until
        they hold 99.9% of the weight, at most KNN_TOP."""
        d2 = np.array([((s.values(spos) - sval) ** 2).sum() for s in self.bank], np.float64)
        top = np.argsort(d2)[:KNN_TOP]
        w = np.exp(-(d2[top] - d2[top[0]]) / (2 * tau ** 2))
        w /= w.sum()
        keep = int(np.searchsorted(np.cumsum(w), 0.999)) + 1
        return top[:keep], w[:keep] / w[:keep].sum()

    def predict(self, top: np.ndarray, w: np.ndarray, qpos: np.ndarray) -> np.ndarray:
        """[K, Q] values of the top shapes at qpos, weighted later."""
        return np.stack([self.bank[i].values(qpos)[:, 0] for i in top])


# ------------------------------------------------------------------------------------- protocol

def draw_sets(items: list[Shape], size: int, queries: int, seed: int):
    """Per shape: (S positions, S values, query positions, query values), a function of (seed, size)."""
    rng = np.random.default_rng([seed, size, 14])
    out = []
    for s in items:
        p = s.positions(size + queries, rng)
        v = s.values(p)
        out.append((p[:size], v[:size], p[size:], v[size:, 0]))
    return out


def pick_baseline_settings(size: int, knn: KnnPosterior, val_shapes: list[Shape], seed: int) -> dict:
    """RBF kernel by MSE and kNN (τ, σ) by NLL on validation shapes."""
    sets = draw_sets(val_shapes, size, 512, seed + 1)
    mse = {k: np.mean([((rbf_predict(a, b, c, k) - d) ** 2).mean() for a, b, c, d in sets]) for k in RBF_KERNELS}
    best = (math.inf, None, None)
    for tau in TAUS:
        tops = [knn.weights(a, b, tau) for a, b, _, _ in sets]
        preds = [knn.predict(top, w, c) for (top, w), (_, _, c, _) in zip(tops, sets)]
        for sigma in SIGMAS:
            nll = np.mean([gauss_mix_nll(d, p, w, sigma).mean() for (_, w), p, (*_, d) in zip(tops, preds, sets)])
            best = min(best, (nll, tau, sigma), key=lambda x: x[0])
    return {"rbf_kernel": min(mse, key=mse.get), "knn_tau": best[1], "knn_sigma": best[2]}


def evaluate_volumes(checkpoint: str | Path, out: str | Path, n_shapes: int = 64, sizes: tuple[int, ...] | None = None,
                     seed: int = 0, queries: int = QUERIES, grid: int = GRID, bank: int = BANK, val_shapes: int = 16,
                     threads: int = 2, log: Callable[[str], None] = print) -> dict:
    """Run the protocol of the module docstring; writes metrics.json and metrics.md into `out`."""
    if threads:
        torch.set_num_threads(threads)
    model, ck = load_checkpoint(checkpoint)
    sizes = tuple(sizes or SIZES)
    test = shapes(n_shapes, "eval", seed)
    knn = KnnPosterior(shapes(bank, "train", 10_000 + seed))
    val = shapes(val_shapes, "val", seed)
    gpos, fine = grid_positions(grid, grid, grid), grid_positions(*(2 * grid,) * 3)
    truth_grids = [s.values(gpos)[:, 0].reshape((grid,) * 3) for s in test]
    truth_meshes = [mesh_vertices(s.values(fine)[:, 0].reshape((2 * grid,) * 3)) for s in test]
    results = {}
    for size in sizes:
        t0 = time.time()
        settings = pick_baseline_settings(size, knn, val, seed)
        acc = {m: {"nll": [], "mse": [], "iou": [], "chamfer": [], "no_surface": 0} for m in METHODS}
        for i, (spos, sval, qpos, qval) in enumerate(draw_sets(test, size, queries, seed)):
            preds: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {}
            m_q, nll = model_predict(model, spos, sval, qpos, qval)
            m_g, _ = model_predict(model, spos, sval, gpos)
            preds["model"] = (m_q, m_g, nll)
            top, w = knn.weights(spos, sval, settings["knn_tau"])
            kq, kg = knn.predict(top, w, qpos), knn.predict(top, w, gpos)
            preds["knn"] = (w @ kq, w @ kg, gauss_mix_nll(qval, kq, w, settings["knn_sigma"]))
            preds["rbf"] = (rbf_predict(spos, sval, qpos, settings["rbf_kernel"]),
                            rbf_predict(spos, sval, gpos, settings["rbf_kernel"]), None)
            preds["nearest"] = (nearest_predict(spos, sval, qpos), nearest_predict(spos, sval, gpos), None)
            for name, (mq, mg, nl) in preds.items():
                a = acc[name]
                a["mse"].append(float(((mq - qval) ** 2).mean()))
                a["iou"].append(iou(mg, truth_grids[i].ravel()))
                verts = mesh_vertices(mg.reshape((grid,) * 3))
                a["no_surface"] += verts is None
                a["chamfer"].append(chamfer(verts, truth_meshes[i]))
                if nl is not None:
                    a["nll"].append(float(nl.mean()))
        row = {name: {"nll": float(np.mean(a["nll"])) if a["nll"] else None, "mse": float(np.mean(a["mse"])),
                      "iou": float(np.mean(a["iou"])), "chamfer": float(np.mean(a["chamfer"])),
                      "no_surface": int(a["no_surface"])} for name, a in acc.items()}
        row["settings"] = settings
        base = [m for m in METHODS if m != "model"]
        row["targets"] = {"iou_above_baselines": all(row["model"]["iou"] > row[b]["iou"] for b in base),
                          "chamfer_below_baselines": all(row["model"]["chamfer"] < row[b]["chamfer"] for b in base)}
        results[str(size)] = row
        log(f"|S|={size}: IoU " + ", ".join(f"{m} {row[m]['iou']:.3f}" for m in METHODS) + "; Chamfer "
            + ", ".join(f"{m} {row[m]['chamfer']:.4f}" for m in METHODS) + f" ({time.time() - t0:.0f}s)")
    res = {"settings": {"checkpoint": str(checkpoint), "step": total_steps(ck), "shapes": n_shapes, "queries": queries,
                        "grid": grid, "bank": bank, "knn_top": KNN_TOP, "val_shapes": val_shapes, "seed": seed,
                        "sizes": list(sizes), "truncation": TRUNCATION},
           "sizes": results}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    import json

    (out / "metrics.json").write_text(json.dumps(res, indent=1))
    (out / "metrics.md").write_text(markdown(res))
    return res


def markdown(res: dict) -> str:
    s = res["settings"]
    lines = [f"Shapes: {s['shapes']} evaluation shapes, {s['queries']} queries each, occupancy and meshes on a "
             f"{s['grid']}³ grid (truth mesh at {2 * s['grid']}³), checkpoint step {s['step']}.", "",
             "| \\|S\\| | method | NLL (nats/query) | SDF MSE | IoU | Chamfer | no surface |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for size, row in res["sizes"].items():
        for m, label in METHODS.items():
            r = row[m]
            nll = f"{r['nll']:.3f}" if r["nll"] is not None else "—"
            lines.append(f"| {size} | {label} | {nll} | {r['mse']:.5f} | {r['iou']:.3f} | {r['chamfer']:.4f} | "
                         f"{r['no_surface']} |")
    lines += ["", "Targets (model vs every baseline): " + "; ".join(
        f"|S|={size}: IoU {'met' if row['targets']['iou_above_baselines'] else 'missed'}, Chamfer "
        f"{'met' if row['targets']['chamfer_below_baselines'] else 'missed'}" for size, row in res["sizes"].items())]
    return "\n".join(lines) + "\n"


def summary(report: dict) -> dict:
    """The numbers model.json and the model card carry: per |S|, the model's IoU, Chamfer, NLL and MSE."""
    return {size: {k: row["model"][k] for k in ("iou", "chamfer", "nll", "mse")} | {
        "best_baseline_iou": max(row[m]["iou"] for m in METHODS if m != "model"),
        "best_baseline_chamfer": min(row[m]["chamfer"] for m in METHODS if m != "model")}
        for size, row in report["sizes"].items()}
