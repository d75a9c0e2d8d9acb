"""Differential entropy (nats) of PixelTransformer's value law, Σ_b q_b N(c_b + μ_b, σ_b² I), per query.

A Gaussian mixture's entropy has no closed form, so it is computed numerically, written as
H = −Σ_b q_b E_{v ~ N_b}[log p(v)]:
- Scalar values (val_dim 1): Gauss–Hermite quadrature with GH_NODES nodes per component. log p at a
  node sums the component's WINDOW nearest neighbours on each side in order of their means; a bound on
  the density of the components left out (their means lie beyond the window's edge, their σ is at most
  the largest of them) gives each row an error bound, and a row whose bound exceeds WINDOW_TOLERANCE
  nats is summed over every component instead. Measured against an 8,001-point trapezoid rule on the
  784 value laws of a Fashion-MNIST image given 16 pixels: max |error| 0.004 nats, median 3e-5 (entropies
  run from −5.5 to −0.2; the weights before the buffer fine-tune: max 0.003); tests/runtime/test_acquisition.py
  checks it.
- Vector values (val_dim > 1): Monte Carlo, MC_DRAWS draws per query from a fixed seed, the components
  chosen by systematic sampling (stratified uniforms through the cumulative weights) and the same
  random numbers for every query. Against 8,192 i.i.d. draws on 256 value laws of the emoji model
  given 64 pixels of its demo picture (512 bins, entropies from −16 to −4.5 nats): median |error|
  0.05 nats, max 0.23 (64 i.i.d. draws: 0.17 and 1.7). Far slower than the scalar rule: every draw
  sums all components.
"""
from __future__ import annotations

import math

import numpy as np

from .distribution import Distribution

GH_NODES = 8              # Gauss–Hermite nodes per component: exact for log p polynomial up to degree 15
WINDOW = 4                # neighbours on each side (in mean order) whose density is summed at each node
WINDOW_TOLERANCE = 1e-4   # nats: rows whose left-out-density bound exceeds this are summed over all components
MC_DRAWS = 128            # Monte Carlo draws per query for vector values
MC_SEED = 0
ROW_BUDGET = 1 << 22      # floats of one intermediate array: rows are processed in chunks of this size
LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def mixture_entropy(dist: Distribution) -> np.ndarray:
    """Differential entropy in nats of every value law of dist, shape dist.shape (see the module docstring)."""
    q = dist.probs.reshape(-1, dist.probs.shape[-1])
    m = dist.component_means.reshape(q.shape + (dist.val_dim,))
    s = dist.sigmas.reshape(q.shape)
    if dist.val_dim == 1:
        out = scalar_entropy(q, m[..., 0], s)
    else:
        out = monte_carlo_entropy(q, m, s)[0]
    return out.reshape(dist.shape)


