"""Moving Fashion-MNIST clips (issue 15, paper §6.3): videos as 3-D signals over (x, y, t).

A clip is 8 frames of 32×32 on black: one garment, area-resized to 20×20, starts at a uniform
position in the frame and moves with a velocity uniform in [-2, 2] px/frame per axis, bouncing off
the edges (its top-left corner stays in [0, 12]; rendered at whole pixels). Training clips use
training garments, evaluation clips test garments, from disjoint seed streams. Values at continuous
(x, y, t) are trilinear (align_corners=False on every axis, t too), as images use bilinear.

NEIGHBOUR_SHARE of the training queries sit next to a sample of S (its position plus half a voxel of
Gaussian noise per axis), as for shapes: among 8,192 voxels a query rarely meets a sample, and a model
trained without such neighbours learnt almost nothing from S (export.tools.diagnose gain 0.00 nats after 500
steps, 0.17 after 7,600).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from export.datasets.base import FASHION_DIR, Dataset, SignalDraw, TrainingData
from export.datasets.curves import seed_sequence
from export.datasets.images import idx_available, load_idx_images, log_uniform_int, positions_near

if TYPE_CHECKING:
    from export.config import Config

FRAMES, SIZE, GARMENT = 8, 32, 20
MAX_SPEED = 2.0
NEIGHBOUR_SHARE = 0.25  # training queries placed next to a sample of S
NEIGHBOUR_STD = np.array([1 / SIZE, 1 / SIZE, 1 / FRAMES], np.float32)  # half a voxel per axis (x, y, t)


def shrink(garments: np.ndarray) -> np.ndarray:
    """[N, 28, 28(, 1)] -> [N, 20, 20] by area averaging (PIL's box filter)."""
    from PIL import Image

    g = garments[..., 0] if garments.ndim == 4 else garments
    return np.stack([np.asarray(Image.fromarray(x.astype(np.float32), mode="F").resize((GARMENT, GARMENT),
                                                                                         Image.BOX)) for x in g])


def trajectory(rng: np.random.Generator) -> np.ndarray:
    """[FRAMES, 2] top-left corners (row, col): uniform start, uniform velocity, bouncing in [0, SIZE - GARMENT]."""
    span = SIZE - GARMENT
    p, v = rng.uniform(0, span, 2), rng.uniform(-MAX_SPEED, MAX_SPEED, 2)
    out = np.empty((FRAMES, 2))
    for t in range(FRAMES):
        out[t] = p
        p = p + v
        for a in range(2):  # reflect off the edges
            if p[a] < 0:
                p[a], v[a] = -p[a], -v[a]
            elif p[a] > span:
                p[a], v[a] = 2 * span - p[a], -v[a]
    return out


def render(garment: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """A clip [FRAMES, SIZE, SIZE, 1] of one 20×20 garment at whole-pixel corners."""
    clip = np.zeros((FRAMES, SIZE, SIZE, 1), np.float32)
    for t, (r, c) in enumerate(np.rint(corners).astype(int)):
        clip[t, r:r + GARMENT, c:c + GARMENT, 0] = garment
    return clip


def make_clips(garments: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n clips [n, FRAMES, SIZE, SIZE, 1] of random garments from a [N, 20, 20] pool."""
    pick = rng.integers(len(garments), size=n)
    return np.stack([render(garments[i], trajectory(rng)) for i in pick])


def evaluation_clips(n: int, seed: int = 0, data_dir: str = FASHION_DIR) -> np.ndarray:
    """n evaluation clips from test garments (the eval seed stream)."""
    rng = np.random.default_rng(seed_sequence("eval", 15, seed))
    garments = shrink(load_idx_images(data_dir, "test"))
    return make_clips(garments, n, rng)


def trilinear(clips: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Values [N, P, C] of clips [N, T, H, W, C] at positions [N, P, 3] = (x, y, t) in [-1, 1]."""
    grid = positions[:, None, None]  # [N, 1, 1, P, 3]
    out = F.grid_sample(clips.permute(0, 4, 1, 2, 3), grid, mode="bilinear", align_corners=False,
                        padding_mode="border")
    return out[:, :, 0, 0, :].transpose(1, 2)


def random_positions(n: int, p: int, snap_fraction: float, g: torch.Generator) -> torch.Tensor:
    """[n, p, 3] uniform positions, a share snapped to voxel centres."""
    pos = torch.rand(n, p, 3, generator=g) * 2 - 1
    size = torch.tensor([SIZE, SIZE, FRAMES], dtype=torch.float32)
    snapped = (torch.floor((pos + 1) / 2 * size).clamp(max=size - 1) + 0.5) / size * 2 - 1
    return torch.where(torch.rand(n, p, 1, generator=g) < snap_fraction, snapped, pos)


class ClipSampler:
    """Training batches (S positions, S values, S mask, Q positions, Q values) of fresh clips, [B, ·, 3 | 1]."""

    def __init__(self, garments: np.ndarray, min_samples: int, max_samples: int, num_queries: int, batch_size: int,
                 seed: np.random.SeedSequence, snap_fraction: float = 0.5, max_set_tokens: int = 0,
                 neighbour_share: float = NEIGHBOUR_SHARE):
        self.garments, self.kmin, self.kmax = garments, min_samples, max_samples
        self.nq, self.bs = num_queries, batch_size
        self.snap, self.max_tokens, self.neighbours = snap_fraction, max_set_tokens, neighbour_share
        self.rng = np.random.default_rng(seed)
        self.g = torch.Generator().manual_seed(int(self.rng.integers(2**62)))

    def batch(self):
        k = log_uniform_int(self.kmin, self.kmax, self.g)
        bs = min(self.bs, max(1, self.max_tokens // k)) if self.max_tokens else self.bs
        clips = torch.from_numpy(make_clips(self.garments, bs, self.rng))
        spos, qpos = random_positions(bs, k, self.snap, self.g), random_positions(bs, self.nq, self.snap, self.g)
        m = int(self.rng.binomial(self.nq, self.neighbours))  # the first m queries: next to a sample of S
        if m:
            qpos[:, :m] = torch.from_numpy(positions_near(spos.numpy(), m, NEIGHBOUR_STD, self.rng).astype(np.float32))
        mask = torch.ones(bs, k, dtype=torch.bool)
        return spos, trilinear(clips, spos), mask, qpos, trilinear(clips, qpos)


# --------------------------------------------------------------------------- registry entries

def clip_training(cfg: Config, rank: int) -> TrainingData:
    """Fresh clips of the training garments at every step (the last val_images garments held out)."""
    tc = cfg.train
    garments = shrink(load_idx_images(tc.data_dir, "train"))
    val_g, train_g = garments[-tc.val_images:], garments[:-tc.val_images]
    if tc.limit:
        train_g = train_g[:tc.limit]

    def clip_sampler(step: int) -> ClipSampler:
        return ClipSampler(train_g, tc.min_samples, tc.max_samples, tc.num_queries, tc.batch_size,
                           seed_sequence("train", tc.seed, rank, step), tc.snap_fraction, tc.max_set_tokens)
    val = ClipSampler(val_g, tc.min_samples, tc.max_samples, tc.num_queries, 16, seed_sequence("val"),
                      tc.snap_fraction, neighbour_share=0.0)  # validation queries as evaluation draws them
    return TrainingData(clip_sampler, [val.batch() for _ in range(8)], f"{tc.data} clips of {len(train_g)} garments")


def clip_demo(spec: str, data_dir: str, seed: int) -> dict[str, np.ndarray]:
    """One evaluation clip (test garments) as the demo's truth."""
    return {"truth": evaluation_clips(1, seed, data_dir or FASHION_DIR)[0]}


def clip_draws(spec: str, data_dir: str, split: str) -> SignalDraw:
    """Sets of clips of the split's garments, positions drawn as training draws them (half on voxel centres)."""
    garments = shrink(load_idx_images(data_dir or FASHION_DIR, "train" if split == "train" else "test"))

    def draw(meta: dict, n: int, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        g = torch.Generator().manual_seed(int(rng.integers(2**31)))
        clips = torch.from_numpy(make_clips(garments, n, rng))
        pos = random_positions(n, k, 0.5, g)
        return pos.numpy(), trilinear(clips, pos).numpy().astype(np.float32)
    return draw


DATASETS = (Dataset("moving-fashion", "video", "8×32×32 clips of a Fashion-MNIST garment bouncing on black",
                    (3, 1), clip_training, clip_demo, clip_draws,
                    lambda spec, data_dir: idx_available("fashion-mnist", data_dir or FASHION_DIR)),)
