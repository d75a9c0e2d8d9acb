"""Curve models against the exact posterior (issue 13): `python -m export.evaluate weights/NAME` on a curve model.

The shipped graphs run through pt_plugin (export.evaluate.protocol), so the figures are those of the files users
load. The family comes from the model's training data (model.json training.data, export.datasets.curves). Both
families are Gaussian processes (polynomials have the kernel φ(x)ᵀφ(x') of the monomials), so the best possible
answer is known: the oracle is the exact posterior predictive of the noisy value y at each query given S, with
the true prior and noise. Per |S|, over seeded evaluation curves (the eval seed stream, disjoint from training)
and uniform queries:
  NLL per query (nats) of the model, of the oracle, the gap; MSE of the model's mean against the
  oracle's mean; coverage of the model's central 90% interval (Distribution.cdf at the true value).
Practical baselines fitted per curve: a GP with its hyperparameters (length scale, signal and noise
std) by maximum marginal likelihood, and a least-squares polynomial of degree min(6, |S| − 1).
Joint samples: on a 64-point grid, the covariance of many samples of the runtime's hybrid sampler
(Model.sample with its defaults, and exact: step fraction 0, every point drawn in turn) and of
independent per-point draws against the oracle's posterior covariance (relative Frobenius error) —
whether the sampler users run draws the right joint law, not only the marginals.
"""
from __future__ import annotations

import argparse
import math
import time
from typing import Callable

import numpy as np

import pt_plugin
from export.datasets.curves import NOISE_STD, CurveFamily, family, poly_features, seed_sequence
from export.errors import UsageError, int_list
from export.evaluate.protocol import Shipped, sample, write_report

NAME = "curves"
SIZE_LADDER = (1, 2, 4, 8, 16, 32)  # default |S|: those within the model's training range
COVERAGE = 0.90
QUERIES = 100       # uniform queries per evaluation curve
JOINT_POINTS = 64   # the grid of the joint check
BATCH = 256         # curves per encoder call
LOG2PI = math.log(2 * math.pi)


# ------------------------------------------------------------------------------------ oracle

def posterior(fam: CurveFamily, xs: np.ndarray, ys: np.ndarray, xq: np.ndarray, full: bool = False):
    """Exact posterior predictive of noisy y at xq [Q] given (xs, ys) [K]: mean [Q] and variance [Q]
    (or the full covariance [Q, Q] with full=True)."""
    kss = fam.covariance(xs, xs) + NOISE_STD ** 2 * np.eye(len(xs))
    kqs = fam.covariance(xq, xs)
    chol = np.linalg.cholesky(kss + 1e-9 * np.eye(len(xs)))
    alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, ys))
    v = np.linalg.solve(chol, kqs.T)
    mean = kqs @ alpha
    if full:
        return mean, fam.covariance(xq, xq) - v.T @ v + NOISE_STD ** 2 * np.eye(len(xq))
    var = np.diag(fam.covariance(xq, xq)) - (v ** 2).sum(0) + NOISE_STD ** 2
    return mean, np.maximum(var, 1e-12)


