"""Evaluation of SDF models on procedural shapes (issue 14): `python -m export.evaluate weights/NAME` on a volume
model.

The shipped graphs run through pt_plugin (export.evaluate.protocol), so the figures are those of the files
users load. Protocol: for each |S| and each evaluation shape (export.datasets.shapes.evaluation_shapes, the
eval seed stream), |S| samples are drawn as in training (half from the shell |sdf| < 0.05, half uniform in
the cube) and the same S is given to every method. Scored:
  NLL       nats per query at QUERIES fresh positions drawn the same way (probabilistic methods);
  MSE       of the mean (truncated) SDF at those queries;
  IoU       of the occupancy (sdf < 0) of the mean on the GRID³ cell centres against the truth's;
  Chamfer   between the marching-cubes mesh of the mean at GRID³ and the true mesh at 2·GRID³ (both
            closed at the grid's border, as the CLI's meshes are):
            mean nearest-vertex distance both ways, summed (position units of the [-1, 1] cube).
            A mean with no zero crossing has no surface; it scores the Chamfer distance of a single
            point at the origin (a finite penalty, counted in `no_surface`).
Single solids (--solids of them: a sphere, box or cylinder each, from the eval stream) are scored the same way in
a table of their own: the furniture table stays comparable with models trained before solids joined the training
mixture, and the solids show whether a model fills simple shapes from their samples (issue 33).
Baselines: the nearest sample; RBF interpolation (scipy's RBFInterpolator, the kernel picked per |S|
on validation shapes by MSE); a kNN posterior over a bank of --bank training-stream shapes of the training
mixture (export.datasets.shapes.TRAINING_KIND_WEIGHTS; ShapeBank):
weights w_i ∝ exp(−‖v_S − s_i(S)‖² / 2τ²) over the shapes' values at S, the mean Σ w_i s_i and the density
Σ w_i N(v; s_i(x), σ²) from the best shapes that hold 99.9% of the weight (at most BANK_TOP), τ and σ
picked per |S| on validation shapes by NLL.
"""
from __future__ import annotations

import argparse
import math
import time
from typing import Callable, NamedTuple

import numpy as np

import pt_plugin
from export.datasets import dataset
from export.datasets import shapes as shape_data
from export.datasets.shapes import DATASETS, TRUNCATION, Shape, evaluation_shapes, shapes
from export.errors import UsageError, int_list
from export.evaluate.protocol import Shipped, predict, write_report
from pt_plugin.grids import grid_positions
from pt_plugin.kinds.meshes import extract_mesh

NAME = "volume"
SIZES = (16, 32, 64, 256)
GRID, QUERIES, BANK_TOP, VAL_SHAPES = 32, 2048, 64, 16
TAUS, SIGMAS = (0.01, 0.02, 0.05, 0.1), (0.005, 0.01, 0.02, 0.05)
RBF_KERNELS = ("thin_plate_spline", "linear", "cubic")
VOLUME_METHODS = {"model": "PixelTransformer", "knn": "kNN posterior", "rbf": "RBF", "nearest": "Nearest"}

Prediction = tuple  # (mean [Q] at the queries, mean [GRID³] on the grid, NLL [Q] or None) for one shape


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


class Truth(NamedTuple):
    """The evaluation shapes' truth: the grid's cell centres [grid³, 3], each shape's SDF there and its mesh
    (extracted at 2·grid)."""
    grid: int
    positions: np.ndarray
    grids: list[np.ndarray]
    meshes: list[np.ndarray]

    @classmethod
    def of(cls, test: list[Shape], grid: int = GRID) -> "Truth":
        gpos, fine = grid_positions(grid, grid, grid), grid_positions(*(2 * grid,) * 3)
        return cls(grid, gpos, [s.values(gpos)[:, 0] for s in test],
                   [mesh_vertices(s.values(fine)[:, 0].reshape((2 * grid,) * 3)) for s in test])


