"""The binned Gaussian mixture of PixelTransformer (paper §4.1, appendix), in numpy.

For every query: q = softmax(logits); component b has mean c_b + μ_b and standard deviation σ_b
(a true standard deviation: a draw is c_b + μ_b + σ_b·ε).
"""
from __future__ import annotations

import math

import numpy as np


def _logsumexp(a: np.ndarray, axis: int = -1) -> np.ndarray:
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return np.squeeze(m, axis) + np.log(np.sum(np.exp(a - m), axis=axis))


def _erf(x: np.ndarray) -> np.ndarray:
    """erf to ~1.2e-7 (Numerical Recipes erfc Chebyshev fit), vectorised, without scipy."""
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = (-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (
        0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
    erfc = t * np.exp(poly)
    return np.sign(x) * (1.0 - erfc)


class Distribution:
    """Value distributions for a batch of queries: arrays [..., bins] and [..., bins, val_dim]."""

    def __init__(self, logits: np.ndarray, offsets: np.ndarray, log_sigma: np.ndarray, centers: np.ndarray):
        self.logits = np.asarray(logits, np.float64)
        self.offsets = np.asarray(offsets, np.float64)
        self.log_sigma = np.asarray(log_sigma, np.float64)
        self.centers = np.asarray(centers, np.float64)  # [bins, val_dim]

    @property
    def shape(self) -> tuple[int, ...]:
        """Batch shape of the queries (without bins / val_dim)."""
        return self.logits.shape[:-1]

    @property
    def val_dim(self) -> int:
        return self.centers.shape[-1]

    @property
    def log_probs(self) -> np.ndarray:
        return self.logits - _logsumexp(self.logits)[..., None]

    @property
    def probs(self) -> np.ndarray:
        """q_b, [..., bins]."""
        return np.exp(self.log_probs)

    @property
    def component_means(self) -> np.ndarray:
        """c_b + μ_b, [..., bins, val_dim]."""
        return self.centers + self.offsets

    @property
    def sigmas(self) -> np.ndarray:
        """σ_b (standard deviations), [..., bins]."""
        return np.exp(self.log_sigma)

    def mean(self) -> np.ndarray:
        """Σ_b q_b (c_b + μ_b) (paper Eq. 2), [..., val_dim]."""
        return np.einsum("...b,...bv->...v", self.probs, self.component_means)

    def variance(self) -> np.ndarray:
        """Per-dimension variance of the mixture, [..., val_dim]."""
        q, m = self.probs, self.component_means
        second = np.einsum("...b,...bv->...v", q, m**2 + self.sigmas[..., None] ** 2)
        return np.maximum(second - self.mean() ** 2, 0.0)

    def log_prob(self, v: np.ndarray) -> np.ndarray:
        """Natural-log mixture density of values v [..., val_dim] (summed over val_dim), [...]."""
        v = np.asarray(v, np.float64)
        if v.shape[-1] != self.val_dim:
            raise ValueError(f"log_prob: values end in {v.shape[-1]}, expected val_dim {self.val_dim}")
        d = self.val_dim
        r2 = np.sum((v[..., None, :] - self.component_means) ** 2, -1)
        comp = -0.5 * r2 / self.sigmas**2 - d * self.log_sigma - 0.5 * d * math.log(2 * math.pi)
        return _logsumexp(self.log_probs + comp)

    def cdf(self, v: np.ndarray) -> np.ndarray:
        """P(value <= v) for scalar values (val_dim 1); v broadcasts against the batch shape."""
        if self.val_dim != 1:
            raise ValueError(f"cdf is defined for scalar values; this model has val_dim {self.val_dim}")
        v = np.asarray(v, np.float64)
        z = (v[..., None] - self.component_means[..., 0]) / (self.sigmas * math.sqrt(2))
        return np.sum(self.probs * 0.5 * (1 + _erf(z)), -1)

    def sample(self, rng: np.random.Generator | int | None = None, temperature: float = 1.0) -> np.ndarray:
        """One draw per query, [..., val_dim]: b ~ q^(1/T) (renormalised), then c_b + μ_b + T·σ_b·ε.

        temperature 1 draws from the model; below 1 sharpens (0 is not allowed: use mean()).
        """
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}; use mean() for a deterministic value")
        rng = np.random.default_rng(rng)
        logq = self.log_probs / temperature
        cum = np.cumsum(np.exp(logq - _logsumexp(logq)[..., None]), -1)
        u = rng.random(self.shape + (1,))
        b = np.minimum((u > cum).sum(-1), cum.shape[-1] - 1)
        mu = np.take_along_axis(self.component_means, b[..., None, None], -2)[..., 0, :]
        sigma = np.take_along_axis(self.sigmas, b[..., None], -1)
        return mu + temperature * sigma * rng.standard_normal(mu.shape)

    def __getitem__(self, idx) -> "Distribution":
        return Distribution(self.logits[idx], self.offsets[idx], self.log_sigma[idx], self.centers)

    def __repr__(self) -> str:
        return f"Distribution(shape={self.shape}, bins={self.centers.shape[0]}, val_dim={self.val_dim})"