def gauss_nll(y: np.ndarray, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    return 0.5 * (LOG2PI + np.log(var) + (y - mean) ** 2 / var)


# --------------------------------------------------------------------------------- baselines

def gp_ml2(xs: np.ndarray, ys: np.ndarray, xq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A GP with an RBF kernel whose length scale, signal std and noise std maximise the marginal likelihood."""
    from scipy.optimize import minimize

    def nlml(theta):
        ell, sf, sn = np.exp(theta)
        k = sf ** 2 * np.exp(-(xs[:, None] - xs[None]) ** 2 / (2 * ell ** 2)) + (sn ** 2 + 1e-8) * np.eye(len(xs))
        try:
            chol = np.linalg.cholesky(k)
        except np.linalg.LinAlgError:
            return 1e10
        a = np.linalg.solve(chol.T, np.linalg.solve(chol, ys))
        return 0.5 * ys @ a + np.log(np.diag(chol)).sum()

    starts = [np.log([0.25, max(ys.std(), 0.1), 0.1]), np.log([1.0, max(np.abs(ys).max(), 0.1), 0.05])]
    best = min((minimize(nlml, s, method="L-BFGS-B", bounds=[(-4, 2), (-4, 3), (-6, 1)]) for s in starts),
               key=lambda r: r.fun)
    ell, sf, sn = np.exp(best.x)
    k = lambda a, b: sf ** 2 * np.exp(-(a[:, None] - b[None]) ** 2 / (2 * ell ** 2))  # noqa: E731
    chol = np.linalg.cholesky(k(xs, xs) + (sn ** 2 + 1e-8) * np.eye(len(xs)))
    kqs = k(xq, xs)
    v = np.linalg.solve(chol, kqs.T)
    mean = kqs @ np.linalg.solve(chol.T, np.linalg.solve(chol, ys))
    return mean, np.maximum(sf ** 2 - (v ** 2).sum(0) + sn ** 2, 1e-8)


def least_squares_poly(xs: np.ndarray, ys: np.ndarray, xq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares polynomial of degree min(6, |S| − 1); predictive variance σ̂²(1 + φᵀ(ΦᵀΦ)⁻¹φ) with σ̂² the
    residual variance (the true noise variance when no residual degree of freedom is left)."""
    deg = min(6, len(xs) - 1)
    phi, phq = poly_features(xs)[:, :deg + 1], poly_features(xq)[:, :deg + 1]
    coef, *_ = np.linalg.lstsq(phi, ys, rcond=None)
    dof = len(xs) - deg - 1
    s2 = float(((phi @ coef - ys) ** 2).sum() / dof) if dof > 0 else NOISE_STD ** 2
    s2 = max(s2, 1e-6)
    cov = np.linalg.pinv(phi.T @ phi)
    return phq @ coef, s2 * (1 + np.einsum("qi,ij,qj->q", phq, cov, phq))


BASELINES = {"gp_ml2": gp_ml2, "least_squares_poly": least_squares_poly}


def baseline_scores(xs: np.ndarray, ys: np.ndarray, xq: np.ndarray, yq: np.ndarray, o_mean: np.ndarray) -> dict:
    """NLL, MSE against the oracle's mean and 90% coverage of each baseline, fitted curve by curve."""
    out = {}
    for name, fn in BASELINES.items():
        preds = [fn(a, b, c) for a, b, c in zip(xs, ys, xq)]
        m, v = np.stack([p[0] for p in preds]), np.stack([p[1] for p in preds])
        z = np.abs(yq - m) / np.sqrt(v)
        out[name] = {"nll": float(gauss_nll(yq, m, v).mean()), "mse_vs_oracle_mean": float(((m - o_mean) ** 2).mean()),
                     "coverage90": float((z <= 1.6448536).mean())}
    return out


# ------------------------------------------------------------------------------------- model

def model_law(model: pt_plugin.Model, xs: np.ndarray, ys: np.ndarray, xq: np.ndarray,
              yq: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The shipped model's mean, log density (nats) and cdf at the true values yq [N, Q], given curves (xs, ys)
    [N, K] and queries xq [N, Q]: Model.query on BATCH curves at a time."""
    parts = []
    for lo in range(0, len(xs), BATCH):
        rows = slice(lo, lo + BATCH)
        ctx = model.encode_batch(list(zip(xs[rows, :, None], ys[rows, :, None])))
        dist = model.query(ctx, xq[rows, :, None])
        parts.append((dist.mean()[..., 0], dist.log_prob(yq[rows]), dist.cdf(yq[rows])))
    return tuple(np.concatenate(p).astype(np.float64) for p in zip(*parts))


def draw_eval_sets(fam: CurveFamily, size: int, curves: int, queries: int, seed: int):
    """Seeded evaluation curves (eval stream): S positions/values [N, size] and query positions/values [N, Q]."""
    rng = np.random.default_rng(seed_sequence("eval", seed, size))
    x = rng.uniform(-1, 1, (curves, size + queries))
    y = fam.draw(x, rng)
    return x[:, :size], y[:, :size], x[:, size:], y[:, size:]


def score_size(model: pt_plugin.Model, fam: CurveFamily, size: int, curves: int, seed: int) -> dict:
    """One row of the table: the model, the oracle, the gap and the baselines at one |S|."""
    xs, ys, xq, yq = draw_eval_sets(fam, size, curves, QUERIES, seed)
    mean, logp, cdf = model_law(model, xs, ys, xq, yq)
    oracle = [posterior(fam, a, b, c) for a, b, c in zip(xs, ys, xq)]
    o_mean, o_var = np.stack([o[0] for o in oracle]), np.stack([o[1] for o in oracle])
    lo_q, hi_q = (1 - COVERAGE) / 2, (1 + COVERAGE) / 2
    row = {"model": {"nll": float(-logp.mean()), "mse_vs_oracle_mean": float(((mean - o_mean) ** 2).mean()),
                     "coverage90": float(((cdf >= lo_q) & (cdf <= hi_q)).mean())},
           "oracle": {"nll": float(gauss_nll(yq, o_mean, o_var).mean())}}
    row["gap"] = row["model"]["nll"] - row["oracle"]["nll"]
    return row | baseline_scores(xs, ys, xq, yq, o_mean)


# ------------------------------------------------------------------------------ joint samples

def frobenius_error(samples: np.ndarray, cov: np.ndarray) -> float:
    return float(np.linalg.norm(np.cov(samples, rowvar=False) - cov) / np.linalg.norm(cov))


def set_draws(model: pt_plugin.Model, xs: np.ndarray, ys: np.ndarray, xq: np.ndarray, n: int,
              rng: np.random.Generator) -> dict[str, np.ndarray]:
    """[n, Q] joint draws at xq given one set, per sampler: the runtime's sampler with its defaults (over cached
    keys and values when the model has the cache graphs), the exact re-encoding one (step fraction 0, every query
    drawn in turn, the set encoded again for each) and independent per-point draws."""
    pos, val, q = xs[:, None], ys[:, None], xq[:, None]
    seed = lambda: int(rng.integers(2 ** 31))  # noqa: E731
    dist = model.query((pos, val), q)
    return {"runtime": sample(model, pos, val, q, n, seed())[..., 0],
            "exact": sample(model, pos, val, q, n, seed(), step_fraction=0.0, autoregressive=len(xq),
                            cache=False)[..., 0],
            "independent": np.stack([dist.sample(rng)[..., 0] for _ in range(n)])}


def joint_covariance(model: pt_plugin.Model, fam: CurveFamily, sizes: tuple[int, ...], sets: int, samples: int,
                     seed: int, log: Callable[[str], None]) -> dict:
    """Relative Frobenius error of sample covariances on a grid against the oracle, per sampler, averaged over
    sets; `oracle_samples` is the floor: the same error for as many exact draws from the oracle."""
    xq = (np.arange(JOINT_POINTS) + 0.5) / JOINT_POINTS * 2 - 1
    rng = np.random.default_rng(seed)
    out = {}
    for size in [s for s in sizes if s in (2, 4, 8)] or list(sizes[:2]):
        xs, ys, _, _ = draw_eval_sets(fam, size, sets, 1, seed + 1)
        floor_rng = np.random.default_rng(seed)  # the same oracle draws at every |S|, whatever the model drew
        errs: dict[str, list[float]] = {}
        for a, b in zip(xs, ys):
            m, cov = posterior(fam, a, b, xq, full=True)
            draws = set_draws(model, a, b, xq, samples, rng)
            draws["oracle_samples"] = floor_rng.multivariate_normal(m, cov, samples, method="cholesky")
            for name, d in draws.items():
                errs.setdefault(name, []).append(frobenius_error(d, cov))
        out[str(size)] = {k: float(np.mean(v)) for k, v in errs.items()}
        log(f"joint |S|={size}: covariance error " + ", ".join(f"{k} {v:.3f}" for k, v in out[str(size)].items()))
    return out


# ---------------------------------------------------------------------------------- protocol

def default_sizes(shipped: Shipped) -> tuple[int, ...]:
    """SIZE_LADDER within the largest |S| the model was trained on (model.json training.samples_range)."""
    top = (shipped.meta.get("training", {}).get("samples_range") or [0, max(SIZE_LADDER)])[1]
    return tuple(s for s in SIZE_LADDER if s <= top) or SIZE_LADDER[:1]


def chosen_sizes(shipped: Shipped, args: argparse.Namespace) -> tuple[int, ...]:
    """--sizes, or default_sizes; refused when a set size or the curve count is below 1."""
    sizes = tuple(int_list(args.sizes, "--sizes")) if args.sizes else default_sizes(shipped)
    if not sizes or min(sizes) < 1 or args.curves < 1:
        raise UsageError(f"--sizes {args.sizes} / --curves {args.curves}: expected set sizes and a number of "
                         "curves of at least 1")
    return sizes


def settings(shipped: Shipped, args: argparse.Namespace, sizes: tuple[int, ...]) -> dict:
    """What was measured: the model (shipped.settings()) and this protocol's choices."""
    return shipped.settings() | {
        "protocol": NAME, "curves": args.curves, "queries": QUERIES, "seed": args.seed, "sizes": list(sizes),
        "noise_std": NOISE_STD, "coverage": COVERAGE,
        "joint": {"sets": args.joint_sets, "samples": args.joint_samples, "points": JOINT_POINTS,
                  "runtime": runtime_plan(shipped.model),
                  "exact": {"cache": False, "autoregressive": JOINT_POINTS, "step_fraction": 0.0}}}


def runtime_plan(model: pt_plugin.Model) -> dict:
    """Model.sample's defaults for this model: cached or not, N′, step fraction, buffer size."""
    cached, autoregressive, fraction = model.sampling_plan()
    return {"cache": cached, "autoregressive": autoregressive, "step_fraction": fraction,
            "buffer_size": model.buffer_plan(None) if cached else None}


def evaluate(shipped: Shipped, args: argparse.Namespace, log: Callable[[str], None] = print) -> dict:
    """Run the protocol of the module docstring on the shipped graphs; writes metrics.json and metrics.md into
    args.out and returns the report."""
    fam = family(shipped.data)
    sizes = chosen_sizes(shipped, args)
    results = {}
    for size in sizes:
        t0 = time.time()
        row = results[str(size)] = score_size(shipped.model, fam, size, args.curves, args.seed)
        log(f"|S|={size}: NLL model {row['model']['nll']:.3f} oracle {row['oracle']['nll']:.3f} gap {row['gap']:+.3f}; "
            f"GP-ML2 {row['gp_ml2']['nll']:.3f}, LSQ poly {row['least_squares_poly']['nll']:.3f}; coverage "
            f"{row['model']['coverage90']:.3f} ({time.time() - t0:.1f}s)")
    joint = (joint_covariance(shipped.model, fam, sizes, args.joint_sets, args.joint_samples, args.seed, log)
             if args.joint_sets else {})
    report = {"settings": settings(shipped, args, sizes), "sizes": results, "joint": joint}
    write_report(report, args.out, markdown)
    return report


def markdown(report: dict) -> str:
    """The report as Markdown: a title line, the table against the oracle and baselines, the joint check."""
    st = report["settings"]
    lines = [f"# {st['data']}: PixelTransformer against the exact posterior (step {st['step']})", "",
             f"{st['curves']} seeded evaluation curves per |S| (eval seed stream, disjoint from training), "
             f"{st['queries']} uniform queries each; the shipped {st['precision']} graphs through pt_plugin; NLL "
             f"per query in nats of the noisy value y (noise std {st['noise_std']}); MSE of the mean against the "
             "oracle's mean; coverage of the central 90% interval.", "",
             r"| \|S\| | model NLL | oracle NLL | gap | MSE vs oracle mean | 90% coverage | GP (ML-II) NLL | "
             r"GP (ML-II) MSE | LSQ poly NLL | LSQ poly MSE |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for size, r in report["sizes"].items():
        m, g, p = r["model"], r["gp_ml2"], r["least_squares_poly"]
        lines.append(f"| {size} | {m['nll']:.3f} | {r['oracle']['nll']:.3f} | {r['gap']:+.3f} | "
                     f"{m['mse_vs_oracle_mean']:.4f} | {m['coverage90']:.3f} | {g['nll']:.3f} | "
                     f"{g['mse_vs_oracle_mean']:.4f} | {p['nll']:.3f} | {p['mse_vs_oracle_mean']:.4f} |")
    return "\n".join(lines + joint_lines(report)) + "\n"


def joint_lines(report: dict) -> list[str]:
    """The joint check's paragraph and table (nothing when it was skipped)."""
    if not report["joint"]:
        return []
    js = report["settings"]["joint"]
    rt = js["runtime"]
    drawn = "every point drawn" if rt["autoregressive"] >= js["points"] else "the other points take the mean"
    if rt.get("cache"):
        bound = rt.get("buffer_size")
        drawn += (", over cached keys and values" + ("" if bound is None else
                                                      f", the set encoded again every {bound} points"))
    lines = ["", f"Joint samples: relative Frobenius error of the covariance of {js['samples']} samples on a "
             f"{js['points']}-point grid against the oracle's posterior covariance, mean over {js['sets']} sets. "
             f"Samples of pt_plugin's Model.sample: with its defaults (step fraction {rt['step_fraction']:g}, "
             f"N′ {min(rt['autoregressive'], js['points'])}: {drawn}) and exact (step fraction 0: one point per "
             "encoder pass, re-encoding the grown set); "
             "independent draws ignore the joint law; oracle samples: the same error for exact draws from the "
             "oracle, the floor set by the sample count.",
             "", r"| \|S\| | runtime sampler (defaults) | exact sampler | independent draws | oracle samples |",
             "|---:|---:|---:|---:|---:|"]
    for size, r in report["joint"].items():
        lines.append(f"| {size} | {r['runtime']:.3f} | {r['exact']:.3f} | {r['independent']:.3f} | "
                     f"{r['oracle_samples']:.3f} |")
    return lines


def summary(report: dict) -> dict:
    """What model.json carries of a curve report: per |S|, the model's NLL, the oracle's, the gap, coverage."""
    st = report["settings"]
    return {"protocol": f"python -m export.evaluate ({st['curves']} seeded {st['data']} per |S|, exact posterior)",
            "sizes": {size: {"nll": r["model"]["nll"], "oracle_nll": r["oracle"]["nll"], "gap": r["gap"],
                             "mse_vs_oracle_mean": r["model"]["mse_vs_oracle_mean"],
                             "coverage90": r["model"]["coverage90"]} for size, r in report["sizes"].items()},
            "joint_covariance_error": report.get("joint", {})}


def card_blocks(report: dict) -> dict[str, str]:
    """MODEL_CARD.md's generated "evaluation" block: the report without its title line."""
    return {"evaluation": markdown(report).split("\n", 2)[2].strip()}
