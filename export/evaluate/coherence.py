"""How coherent sampled images are: total variation and isolated pixels, against the truth and independent draws.

A user found the runtime's samples "speckled": barely more coherent than drawing every pixel on its own from
the model's per-pixel law. The spread and MSE of export.evaluate.images.sample_stats cannot show that (an
independent draw has the same per-pixel spread), so the image and video protocols also report, per |S|, two
measures of local structure over the whole image (every pixel, observed ones included):

- total_variation: the mean distance between 4-neighbours (horizontal and vertical pairs; the L2 norm over
  channels of the difference), per image. Speckle raises it far above the truth's.
- isolated_fraction: the share of pixels farther than a threshold from every neighbour they have, per image.
  A natural image has few; independent draws many.

Each is measured on three sets of images given the same S: the model's samples (observed pixels pasted, as
drawn), the ground truth, and "independent draws" (independent_draws: every unobserved pixel drawn on its own
from p(v | S), the observed ones as in the truth), with the ratios samples / truth and independent / truth.
Videos are measured frame by frame (shape (T, H, W): neighbours within a frame only).
"""
from __future__ import annotations

import numpy as np

import pt_plugin
from export.evaluate.images import unobserved_mask

ISOLATED_THRESHOLD = 0.3  # values in [0, 1]: a pixel this far from every neighbour is a speck
INDEPENDENT_STREAM = 7919  # offsets the independent draws' seeds from every other stream of the protocols


def _grid(images: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """images [..., D, C] (or [..., D], one channel) as [..., *shape, C] float64, D = prod(shape) in array order."""
    a = np.asarray(images, np.float64)
    if a.shape[-1] != int(np.prod(shape)):  # [..., D, C]
        return a.reshape(a.shape[:-2] + tuple(shape) + a.shape[-1:])
    return a.reshape(a.shape[:-1] + tuple(shape) + (1,))


def _pair_distances(grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """L2 distances over channels between horizontal ([..., H, W-1]) and vertical ([..., H-1, W]) neighbours of
    grid [..., H, W, C]; leading axes (images, frames) are never neighbours."""
    horizontal = np.linalg.norm(np.diff(grid, axis=-2), axis=-1)
    vertical = np.linalg.norm(np.diff(grid, axis=-3), axis=-1)
    return horizontal, vertical


def total_variation(images: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Mean distance between 4-neighbours per image: images [..., D, C] (or [..., D]) flattened in array order
    over shape (H, W), or (T, H, W) for video frames (pairs within a frame only, every frame's pairs averaged:
    the mean of the frames' own). Distance: |difference|, the L2 norm over channels for colour. Returns [...];
    an image without pairs (1×1) gives 0."""
    horizontal, vertical = _pair_distances(_grid(images, shape))
    axes = tuple(range(-len(shape), 0))
    pairs = int(np.prod(horizontal.shape[-len(shape):])) + int(np.prod(vertical.shape[-len(shape):]))
    total = horizontal.sum(axes) + vertical.sum(axes)
    return total / pairs if pairs else np.zeros_like(total)


def isolated_fraction(images: np.ndarray, shape: tuple[int, ...],
                      threshold: float = ISOLATED_THRESHOLD) -> np.ndarray:
    """Share of pixels farther than threshold (L2 over channels) from every 4-neighbour they have (at the border
    only the existing ones; a pixel with no neighbour, in a 1×1 image, is not isolated), per image [...] of images
    [..., D, C] (or [..., D]) over shape (H, W), or (T, H, W): per frame, the frames averaged."""
    horizontal, vertical = _pair_distances(_grid(images, shape))
    h, w = shape[-2:]
    near_h, near_v = horizontal <= threshold, vertical <= threshold
    close = np.zeros(horizontal.shape[:-1] + (w,), bool)  # [..., H, W]: some neighbour within the threshold
    close[..., :, 1:] |= near_h   # the left neighbour
    close[..., :, :-1] |= near_h  # the right one
    close[..., 1:, :] |= near_v   # the one above
    close[..., :-1, :] |= near_v  # the one below
    isolated = ~close if h * w > 1 else np.zeros_like(close)
    per_frame = isolated.mean((-2, -1))
    return per_frame.mean(-1) if len(shape) == 3 else per_frame


def independent_draws(model: pt_plugin.Model, images: np.ndarray, idx: np.ndarray, num_samples: int,
                      seed: int) -> np.ndarray:
    """[n, num_samples, D, C] images whose unobserved pixels are drawn independently from the model's per-pixel
    law given the pixels idx [n, k] of images [n, D, C] (Model.query(S, queries).sample, clipped to the value
    range), the observed pixels as in images. Own random stream per (seed, |S|, image): nothing else moves."""
    n, d, c = images.shape
    grid = pt_plugin.grid_positions(*model.grid)
    free = unobserved_mask(idx, d)
    out = np.repeat(np.asarray(images, np.float64)[:, None], num_samples, 1)
    low, high = model.value_range if model.value_range is not None else (-np.inf, np.inf)
    for i, (img, obs) in enumerate(zip(images, idx)):
        if not free[i].any():
            continue
        rng = np.random.default_rng([seed + INDEPENDENT_STREAM, idx.shape[1], i])  # (seed, |S|, image)
        dist = model.query((grid[obs], img[obs]), grid[free[i]])
        for s in range(num_samples):
            out[i, s][free[i]] = np.clip(dist.sample(rng), low, high)
    return out


def _measure(fn, samples: np.ndarray, truth: np.ndarray, independent: np.ndarray,
             shape: tuple[int, ...]) -> dict[str, float | None]:
    """One measure's means over images (and draws) of the three sets, and the ratios to the truth's."""
    s, t, i = (float(fn(x, shape).mean()) for x in (samples, truth, independent))
    return {"samples": s, "truth": t, "independent": i, "samples_over_truth": s / t if t > 0 else None,
            "independent_over_truth": i / t if t > 0 else None}


def coherence_stats(samples: np.ndarray, truth: np.ndarray, independent: np.ndarray,
                    shape: tuple[int, ...]) -> dict:
    """The report's coherence entry of one |S|: {"tv": …, "isolated": …}, each with the mean over images and draws
    of the samples [n, S, D(, C)], the truth [n, D(, C)] and the independent draws [n, S, D(, C)], and the ratios
    samples / truth and independent / truth (None where the truth's is 0)."""
    return {"tv": _measure(total_variation, samples, truth, independent, shape),
            "isolated": _measure(isolated_fraction, samples, truth, independent, shape),
            "threshold": ISOLATED_THRESHOLD}


def coherence(model: pt_plugin.Model, samples: np.ndarray, images: np.ndarray, idx: np.ndarray,
              seed: int) -> dict:
    """coherence_stats of the model's samples [n, S, D, C] of images [n, D, C] given the pixels idx [n, k], with
    independent draws of as many images per set (independent_draws), over the model's grid."""
    independent = independent_draws(model, images, idx, samples.shape[1], seed)
    return coherence_stats(samples, images, independent, tuple(model.grid))


def coherence_log(s: dict) -> str:
    """A progress line's part for one |S|'s samples entry: TV and isolated fraction, samples / truth / independent."""
    c = s.get("coherence")
    if not c:
        return ""
    return "; ".join(f"{name} samples/truth/independent " + "/".join(f"{c[k][w]:.3f}" for w in
                                                                      ("samples", "truth", "independent"))
                     for name, k in (("TV", "tv"), ("isolated", "isolated")))
