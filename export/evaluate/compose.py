"""Pictures of RGB predictions: rows of image panels (paper Fig. 4) and compositions of two images (Fig. 5).

A composition observes |S| seeded pixels, those of the left (or top) half taken from image A and the
rest from image B, and shows the model's mean and hybrid autoregressive samples of the whole image.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from export.datasets.images import pixel_centers
from export.evaluate.images import ar_sample, model_predict, observed_indices, paste
from export.model import PixelTransformer

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
        raise ValueError(f"split must be 'left-right' or 'top-bottom', got {split!r}")
    return ((xx < w / 2) if split == "left-right" else (yy < h / 2)).ravel()


def composition(model: PixelTransformer, a: np.ndarray, b: np.ndarray, h: int, w: int, size: int = 256,
                samples: int = 3, split: str = "left-right", ar_frac: float = 0.05, seed: int = 0,
                gen: torch.Generator | None = None) -> dict[str, np.ndarray]:
    """Observe `size` seeded pixels of the composite (A on one half, B on the other); the model's mean
    (observed pixels pasted) and samples [samples, D, 3]."""
    comp = np.where(half_mask(h, w, split)[:, None], a, b).astype(np.float32)[None]  # [1, D, 3]
    idx = observed_indices(1, h * w, size, seed)
    centers = torch.from_numpy(pixel_centers(h, w))
    mean, _ = model_predict(model, comp, idx, centers, 1)
    gen = gen or torch.Generator().manual_seed(seed)
    smp = ar_sample(model, comp, idx, centers, samples, ar_frac, gen)[0] if samples else np.zeros((0, h * w, 3))
    return {"composite": comp[0], "idx": idx[0], "mean": paste(mean, comp, idx)[0], "samples": smp}


def write_composition(model: PixelTransformer, images: np.ndarray, pairs: list[tuple[int, int]], h: int, w: int,
                      path: Path, size: int = 256, samples: int = 3, split: str = "left-right",
                      ar_frac: float = 0.05, seed: int = 0) -> list[dict]:
    """composition.png: per pair (i, j) of images [n, D, 3], A | B | S | mean | samples. Returns the compositions."""
    gen = torch.Generator().manual_seed(seed)
    rows, out = [], []
    for i, j in pairs:
        c = composition(model, images[i], images[j], h, w, size, samples, split, ar_frac, seed, gen)
        rows.append((f"{i} + {j}", [images[i], images[j], observed_picture(c["composite"], c["idx"], h, w),
                                    c["mean"]] + list(c["samples"])))
        out.append(c)
    halves = ("left", "right") if split == "left-right" else ("top", "bottom")
    titles = [f"A ({halves[0]})", f"B ({halves[1]})", f"S, |S|={size}", "mean"]
    titles += [f"sample {k + 1}" for k in range(samples)]
    plot_rows(rows, titles, h, w, path)
    return out
