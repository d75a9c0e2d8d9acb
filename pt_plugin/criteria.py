"""Acquisition criteria: how much observing a position is worth, scored from its value law p(v | S).

Larger is better for every criterion. "variance": the predictive variance summed over channels;
"entropy": the value law's differential entropy in nats (pt_plugin.entropy: quadrature for scalar
values, seeded Monte Carlo for vectors); "improvement": expected improvement E[max(v − best, 0)]
over the best value observed so far (scalar values, maximisation); "random": a seeded baseline
that looks at no value law (pt_plugin.acquisition ranks by uniform keys).
"""
from __future__ import annotations

import math

import numpy as np

from .distribution import Distribution, _erf
from .entropy import mixture_entropy
from .errors import InputError

CRITERIA = ("variance", "entropy", "improvement", "random")


def check(criterion, val_dim: int | None = None) -> str:
    """The criterion's name, or an InputError naming the ones there are (and, given val_dim, refusing
    "improvement" for vector values)."""
    if not isinstance(criterion, str) or criterion not in CRITERIA:
        raise InputError(f"unknown criterion {criterion!r}; expected one of {', '.join(map(repr, CRITERIA))}")
    if criterion == "improvement" and val_dim is not None and val_dim != 1:
        raise InputError(f"criterion 'improvement' (expected improvement over the best value) needs scalar values; "
                         f"this model has val_dim {val_dim}: use 'variance' or 'entropy'")
    return criterion


def score(criterion: str, dist: Distribution, best: float | None = None) -> np.ndarray:
    """The criterion at every query of dist, shape dist.shape (float64)."""
    if criterion == "variance":
        return dist.variance().sum(-1)
    if criterion == "entropy":
        return mixture_entropy(dist)
    if criterion == "improvement":
        return expected_improvement(dist, best)
    raise InputError(f"criterion {criterion!r} scores no value law")


def expected_improvement(dist: Distribution, best: float) -> np.ndarray:
    """E[max(v − best, 0)] under the mixture (scalar values), in closed form per component:
    Σ_b q_b [(m_b − best) Φ(z_b) + σ_b φ(z_b)] with z_b = (m_b − best)/σ_b."""
    m, s = dist.component_means[..., 0], dist.sigmas
    gap = m - best
    z = gap / s
    cdf = 0.5 * (1 + _erf(z / math.sqrt(2)))
    pdf = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return np.maximum(np.sum(dist.probs * (gap * cdf + s * pdf), -1), 0.0)