def score_method(preds: list[Prediction], sets: list[tuple], truth: Truth) -> dict:
    """One method's NLL (None for a method without a density), MSE, IoU, Chamfer and surfaceless means,
    averaged over the shapes."""
    acc = {"nll": [], "mse": [], "iou": [], "chamfer": [], "no_surface": 0}
    for (mq, mg, nll), (*_, qval), t_grid, t_mesh in zip(preds, sets, truth.grids, truth.meshes):
        acc["mse"].append(float(((mq - qval) ** 2).mean()))
        acc["iou"].append(iou(mg, t_grid))
        verts = mesh_vertices(mg.reshape((truth.grid,) * 3))
        acc["no_surface"] += verts is None
        acc["chamfer"].append(chamfer(verts, t_mesh))
        if nll is not None:
            acc["nll"].append(float(nll.mean()))
    return {"nll": float(np.mean(acc["nll"])) if acc["nll"] else None, "mse": float(np.mean(acc["mse"])),
            "iou": float(np.mean(acc["iou"])), "chamfer": float(np.mean(acc["chamfer"])),
            "no_surface": int(acc["no_surface"])}


# ------------------------------------------------------------------------------------- methods

def model_predictions(model: pt_plugin.Model, sets: list[tuple], gpos: np.ndarray) -> list[Prediction]:
    """The shipped model's mean and NLL at every shape's queries (protocol.predict) and its mean on the grid
    (Model.mean), for all shapes at once."""
    spos, sval, qpos, qval = (np.stack([s[i] for s in sets]) for i in range(4))
    mean_q, logp = predict(model, spos, sval, qpos, qval[..., None])
    ctx = model.encode_batch(list(zip(spos, sval)))
    mean_g = model.mean(ctx, np.broadcast_to(gpos.astype(np.float32), (len(sets),) + gpos.shape))
    return [(mean_q[i, :, 0].astype(np.float64), mean_g[i, :, 0].astype(np.float64), -logp[i])
            for i in range(len(sets))]


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


class ShapeBank:
    """A bank of training-stream shapes weighted by their agreement with S: the kNN posterior baseline of the
    module docstring (over whole shapes at continuous positions; export.evaluate.baselines.KnnPosterior is the
    image one, over training images on the pixel grid)."""

    def __init__(self, bank: list[Shape]):
        self.bank = bank

    def weights(self, spos: np.ndarray, sval: np.ndarray, tau: float) -> tuple[np.ndarray, np.ndarray]:
        """(indices of the bank shapes that carry the weight, their normalised weights): the best ones until
        they hold 99.9% of the weight, at most BANK_TOP."""
        d2 = np.array([((s.values(spos) - sval) ** 2).sum() for s in self.bank], np.float64)
        top = np.argsort(d2)[:BANK_TOP]
        w = np.exp(-(d2[top] - d2[top[0]]) / (2 * tau ** 2))
        w /= w.sum()
        keep = int(np.searchsorted(np.cumsum(w), 0.999)) + 1
        return top[:keep], w[:keep] / w[:keep].sum()

    def values(self, top: np.ndarray, qpos: np.ndarray) -> np.ndarray:
        """[K, Q] values of the bank shapes `top` at qpos."""
        return np.stack([self.bank[i].values(qpos)[:, 0] for i in top])


def baseline_predictions(sets: list[tuple], gpos: np.ndarray, bank: ShapeBank, chosen: dict) -> dict:
    """Every baseline's predictions, shape by shape, with the settings picked on validation shapes."""
    out: dict[str, list[Prediction]] = {"knn": [], "rbf": [], "nearest": []}
    for spos, sval, qpos, qval in sets:
        top, w = bank.weights(spos, sval, chosen["knn_tau"])
        kq, kg = bank.values(top, qpos), bank.values(top, gpos)
        out["knn"].append((w @ kq, w @ kg, gauss_mix_nll(qval, kq, w, chosen["knn_sigma"])))
        out["rbf"].append((rbf_predict(spos, sval, qpos, chosen["rbf_kernel"]),
                           rbf_predict(spos, sval, gpos, chosen["rbf_kernel"]), None))
        out["nearest"].append((nearest_predict(spos, sval, qpos), nearest_predict(spos, sval, gpos), None))
    return out


