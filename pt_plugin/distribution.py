"""The binned Gaussian mixture of PixelTransformer (paper §4.1, appendix), in numpy.

For every query: q = softmax(logits); component b has mean c_b + μ_b and standard deviation σ_b
(a true standard deviation: a draw is c_b + μ_b + σ_b·ε).

Values given to log_prob and cdf are [..., val_dim] and broadcast against the batch shape; for
val_dim 1 the value axis may be left out (a scalar, or an array of the batch shape). Where a
value_range is known (Model passes the model's), mean() and sample() are clipped to it: the
offsets μ_b let component means stray slightly (~1e-4) outside the range the model was trained on.
"""
from __future__ import annotations

import math

import numpy as np

from . import inputs
from .errors import InputError


def _logsumexp(a: np.ndarray, axis: int = -1) -> np.ndarray:
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):  # all terms -inf: log(0) = -inf, the right answer
        return np.squeeze(m, axis) + np.log(np.sum(np.exp(a - m), axis=axis))


def _erf(x: np.ndarray) -> np.ndarray:
    """erf to ~1.2e-7 (Numerical Recipes erfc Chebyshev fit), vectorised, without scipy."""
    z = np.minimum(np.abs(x), 30.0)  # erfc(30) is 0 in float64; larger z would overflow z*z
    t = 1.0 / (1.0 + 0.5 * z)
    poly = (-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (
        0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
    erfc = t * np.exp(poly)
    return np.sign(x) * (1.0 - erfc)


def _broadcast(a: tuple, b: tuple) -> tuple | None:
    """np.broadcast_shapes(a, b), or None where they do not broadcast."""
    try:
        return np.broadcast_shapes(a, b)
    except ValueError:
        return None


def _value_range(value_range) -> tuple[float, float] | None:
    """None or a finite (low, high) with low < high."""
    if value_range is None:
        return None
    want = f"value_range must be None or two finite numbers (low, high) with low < high, got {value_range!r}"
    if isinstance(value_range, (str, bytes)):
        raise InputError(want)
    arr = inputs.as_array(value_range, "value_range", np.float64)
    if arr.shape != (2,) or not np.isfinite(arr).all() or not arr[0] < arr[1]:
        raise InputError(want)
    return float(arr[0]), float(arr[1])


def draw_mixture(logits: np.ndarray, offsets: np.ndarray, log_sigma: np.ndarray, centers: np.ndarray,
                 rng: np.random.Generator, temperature: float) -> np.ndarray:
    """One unclipped float64 draw per query from raw mixture arrays, unchecked: the body of Distribution.sample,
    which samplers call directly once per drawn position (building a checked Distribution costs more than the
    draw). Same random numbers, in the same order, as Distribution.sample.

    A component is drawn with probability q_b^(1/temperature) / Σ q^(1/temperature), by inverse CDF over
    unnormalised weights exp((logit_b − max) / temperature): relative to the mode, so a tiny temperature leaves the
    mode at weight 1 instead of 0/0. Few numpy calls on purpose: the cached sampler calls this once per drawn
    position, and the draw cost a third of a step graph call before it was trimmed."""
    lg = np.asarray(logits, np.float64)
    bins = lg.shape[-1]
    with np.errstate(over="ignore"):
        cum = np.cumsum(np.exp((lg - lg.max(-1, keepdims=True)) / temperature), -1)
    u = rng.random(lg.shape[:-1] + (1,)) * cum[..., -1:]
    b = np.minimum((u > cum).sum(-1), bins - 1)
    flat = (b + bins * np.arange(b.size).reshape(b.shape)).ravel()  # each query's chosen component, flat
    val_dim = np.shape(centers)[-1]
    mu = (np.asarray(centers, np.float64)[b] + np.asarray(offsets).reshape(-1, val_dim)[flat].reshape(
        *b.shape, val_dim))
    sigma = np.exp(np.asarray(log_sigma, np.float64).reshape(-1)[flat].reshape(*b.shape, 1))
    with np.errstate(over="ignore"):
        return mu + temperature * sigma * rng.standard_normal(mu.shape)


class Distribution:
    """Value distributions for a batch of queries: arrays [..., bins] and [..., bins, val_dim]."""

    def __init__(self, logits: np.ndarray, offsets: np.ndarray, log_sigma: np.ndarray, centers: np.ndarray,
                 value_range: tuple[float, float] | None = None):
        self.logits = np.asarray(logits, np.float64)
        self.offsets = np.asarray(offsets, np.float64)
        self.log_sigma = np.asarray(log_sigma, np.float64)
        self.centers = np.asarray(centers, np.float64)  # [bins, val_dim]
        self.value_range = _value_range(value_range)
        self._check_shapes()

    def _check_shapes(self) -> None:
        """Refuse arrays that do not form one mixture per query (bins and val_dim must agree)."""
        c, lg = self.centers, self.logits
        want = "logits [..., bins], offsets [..., bins, val_dim], log_sigma [..., bins], centers [bins, val_dim]"
        if (c.ndim != 2 or lg.ndim < 1 or lg.shape[-1] != c.shape[0] or self.log_sigma.shape != lg.shape
                or self.offsets.shape != lg.shape + c.shape[1:]):
            raise InputError(f"Distribution arrays do not fit: logits {lg.shape}, offsets {self.offsets.shape}, "
                             f"log_sigma {self.log_sigma.shape}, centers {c.shape}; expected {want}")

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
        """Σ_b q_b (c_b + μ_b) (paper Eq. 2), [..., val_dim]; clipped to value_range where known."""
        return self._clip(self._mixture_mean())

    def _mixture_mean(self) -> np.ndarray:
        """The mixture's mean before clipping (what the variance is taken around)."""
        return np.einsum("...b,...bv->...v", self.probs, self.component_means)

    def _clip(self, v: np.ndarray) -> np.ndarray:
        """v clipped to the value range; without one, only to finite float64 (huge temperatures overflow)."""
        if self.value_range is None:
            big = np.finfo(np.float64).max
            return np.clip(v, -big, big)
        return np.clip(v, *self.value_range)

    def _values(self, v, what: str) -> np.ndarray:
        """Values as float64 [..., val_dim] that broadcast against the batch shape (see the module docstring)."""
        arr = inputs.as_array(v, f"{what} values", np.float64)
        inputs.check_finite(arr, f"{what} values")
        d = self.val_dim
        with_axis = arr if arr.ndim and arr.shape[-1] == d else None
        without = arr[..., None] if d == 1 else None
        if with_axis is not None and without is not None and _broadcast(arr.shape[:-1], self.shape) != self.shape \
                and _broadcast(arr.shape, self.shape) == self.shape:
            with_axis = None  # e.g. values [B, 1] for a [B, 1] batch: one value per query, not [B] x [B, 1]
        out = with_axis if with_axis is not None else without
        if out is None or _broadcast(out.shape[:-1], self.shape) is None:
            raise InputError(f"{what} values of shape {arr.shape} do not fit this distribution of shape {self.shape} "
                             f"and val_dim {d}: expected [..., {d}] broadcasting against {self.shape}"
                             + (" (or without the last axis)" if d == 1 else ""))
        return out

    def variance(self) -> np.ndarray:
        """Per-dimension variance of the mixture, [..., val_dim]."""
        q, m = self.probs, self.component_means
        second = np.einsum("...b,...bv->...v", q, m**2 + self.sigmas[..., None] ** 2)
        return np.maximum(second - self._mixture_mean() ** 2, 0.0)

    def log_prob(self, v: np.ndarray) -> np.ndarray:
        """Natural-log mixture density of values v [..., val_dim] (summed over val_dim), [...]."""
        v = self._values(v, "log_prob")
        d = self.val_dim
        with np.errstate(over="ignore"):  # values far outside the range: density 0, log_prob -inf
            r2 = np.sum((v[..., None, :] - self.component_means) ** 2, -1)
            comp = -0.5 * r2 / self.sigmas**2 - d * self.log_sigma - 0.5 * d * math.log(2 * math.pi)
        return _logsumexp(self.log_probs + comp)

    def cdf(self, v: np.ndarray) -> np.ndarray:
        """P(value <= v) for scalar values (val_dim 1); v broadcasts against the batch shape."""
        if self.val_dim != 1:
            raise InputError(f"cdf is defined for scalar values; this model has val_dim {self.val_dim}")
        v = self._values(v, "cdf")
        with np.errstate(over="ignore"):  # far-out values: z = ±inf, cdf 0 or 1
            z = (v - self.component_means[..., 0]) / (self.sigmas * math.sqrt(2))
        return np.sum(self.probs * 0.5 * (1 + _erf(z)), -1)

    def sample(self, rng: np.random.Generator | int | None = None, temperature: float = 1.0) -> np.ndarray:
        """One draw per query, [..., val_dim]: b ~ q^(1/T) (renormalised), then c_b + μ_b + T·σ_b·ε.

        temperature 1 draws from the model; below 1 sharpens (0 is not allowed: use mean()); it must be
        finite. rng: a numpy Generator, a seed >= 0 or None. Draws are clipped to value_range where known.
        """
        temperature = inputs.positive_float(temperature, "temperature")
        rng = np.random.default_rng(inputs.seed(rng, "rng"))
        return self._clip(draw_mixture(self.logits, self.offsets, self.log_sigma, self.centers, rng, temperature))

    def __getitem__(self, idx) -> "Distribution":
        try:
            parts = self.logits[idx], self.offsets[idx], self.log_sigma[idx]
        except (IndexError, TypeError, ValueError) as e:
            raise InputError(f"cannot index a Distribution of shape {self.shape} with {idx!r}: {e}") from None
        if parts[0].ndim == 0 or parts[0].shape[-1] != self.centers.shape[0]:
            raise InputError(f"index {idx!r} reaches into the bins; index the batch shape {self.shape} only")
        return Distribution(*parts, self.centers, self.value_range)

    def __repr__(self) -> str:
        return f"Distribution(shape={self.shape}, bins={self.centers.shape[0]}, val_dim={self.val_dim})"
