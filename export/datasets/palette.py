"""A colour palette for RGB bins: k-means++ / Lloyd on a seeded subsample of training pixels (numpy).

The centres stay in the data's own range [0, 1] (the official release kept its palette in
[-1, 1] while its data was in [0, 1]). `python -m export.tools.palette`
measures how well palettes of several sizes fit held-out pixels.
"""
from __future__ import annotations

import numpy as np

from export.errors import UsageError

CHUNK = 8192  # rows per distance block: keeps the [rows, k] matrix small for k = 512


def nearest(pixels: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest centre and the squared distance to it, for pixels [N, C] (in blocks)."""
    idx = np.empty(len(pixels), np.int64)
    d2 = np.empty(len(pixels), np.float64)
    cc = (centres ** 2).sum(1)
    for s in range(0, len(pixels), CHUNK):
        x = pixels[s:s + CHUNK]
        d = cc[None, :] - 2 * x @ centres.T  # ‖x‖² is the same for every centre: added back below
        idx[s:s + CHUNK] = d.argmin(1)
        d2[s:s + CHUNK] = np.maximum(d[np.arange(len(x)), idx[s:s + CHUNK]] + (x ** 2).sum(1), 0)
    return idx, d2


def kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: each next centre drawn with probability ∝ squared distance to the chosen ones."""
    centres = np.empty((k, x.shape[1]), x.dtype)
    centres[0] = x[rng.integers(len(x))]
    d2 = ((x - centres[0]) ** 2).sum(1)
    for i in range(1, k):
        total = d2.sum()
        j = rng.choice(len(x), p=d2 / total) if total > 0 else rng.integers(len(x))
        centres[i] = x[j]
        d2 = np.minimum(d2, ((x - centres[i]) ** 2).sum(1))
    return centres


def fit_palette(images: np.ndarray, k: int, seed: int = 0, max_pixels: int = 200_000,
                iters: int = 50, tol: float = 1e-7) -> np.ndarray:
    """k colour centres [k, C] in [0, 1] fitted to images [N, H, W, C] (or pixels [N, C]) in [0, 1].

    Deterministic for a seed: a seeded subsample of at most max_pixels pixels, k-means++ seeding,
    then Lloyd steps until the mean squared error improves by less than tol. An emptied cluster is
    moved to the pixel worst served by its centre.
    """
    x = np.asarray(images, np.float64).reshape(-1, np.shape(images)[-1])
    if k < 1 or len(x) < k:
        raise UsageError(f"need 1 <= k <= number of pixels, got k={k} for {len(x)} pixels")
    rng = np.random.default_rng(seed)
    if len(x) > max_pixels:
        x = x[np.sort(rng.choice(len(x), max_pixels, replace=False))]
    centres = kmeans_pp(x, k, rng)
    last = np.inf
    for _ in range(iters):
        idx, d2 = nearest(x, centres)
        counts = np.bincount(idx, minlength=k)
        sums = np.stack([np.bincount(idx, weights=x[:, c], minlength=k) for c in range(x.shape[1])], 1)
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled, None]
        for j, far in zip(np.flatnonzero(~filled), np.argsort(-d2)):
            centres[j] = x[far]
        err = d2.mean()
        if last - err < tol:
            break
        last = err
    return np.clip(centres, 0.0, 1.0).astype(np.float32)


def quantization_stats(pixels: np.ndarray, centres: np.ndarray, tol: float = 2 / 255) -> dict[str, float]:
    """Mean squared error of pixels [..., C] to their nearest centre (per channel) and the share of pixels
    whose nearest centre lies within tol on every channel."""
    x = np.asarray(pixels, np.float64).reshape(-1, centres.shape[1])
    c = np.asarray(centres, np.float64)
    idx, d2 = nearest(x, c)
    within = (np.abs(x - c[idx]) <= tol + 1e-9).all(1)
    return {"mse": float(d2.mean() / x.shape[1]), "within": float(within.mean())}