# ------------------------------------------------------------------------------------- protocol

def draw_sets(items: list[Shape], size: int, queries: int, seed: int) -> list[tuple]:
    """Per shape: (S positions, S values, query positions, query values), a function of (seed, size)."""
    rng = np.random.default_rng([seed, size, 14])
    out = []
    for s in items:
        p = s.positions(size + queries, rng)
        v = s.values(p)
        out.append((p[:size], v[:size], p[size:], v[size:, 0]))
    return out


def pick_baseline_settings(size: int, bank: ShapeBank, val_shapes: list[Shape], seed: int) -> dict:
    """RBF kernel by MSE and kNN (τ, σ) by NLL on validation shapes."""
    sets = draw_sets(val_shapes, size, 512, seed + 1)
    mse = {k: np.mean([((rbf_predict(a, b, c, k) - d) ** 2).mean() for a, b, c, d in sets]) for k in RBF_KERNELS}
    best = (math.inf, None, None)
    for tau in TAUS:
        tops = [bank.weights(a, b, tau) for a, b, _, _ in sets]
        preds = [bank.values(top, c) for (top, _), (_, _, c, _) in zip(tops, sets)]
        for sigma in SIGMAS:
            nll = np.mean([gauss_mix_nll(d, p, w, sigma).mean() for (_, w), p, (*_, d) in zip(tops, preds, sets)])
            best = min(best, (nll, tau, sigma), key=lambda x: x[0])
    return {"rbf_kernel": min(mse, key=mse.get), "knn_tau": best[1], "knn_sigma": best[2]}


def score_size(model: pt_plugin.Model, size: int, test: list[Shape], truth: Truth, bank: ShapeBank,
               val: list[Shape], seed: int) -> dict:
    """One |S|: every method on the same sets, the baselines' settings, and whether the model beats them all."""
    chosen = pick_baseline_settings(size, bank, val, seed)
    sets = draw_sets(test, size, QUERIES, seed)
    preds = {"model": model_predictions(model, sets, truth.positions)} | baseline_predictions(
        sets, truth.positions, bank, chosen)
    row = {name: score_method(preds[name], sets, truth) for name in VOLUME_METHODS}
    base = [m for m in VOLUME_METHODS if m != "model"]
    row["settings"] = chosen
    row["targets"] = {"iou_above_baselines": all(row["model"]["iou"] > row[b]["iou"] for b in base),
                      "chamfer_below_baselines": all(row["model"]["chamfer"] < row[b]["chamfer"] for b in base)}
    return row


def check_data(shipped: Shipped) -> None:
    """Refuse a model trained on other data than the procedural shapes this protocol draws."""
    if dataset(shipped.data) not in DATASETS:
        raise UsageError(f"{shipped.source} was trained on {shipped.data!r}; this protocol measures models of "
                         f"{', '.join(d.name for d in DATASETS)} (export.datasets.shapes)")


