"""Pictures of RGB predictions: rows of image panels (paper Fig. 4) and compositions of two images (Fig. 5).

A composition observes |S| seeded pixels, those of the left (or top) half taken from image A and the
rest from image B, and shows the shipped model's mean and the runtime sampler's images (pt_plugin).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

import pt_plugin
from export.errors import UsageError
from export.evaluate import protocol
from export.evaluate.images import model_samples, observed_indices, paste

CHECKER = (0.5, 0.62)  # the two grays of the checkerboard behind unobserved pixels


def observed_picture(image: np.ndarray, idx: np.ndarray, h: int, w: int, cell: int = 2) -> np.ndarray:
    """[H, W, 3] picture of S: the observed pixels of image [D, 3] in colour on a gray checkerboard."""
    yy, xx = np.mgrid[0:h, 0:w]
    pic = np.where((yy // cell + xx // cell) % 2 == 0, *CHECKER)[..., None].repeat(3, -1).reshape(h * w, 3)
    pic[idx] = image[idx]
    return pic.reshape(h, w, 3)


def plot_rows(rows: list[tuple[str, list[np.ndarray]]], titles: list[str], h: int, w: int, path: Path) -> None:
    """One row of [D, 3] (or [H, W, 3]) panels per (label, panels), nearest-neighbour enlarged."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = max(len(p) for _, p in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.3 * cols, 1.35 * len(rows)), squeeze=False)
    for r, (label, panels) in enumerate(rows):
        for c, ax in enumerate(axes[r]):
            if c < len(panels):
                ax.imshow(np.clip(np.asarray(panels[c]).reshape(h, w, 3), 0, 1), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.axis("on" if c < len(panels) else "off")
            if r == 0 and c < len(titles):
                ax.set_title(titles[c], fontsize=8)
        axes[r][0].set_ylabel(label, fontsize=8)
    fig.tight_layout(pad=0.3)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def half_mask(h: int, w: int, split: str = "left-right") -> np.ndarray:
    """[H·W] True on the left half (split 'left-right') or the top half ('top-bottom')."""
    yy, xx = np.mgrid[0:h, 0:w]
    if split not in ("left-right", "top-bottom"):
        raise UsageError(f"split must be 'left-right' or 'top-bottom', got {split!r}")
    return ((xx < w / 2) if split == "left-right" else (yy < h / 2)).ravel()


def composition(model: pt_plugin.Model, a: np.ndarray, b: np.ndarray, size: int = 256, samples: int = 3,
                split: str = "left-right", seed: int = 0) -> dict[str, np.ndarray]:
    """Observe `size` seeded pixels of the composite of images a, b [D, 3] (A on one half, B on the other):
    the shipped model's mean (observed pixels pasted) and samples [samples, D, 3] by the runtime's sampler."""
    h, w = model.grid
    comp = np.where(half_mask(h, w, split)[:, None], a, b).astype(np.float32)[None]  # [1, D, 3]
    idx = observed_indices(1, h * w, size, seed)
    grid = pt_plugin.grid_positions(h, w)
    mean, _ = protocol.predict(model, grid[idx], comp[:, idx[0]], grid[None])
    smp = model_samples(model, comp, idx, samples, seed)[0] if samples else np.zeros((0, h * w, 3))
    return {"composite": comp[0], "idx": idx[0], "mean": paste(mean, comp, idx)[0], "samples": smp}


def write_composition(model: pt_plugin.Model, images: np.ndarray, pairs: list[tuple[int, int]], path: Path,
                      size: int = 256, samples: int = 3, split: str = "left-right", seed: int = 0) -> list[dict]:
    """composition.png: per pair (i, j) of images [n, D, 3], A | B | S | mean | samples. Returns the compositions
    (pair k observes the pixels of seed + k)."""
    h, w = model.grid
    rows, out = [], []
    for k, (i, j) in enumerate(pairs):
        c = composition(model, images[i], images[j], size, samples, split, seed + k)
        rows.append((f"{i} + {j}", [images[i], images[j], observed_picture(c["composite"], c["idx"], h, w),
                                    c["mean"]] + list(c["samples"])))
        out.append(c)
    halves = ("left", "right") if split == "left-right" else ("top", "bottom")
    titles = [f"A ({halves[0]})", f"B ({halves[1]})", f"S, |S|={size}", "mean"]
    titles += [f"sample {k + 1}" for k in range(samples)]
    plot_rows(rows, titles, h, w, path)
    return out
