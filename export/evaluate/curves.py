"""Curve models against the exact posterior (issue 13): `python -m export.evaluate CHECKPOINT` on a curve model.

Both families are Gaussian processes (export.datasets.curves: polynomials have the kernel φ(x)ᵀφ(x') of the
monomials), so the best possible answer is known: the oracle is the exact posterior predictive of
the noisy value y at each query given S, with the true prior and noise. Per |S|, over seeded
evaluation curves (the eval seed stream, disjoint from training) and uniform queries:
  NLL per query (nats) of the model, of the oracle, the gap; MSE of the model's mean against the
  oracle's mean; coverage of the model's central 90% interval (from its cdf).
Practical baselines fitted per curve: a GP with its hyperparameters (length scale, signal and noise
std) by maximum marginal likelihood, and a least-squares polynomial of degree min(6, |S| − 1).
Joint samples: on a 64-point grid, the covariance of many hybrid autoregressive samples (exact and
scheduled samplers) and of independent per-point draws against the oracle's posterior covariance
(relative Frobenius error) — whether the sampler draws the right joint law, not only the marginals.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from export.checkpoint import load_checkpoint, total_steps
from export.datasets.curves import NOISE_STD, CurveFamily, family, poly_features, seed_sequence
from export.model import PixelTransformer
from pt_plugin.sampling import step_sizes

SIZES = {"gp-curves": (1, 2, 4, 8, 16, 32), "polynomials": (2, 4, 6, 8, 12, 20)}
COVERAGE = 0.90
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


# ------------------------------------------------------------------------------------- model

@torch.no_grad()
def model_predict(model: PixelTransformer, xs: np.ndarray, ys: np.ndarray, xq: np.ndarray):
    """Mean, log density of yq and the cdf at yq, for a batch of curves [N, K] / [N, Q]."""
    t = lambda a: torch.from_numpy(np.asarray(a, np.float32))[..., None]  # noqa: E731
    mix = model(t(xs), t(ys), torch.ones(xs.shape, dtype=torch.bool), t(xq))
    return mix, mix.mean()[..., 0].double().numpy()


def mixture_cdf(mix, y: torch.Tensor) -> np.ndarray:
    """P(value ≤ y) under each query's mixture (val_dim 1)."""
    m = mix.component_means[..., 0]
    s = mix.log_sigma.exp()
    q = torch.softmax(mix.logits, -1)
    return (q * 0.5 * (1 + torch.erf((y[..., None] - m) / (s * math.sqrt(2))))).sum(-1).double().numpy()


@torch.no_grad()
def ar_samples(model: PixelTransformer, xs: np.ndarray, ys: np.ndarray, xq: np.ndarray, n: int, frac: float,
               gen: torch.Generator, independent: bool = False) -> np.ndarray:
    """[n, Q] joint draws at xq given one set (xs, ys): hybrid autoregressive over all of xq, a new random
    order per sample, ceil(frac·|set|) positions per pass (frac 0 = exact); or independent per-point draws."""
    lo, hi = model.cfg.value_range
    q = torch.from_numpy(xq.astype(np.float32))[None, :, None].expand(n, -1, -1)
    pos = torch.from_numpy(xs.astype(np.float32))[None, :, None].expand(n, -1, -1)
    val = torch.from_numpy(ys.astype(np.float32))[None, :, None].expand(n, -1, -1)
    if independent:
        return model(pos, val, torch.ones(pos.shape[:2], dtype=torch.bool), q).sample(gen)[..., 0].clamp(lo, hi).numpy()
    order = torch.rand(n, len(xq), generator=gen).argsort(1)
    out, done = torch.empty(n, len(xq)), 0
    for m in step_sizes(len(xs), len(xq), frac):  # the runtime's schedule
        idx = order[:, done:done + m]
        qp = q.gather(1, idx[..., None])
        v = model(pos, val, torch.ones(pos.shape[:2], dtype=torch.bool), qp).sample(gen).clamp(lo, hi)
        out.scatter_(1, idx, v[..., 0])
        pos, val, done = torch.cat([pos, qp], 1), torch.cat([val, v], 1), done + m
    return out.numpy()


def frobenius_error(samples: np.ndarray, cov: np.ndarray) -> float:
    return float(np.linalg.norm(np.cov(samples, rowvar=False) - cov) / np.linalg.norm(cov))