def evaluate(shipped: Shipped, args: argparse.Namespace, log: Callable[[str], None] = print) -> dict:
    """Run the protocol of the module docstring on the shipped graphs; writes metrics.json and metrics.md into
    args.out and returns the report."""
    check_data(shipped)
    sizes = tuple(int_list(args.sizes, "--sizes")) if args.sizes else SIZES
    solids = getattr(args, "solids", 0)
    if not sizes or min(sizes) < 1 or min(args.shapes, args.bank) < 1 or solids < 0:
        raise UsageError(f"--sizes {args.sizes} / --shapes {args.shapes} / --bank {args.bank} / --solids {solids}: "
                         "expected set sizes and numbers of shapes of at least 1 (solids: at least 0)")
    bank = ShapeBank(shapes(args.bank, "train", 10_000 + args.seed, shape_data.TRAINING_KIND_WEIGHTS))
    groups = {"sizes": (evaluation_shapes(args.shapes, args.seed), shapes(VAL_SHAPES, "val", args.seed))}
    if solids:
        groups["solids"] = (evaluation_shapes(solids, args.seed, shape_data.SOLID_WEIGHTS),
                            shapes(VAL_SHAPES, "val", args.seed, shape_data.SOLID_WEIGHTS))
    report = {"settings": shipped.settings() | {
        "protocol": NAME, "evaluation_shapes": args.shapes, "evaluation_solids": solids, "queries": QUERIES,
        "grid": GRID, "bank": args.bank, "bank_mixture": shape_data.TRAINING_KIND_WEIGHTS, "knn_top": BANK_TOP,
        "val_shapes": VAL_SHAPES, "seed": args.seed, "sizes": list(sizes), "truncation": TRUNCATION}}
    for group, (test, val) in groups.items():
        truth = Truth.of(test)
        results = report[group] = {}
        for size in sizes:
            t0 = time.time()
            row = results[str(size)] = score_size(shipped.model, size, test, truth, bank, val, args.seed)
            log(f"{group} |S|={size}: IoU " + ", ".join(f"{m} {row[m]['iou']:.3f}" for m in VOLUME_METHODS)
                + "; Chamfer " + ", ".join(f"{m} {row[m]['chamfer']:.4f}" for m in VOLUME_METHODS)
                + f" ({time.time() - t0:.0f}s)")
    write_report(report, args.out, markdown)
    return report


def markdown(report: dict) -> str:
    """The report as Markdown: a title line, what was measured, one row per |S| and method, the targets."""
    s = report["settings"]
    mixture = s.get("bank_mixture")
    lines = [f"# SDF shapes: PixelTransformer against 3-D baselines (step {s['step']})", "",
             f"{s['evaluation_shapes']} evaluation shapes (chairs, stools, tables) per |S| (eval seed stream), "
             f"{s['queries']} queries each; the shipped {s['precision']} graphs through pt_plugin; occupancy and "
             f"meshes on a {s['grid']}³ grid (truth mesh at {2 * s['grid']}³); kNN posterior over {s['bank']} training "
             "shapes"
             + (f" of the training mixture ({', '.join(f'{k} {v:g}' for k, v in mixture.items())})." if mixture
                else "."), ""]
    lines += table(report["sizes"])
    if report.get("solids"):
        lines += ["", f"Single solids (a sphere, box or cylinder each, not in the furniture mixture above): "
                      f"{s['evaluation_solids']} per |S|, scored the same way.", ""]
        lines += table(report["solids"])
    lines += ["", "Targets (model vs every baseline, the furniture table): " + "; ".join(
        f"|S|={size}: IoU {'met' if row['targets']['iou_above_baselines'] else 'missed'}, Chamfer "
        f"{'met' if row['targets']['chamfer_below_baselines'] else 'missed'}" for size, row in report["sizes"].items())]
    return "\n".join(lines) + "\n"


def table(rows: dict) -> list[str]:
    """Markdown lines of one group's results: a row per |S| and method."""
    lines = ["| \\|S\\| | method | NLL (nats/query) | SDF MSE | IoU | Chamfer | no surface |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for size, row in rows.items():
        for m, label in VOLUME_METHODS.items():
            r = row[m]
            nll = f"{r['nll']:.3f}" if r["nll"] is not None else "—"
            lines.append(f"| {size} | {label} | {nll} | {r['mse']:.5f} | {r['iou']:.3f} | {r['chamfer']:.4f} | "
                         f"{r['no_surface']} |")
    return lines


def summary(report: dict) -> dict:
    """The numbers model.json and the model card carry: per |S|, the model's IoU, Chamfer, NLL and MSE."""
    return {size: {k: row["model"][k] for k in ("iou", "chamfer", "nll", "mse")} | {
        "best_baseline_iou": max(row[m]["iou"] for m in VOLUME_METHODS if m != "model"),
        "best_baseline_chamfer": min(row[m]["chamfer"] for m in VOLUME_METHODS if m != "model")}
        for size, row in report["sizes"].items()}


def card_blocks(report: dict) -> dict[str, str]:
    """MODEL_CARD.md's generated "evaluation" block: the report without its title line."""
    return {"evaluation": markdown(report).split("\n", 2)[2].strip()}
