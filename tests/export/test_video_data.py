"""export.datasets.video: training clips' sets and queries, neighbour queries next to S."""
import numpy as np
import torch

from export.datasets.video import NEIGHBOUR_STD, ClipSampler


def garments() -> np.ndarray:
    return np.random.default_rng(0).random((5, 20, 20)).astype(np.float32)


def sampler(share: float) -> ClipSampler:
    return ClipSampler(garments(), 64, 64, 200, 4, np.random.SeedSequence(1), neighbour_share=share)


def nearest_sample_distance(spos: torch.Tensor, qpos: torch.Tensor) -> torch.Tensor:
    """[B, Q] distance of each query to its nearest sample, in voxels."""
    scale = torch.from_numpy(1 / NEIGHBOUR_STD / 2)  # voxels per unit of position
    return torch.cdist(qpos * scale, spos * scale).min(-1).values


def test_neighbour_queries_sit_next_to_samples():
    spos, sval, mask, qpos, qval = sampler(1.0).batch()
    assert spos.shape == (4, 64, 3) and qpos.shape == (4, 200, 3) and qval.shape == (4, 200, 1)
    assert float(qpos.abs().max()) <= 1.0
    d = nearest_sample_distance(spos, qpos)
    assert float(d.median()) < 1.0  # half a voxel of noise per axis: mostly within a voxel


def test_no_neighbours_without_a_share():
    spos, _, _, qpos, _ = sampler(0.0).batch()
    near = nearest_sample_distance(spos, qpos)
    spos1, _, _, qpos1, _ = sampler(1.0).batch()
    assert float(near.median()) > 2 * float(nearest_sample_distance(spos1, qpos1).median())