# ---------------------------------------------------------------------------------- protocol

def draw_eval_sets(fam: CurveFamily, size: int, curves: int, queries: int, seed: int):
    """Seeded evaluation curves (eval stream): S positions/values [N, size] and query positions/values [N, Q]."""
    rng = np.random.default_rng(seed_sequence("eval", seed, size))
    x = rng.uniform(-1, 1, (curves, size + queries))
    y = fam.draw(x, rng)
    return x[:, :size], y[:, :size], x[:, size:], y[:, size:]


def evaluate_curves(checkpoint: str | Path, out: str | Path, curves: int = 400, queries: int = 100,
                    sizes: tuple[int, ...] | None = None, seed: int = 0, joint_sets: int = 6,
                    joint_samples: int = 300, joint_points: int = 64, threads: int = 2,
                    log: Callable[[str], None] = print) -> dict:
    """Run the protocol of the module docstring; writes metrics.json and metrics.md into `out`."""
    if threads:
        torch.set_num_threads(threads)
    model, ck = load_checkpoint(checkpoint)
    data = ck["config"]["train"]["data"]
    fam = family(data)
    sizes = sizes or SIZES[data]
    results = {}
    for size in sizes:
        t0 = time.time()
        xs, ys, xq, yq = draw_eval_sets(fam, size, curves, queries, seed)
        mix, mean = model_predict(model, xs, ys, xq)
        nll = -mix.log_prob(torch.from_numpy(yq.astype(np.float32))[..., None]).double().numpy()
        cdf = mixture_cdf(mix, torch.from_numpy(yq.astype(np.float32)))
        lo_q, hi_q = (1 - COVERAGE) / 2, (1 + COVERAGE) / 2
        oracle = [posterior(fam, a, b, c) for a, b, c in zip(xs, ys, xq)]
        o_mean, o_var = np.stack([o[0] for o in oracle]), np.stack([o[1] for o in oracle])
        row = {"model": {"nll": float(nll.mean()), "mse_vs_oracle_mean": float(((mean - o_mean) ** 2).mean()),
                         "coverage90": float(((cdf >= lo_q) & (cdf <= hi_q)).mean())},
               "oracle": {"nll": float(gauss_nll(yq, o_mean, o_var).mean())}}
        row["gap"] = row["model"]["nll"] - row["oracle"]["nll"]
        for name, fn in (("gp_ml2", gp_ml2), ("least_squares_poly", least_squares_poly)):
            preds = [fn(a, b, c) for a, b, c in zip(xs, ys, xq)]
            m, v = np.stack([p[0] for p in preds]), np.stack([p[1] for p in preds])
            z = np.abs(yq - m) / np.sqrt(v)
            row[name] = {"nll": float(gauss_nll(yq, m, v).mean()),
                         "mse_vs_oracle_mean": float(((m - o_mean) ** 2).mean()),
                         "coverage90": float((z <= 1.6448536).mean())}
        results[str(size)] = row
        log(f"|S|={size}: NLL model {row['model']['nll']:.3f} oracle {row['oracle']['nll']:.3f} gap {row['gap']:+.3f}; "
            f"GP-ML2 {row['gp_ml2']['nll']:.3f}, LSQ poly {row['least_squares_poly']['nll']:.3f}; coverage "
            f"{row['model']['coverage90']:.3f} ({time.time() - t0:.1f}s)")
    joint = (joint_covariance(model, fam, sizes, joint_sets, joint_samples, joint_points, seed, log)
             if joint_sets else {})
    res = {"settings": {"checkpoint": str(checkpoint), "family": data, "step": total_steps(ck), "curves": curves,
                        "queries": queries, "seed": seed, "sizes": list(sizes), "noise_std": NOISE_STD,
                        "coverage": COVERAGE, "joint": {"sets": joint_sets, "samples": joint_samples,
                                                        "points": joint_points}},
           "sizes": results, "joint": joint}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(res, indent=1))
    (out / "metrics.md").write_text(markdown(res))
    return res