def _chunks(rows: int, per_row: int):
    """Slices of rows holding about ROW_BUDGET floats of per_row each (at least one row)."""
    step = max(1, ROW_BUDGET // max(per_row, 1))
    for start in range(0, rows, step):
        yield slice(start, min(rows, start + step))


# -- scalar values: Gauss–Hermite ---------------------------------------------------------------
def scalar_entropy(q: np.ndarray, m: np.ndarray, s: np.ndarray, nodes: int = GH_NODES,
                   window: int = WINDOW) -> np.ndarray:
    """Entropies [N] of N scalar mixtures (weights q, means m, standard deviations s: [N, B])."""
    t, w = np.polynomial.hermite.hermgauss(nodes)
    t, w = math.sqrt(2) * t, w / math.sqrt(math.pi)  # E_{N(0,1)}[f] ≈ Σ w f(t)
    order = np.argsort(m, -1, kind="stable")
    q, m, s = (np.take_along_axis(a, order, -1) for a in (q, m, s))
    bins = q.shape[-1]
    if 2 * window + 1 >= bins:
        return _full_chunks(q, m, s, t, w)
    out = np.empty(len(q))
    for rows in _chunks(len(q), bins * nodes * (2 * window + 1)):
        h, bound = _window_rows(q[rows], m[rows], s[rows], t, w, window)
        redo = np.flatnonzero(bound > WINDOW_TOLERANCE)
        if len(redo):
            sub = np.arange(rows.start, rows.stop)[redo]
            h[redo] = _full_chunks(q[sub], m[sub], s[sub], t, w)
        out[rows] = h
    return out


def _full_chunks(q, m, s, t, w) -> np.ndarray:
    """_full_rows in chunks of rows whose intermediates stay within ROW_BUDGET floats."""
    out = np.empty(len(q))
    for rows in _chunks(len(q), q.shape[-1] * len(t) * q.shape[-1]):
        out[rows] = _full_rows(q[rows], m[rows], s[rows], t, w)
    return out


def _expect(q: np.ndarray, logp: np.ndarray, w: np.ndarray) -> np.ndarray:
    """−Σ_b q_b Σ_i w_i log p(node_bi), for logp [N, B, nodes]."""
    return -np.einsum("nb,nbi,i->n", q, logp, w)


def _nodes(m: np.ndarray, s: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Quadrature nodes [N, B, nodes] of every component."""
    return m[..., None] + s[..., None] * t


def _density(v: np.ndarray, q: np.ndarray, m: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Σ_j q_j N(v; m_j, s_j²) for v [..., nodes] against components [..., J] -> [..., nodes]."""
    z = (v[..., :, None] - m[..., None, :]) / s[..., None, :]
    return np.einsum("...ij,...j->...i", np.exp(-0.5 * z * z), q / s) * math.exp(-LOG_SQRT_2PI)


def _full_rows(q, m, s, t, w) -> np.ndarray:
    """Entropies with log p summed over every component (exact up to quadrature)."""
    v = _nodes(m, s, t)                                                    # [N, B, nodes]
    p = _density(v, q[:, None, :], m[:, None, :], s[:, None, :])          # [N, B, nodes]
    return _expect(q, np.log(np.maximum(p, np.finfo(float).tiny)), w)


def _window_rows(q, m, s, t, w, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Entropies with log p summed over each component's 2·window + 1 neighbours, and an error bound per row."""
    far = np.abs(m).max() + 1e6 * (s.max() + 1)  # padding components: weight 0, far away
    pad = lambda a, fill: np.pad(a, ((0, 0), (window, window)), constant_values=fill)  # noqa: E731
    qp, mp, sp = pad(q, 0.0), pad(m, far), pad(s, 1.0)
    mp[:, :window] = -far
    view = lambda a: np.lib.stride_tricks.sliding_window_view(a, 2 * window + 1, -1)  # noqa: E731  [N, B, W]
    v = _nodes(m, s, t)                                                    # [N, B, nodes]
    p = _density(v, view(qp), view(mp), view(sp))                          # [N, B, nodes]
    p = np.maximum(p, np.finfo(float).tiny)
    left_out = _left_out_bound(v, q, m, s, window)
    bound = np.einsum("nb,nbi,i->n", q, np.log1p(left_out / p), w)
    return _expect(q, np.log(p), w), bound


def _left_out_bound(v, q, m, s, window: int) -> np.ndarray:
    """An upper bound [N, B, nodes] on the density at the nodes of the components outside each window.

    The components below component b's window have means <= m[b - window - 1]; each contributes
    q_j φ(d_j/s_j)/s_j <= q_j/s_j · φ(d/s_max) with d the node's distance to that edge mean (0 when the
    node lies beyond it); likewise above the window.
    """
    bins = q.shape[1]
    a = q / s * math.exp(-LOG_SQRT_2PI)
    total = np.zeros(v.shape)
    for side in (1, -1):  # below the window, then above it (the same sums on the reversed order)
        aa, mm, ss = (x[:, ::side] for x in (a, m, s))
        cum_a = np.cumsum(aa, -1)                 # Σ over j <= i
        cum_s = np.maximum.accumulate(ss, -1)     # max σ over j <= i
        edge = np.arange(bins) - window - 1       # the last component left out below b
        ok = edge >= 0
        e = np.clip(edge, 0, None)
        amp = np.where(ok, cum_a[:, e], 0.0)[..., None]
        smax = cum_s[:, e][..., None]
        d = np.maximum(side * (v[:, ::side] - mm[:, e][..., None]), 0.0)
        part = amp * np.exp(-0.5 * (d / smax) ** 2)
        total += part if side == 1 else part[:, ::-1]
    return total


# -- vector values: Monte Carlo -----------------------------------------------------------------
def monte_carlo_entropy(q: np.ndarray, m: np.ndarray, s: np.ndarray, draws: int = MC_DRAWS,
                        seed: int = MC_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Entropies [N] of N mixtures (q, s [N, B], means m [N, B, d]) and an i.i.d.-style standard error [N]
    (conservative: stratifying the components makes the estimate less noisy than that).

    Component j of draw i is where (i + u)/draws falls in the cumulative weights (one u for all); the
    normals are shared by every row (common random numbers).
    """
    n, bins, d = m.shape
    rng = np.random.default_rng(seed)
    u, eps = (np.arange(draws) + rng.random()) / draws, rng.standard_normal((draws, d))
    h, se = np.empty(n), np.empty(n)
    for rows in _chunks(n, draws * bins * d):
        qq, mm, ss = q[rows], m[rows], s[rows]
        comp = np.minimum((u[None, :, None] > np.cumsum(qq, -1)[:, None, :]).sum(-1), bins - 1)   # [n, draws]
        mu = np.take_along_axis(mm, comp[..., None], 1)                                           # [n, draws, d]
        v = mu + np.take_along_axis(ss, comp, 1)[..., None] * eps                                 # [n, draws, d]
        r2 = ((v[:, :, None, :] - mm[:, None]) ** 2).sum(-1)                                      # [n, draws, B]
        logc = np.log(np.maximum(qq, 1e-300))[:, None] - 0.5 * r2 / ss[:, None] ** 2 \
            - d * np.log(ss)[:, None] - d * LOG_SQRT_2PI
        top = logc.max(-1, keepdims=True)
        logp = top[..., 0] + np.log(np.exp(logc - top).sum(-1))
        h[rows] = -logp.mean(-1)
        se[rows] = logp.std(-1, ddof=1) / math.sqrt(draws)
    return h, se
