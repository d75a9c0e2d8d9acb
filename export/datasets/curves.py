"""1-D function families drawn on the fly (issue 13, paper §6.1): polynomials and GP curves.

Each family is defined exactly so that anyone can regenerate it and so that the exact posterior
predictive (the oracle of export.evaluate.curves) is known:
  polynomials: g(x) = Σ_{i=0..6} a_i x^i, a_i ~ N(0, 1) i.i.d.;      y = g(x) + ε
  gp-curves:   f ~ GP(0, k), k(x, x') = exp(−(x − x')² / (2·0.25²));  y = f(x) + ε
with ε ~ N(0, 0.05²) on every value, observed or queried, and x ~ U[−1, 1] (no grid).
Training and evaluation draw from disjoint seed streams (SEED_STREAMS).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from export.datasets.base import Dataset, TrainingData
from export.errors import ConfigError

if TYPE_CHECKING:
    from export.config import Config

NOISE_STD = 0.05
POLY_DEGREE = 6
GP_LENGTHSCALE = 0.25
GP_JITTER = 1e-6
SEED_STREAMS = {"train": 0, "val": 1, "eval": 2}  # the first word of every SeedSequence: streams never overlap


@dataclass(frozen=True)
class CurveFamily:
    """A prior over functions y(x) on [−1, 1] whose joint law at any points is Gaussian."""
    name: str
    value_range: tuple[float, float]  # covers the values with overwhelming probability; draws are clipped to it

    def covariance(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Prior covariance of the noise-free function between points x [..., N] and y [..., M]."""
        if self.name == "polynomials":
            return poly_features(x) @ np.swapaxes(poly_features(y), -1, -2)
        return np.exp(-(x[..., :, None] - y[..., None, :]) ** 2 / (2 * GP_LENGTHSCALE ** 2))

    def draw(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Noisy values y at x [B, N]: one function per row, jointly Gaussian, clipped to value_range."""
        if self.name == "polynomials":
            coef = rng.standard_normal((x.shape[0], POLY_DEGREE + 1))
            f = np.einsum("bnd,bd->bn", poly_features(x), coef)
        else:
            cov = self.covariance(x, x) + GP_JITTER * np.eye(x.shape[1])
            f = np.einsum("bnm,bm->bn", np.linalg.cholesky(cov), rng.standard_normal(x.shape))
        y = f + NOISE_STD * rng.standard_normal(x.shape)
        return np.clip(y, *self.value_range)


def poly_features(x: np.ndarray) -> np.ndarray:
    """Monomials [..., N, 7] = x^0 … x^6."""
    return x[..., None] ** np.arange(POLY_DEGREE + 1)


FAMILIES = {
    # |g(x)| ≤ Σ|a_i|: the std of g(1) is √7 ≈ 2.65, so ±12 is beyond 4.5 std at the worst point
    "polynomials": CurveFamily("polynomials", (-12.0, 12.0)),
    # f(x) ~ N(0, 1) at every x: ±5 is 5 std
    "gp-curves": CurveFamily("gp-curves", (-5.0, 5.0)),
}


def family(name: str) -> CurveFamily:
    if name not in FAMILIES:
        raise ConfigError(f"unknown curve family {name!r}; expected one of {', '.join(FAMILIES)}")
    return FAMILIES[name]


def seed_sequence(stream: str, *words: int) -> np.random.SeedSequence:
    """A seed sequence of one of the disjoint streams (train / val / eval)."""
    return np.random.SeedSequence([SEED_STREAMS[stream], *[int(w) for w in words]])


class CurveSampler:
    """Training batches (S positions, S values, S mask, Q positions, Q values) of fresh curves, [B, ·, 1]."""

    def __init__(self, fam: CurveFamily, min_samples: int, max_samples: int, num_queries: int, batch_size: int,
                 seed: np.random.SeedSequence):
        if not 1 <= min_samples <= max_samples:
            raise ConfigError(f"need 1 <= min_samples <= max_samples, got {min_samples}, {max_samples}")
        self.fam, self.kmin, self.kmax, self.nq, self.bs = fam, min_samples, max_samples, num_queries, batch_size
        self.rng = np.random.default_rng(seed)

    def set_size(self) -> int:
        """|S| log-uniform in [min_samples, max_samples]."""
        u = self.rng.random()
        return int(round(math.exp(math.log(self.kmin) + u * (math.log(self.kmax) - math.log(self.kmin)))))

    def batch(self):
        k = self.set_size()
        x = self.rng.uniform(-1, 1, (self.bs, k + self.nq))
        y = self.fam.draw(x, self.rng)
        t = lambda a: torch.from_numpy(a.astype(np.float32))[..., None]  # noqa: E731
        mask = torch.ones(self.bs, k, dtype=torch.bool)
        return t(x[:, :k]), t(y[:, :k]), mask, t(x[:, k:]), t(y[:, k:])


# --------------------------------------------------------------------------- registry entries

DEMO_POINTS = 200  # the demo curve's dense true points


def curve_training(cfg: Config, rank: int) -> TrainingData:
    """Fresh curves of the family at every step; validation curves from their own seed stream."""
    tc = cfg.train
    fam = family(tc.data)

    def curve_sampler(step: int) -> CurveSampler:
        return CurveSampler(fam, tc.min_samples, tc.max_samples, tc.num_queries, tc.batch_size,
                            seed_sequence("train", tc.seed, rank, step))
    val = CurveSampler(fam, tc.min_samples, tc.max_samples, tc.num_queries, 32, seed_sequence("val"))
    return TrainingData(curve_sampler, [val.batch() for _ in range(8)], f"{tc.data} drawn on the fly")


def curve_demo(spec: str, data_dir: str, seed: int) -> dict[str, np.ndarray]:
    """Dense true points of one curve of the evaluation stream."""
    from pt_plugin.grids import grid_positions

    x = grid_positions(DEMO_POINTS)
    y = family(spec).draw(x[:, 0][None].astype(np.float64), np.random.default_rng(seed_sequence("eval", 99, seed)))
    return {"positions": x, "values": y[0, :, None].astype(np.float32)}


DATASETS = tuple(
    Dataset(name, "curve", about, (1, 1), curve_training, curve_demo)  # no draws: int8 calibrates on random sets
    for name, about in (("polynomials", "degree-6 polynomials with N(0, 1) coefficients, noise 0.05"),
                        ("gp-curves", "GP(0, RBF 0.25) curves, noise 0.05")))