def joint_covariance(model, fam, sizes, sets, samples, points, seed, log) -> dict:
    """Relative Frobenius error of sample covariances on a grid against the oracle, per sampler, averaged over sets."""
    xq = (np.arange(points) + 0.5) / points * 2 - 1
    gen = torch.Generator().manual_seed(seed)
    sizes_used = [s for s in sizes if s in (2, 4, 8)] or list(sizes[:2])
    out = {}
    for size in sizes_used:
        xs, ys, _, _ = draw_eval_sets(fam, size, sets, 1, seed + 1)
        errs = {"exact": [], "scheduled_0.1": [], "independent": []}
        for a, b in zip(xs, ys):
            _, cov = posterior(fam, a, b, xq, full=True)
            errs["exact"].append(frobenius_error(ar_samples(model, a, b, xq, samples, 0.0, gen), cov))
            errs["scheduled_0.1"].append(frobenius_error(ar_samples(model, a, b, xq, samples, 0.1, gen), cov))
            errs["independent"].append(frobenius_error(ar_samples(model, a, b, xq, samples, 0, gen, True), cov))
        # the floor: the same error for exact draws from the oracle itself, with as many samples
        rng = np.random.default_rng(seed)
        floor = []
        for a, b in zip(xs, ys):
            m, cov = posterior(fam, a, b, xq, full=True)
            floor.append(frobenius_error(rng.multivariate_normal(m, cov, samples, method="cholesky"), cov))
        out[str(size)] = {k: float(np.mean(v)) for k, v in errs.items()}
        out[str(size)]["oracle_samples"] = float(np.mean(floor))
        log(f"joint |S|={size}: covariance error " + ", ".join(f"{k} {v:.3f}" for k, v in out[str(size)].items()))
    return out


def markdown(res: dict) -> str:
    st = res["settings"]
    lines = [f"# {st['family']}: PixelTransformer against the exact posterior (step {st['step']})", "",
             f"{st['curves']} seeded evaluation curves per |S| (eval seed stream, disjoint from training), "
             f"{st['queries']} uniform queries each; NLL per query in nats of the noisy value y "
             f"(noise std {st['noise_std']}); MSE of the mean against the oracle's mean; coverage of the central "
             f"90% interval.", "",
             r"| \|S\| | model NLL | oracle NLL | gap | MSE vs oracle mean | 90% coverage | GP (ML-II) NLL | "
             r"GP (ML-II) MSE | LSQ poly NLL | LSQ poly MSE |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for size, r in res["sizes"].items():
        m, g, p = r["model"], r["gp_ml2"], r["least_squares_poly"]
        lines.append(f"| {size} | {m['nll']:.3f} | {r['oracle']['nll']:.3f} | {r['gap']:+.3f} | "
                     f"{m['mse_vs_oracle_mean']:.4f} | {m['coverage90']:.3f} | {g['nll']:.3f} | "
                     f"{g['mse_vs_oracle_mean']:.4f} | {p['nll']:.3f} | {p['mse_vs_oracle_mean']:.4f} |")
    j = res["joint"]
    if j:
        js = st["joint"]
        lines += ["", f"Joint samples: relative Frobenius error of the covariance of {js['samples']} samples on a "
                  f"{js['points']}-point grid against the oracle's posterior covariance, mean over {js['sets']} sets "
                  "(oracle samples: the same error for exact draws from the oracle, "
                  "the floor set by the sample count).",
                  "", r"| \|S\| | exact sampler | scheduled (0.1) | independent draws | oracle samples |",
                  "|---:|---:|---:|---:|---:|"]
        for size, r in j.items():
            lines.append(f"| {size} | {r['exact']:.3f} | {r['scheduled_0.1']:.3f} | {r['independent']:.3f} | "
                         f"{r['oracle_samples']:.3f} |")
    return "\n".join(lines) + "\n"


def summary(report: dict) -> dict:
    """What model.json carries of a curve report: per |S|, the model's NLL, the oracle's, the gap, coverage."""
    st = report["settings"]
    return {"protocol": f"python -m export.evaluate ({st['curves']} seeded {st['family']} per |S|, exact posterior)",
            "sizes": {size: {"nll": r["model"]["nll"], "oracle_nll": r["oracle"]["nll"], "gap": r["gap"],
                             "mse_vs_oracle_mean": r["model"]["mse_vs_oracle_mean"],
                             "coverage90": r["model"]["coverage90"]} for size, r in report["sizes"].items()},
            "joint_covariance_error": report.get("joint", {})}
