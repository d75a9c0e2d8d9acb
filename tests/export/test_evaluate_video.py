"""export.evaluate.video: the baselines (space-time nearest and per-frame linear fill on clips with known answers),
the shipped graphs and the runtime's sampler behind the model's figures, the protocol end to end."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from export.datasets.video import FRAMES, SIZE
from export.errors import UsageError
from export.evaluate import video
from export.evaluate.__main__ import parser
from export.evaluate.images import model_samples, observed_indices, sample_seed, sampler_phrase
from export.evaluate.protocol import load_shipped
from export.evaluate.video import D, model_clips, nearest_spacetime, per_frame_linear, score, voxel_coords
from pt_plugin import grid_positions
from pt_plugin.sampling import DEFAULT_STEP_FRACTION


def plane_clip() -> np.ndarray:
    """A clip linear in x and y inside each frame, a different plane per frame: [1, D]."""
    t, y, x = voxel_coords().T
    return (0.01 * x + 0.02 * y + 0.05 * t)[None].astype(np.float64)


def test_nearest_keeps_observed_values_and_copies_the_closest():
    clip = plane_clip()
    idx = np.array([[0, D - 1]])  # the first voxel of frame 0, the last of the last frame
    near = nearest_spacetime(clip, idx)
    assert near[0, 0] == clip[0, 0] and near[0, D - 1] == clip[0, D - 1]
    assert near[0, 1] == clip[0, 0]  # (t 0, y 0, x 1) is next to voxel 0
    assert near[0, D - 2] == clip[0, D - 1]


def test_per_frame_linear_reproduces_a_plane_inside_the_hull():
    clip = plane_clip()
    corners = [0, SIZE - 1, SIZE * (SIZE - 1), SIZE * SIZE - 1]
    idx = np.array([[t * SIZE * SIZE + c for t in range(FRAMES) for c in corners]])
    fill = per_frame_linear(clip, idx, nearest_spacetime(clip, idx))
    np.testing.assert_allclose(fill, clip, atol=1e-12)  # each frame's four corners span the whole frame
    assert score(fill, None, clip, idx)["mse"] < 1e-20


def test_a_frame_without_samples_takes_the_spacetime_nearest():
    clip = plane_clip()
    corners = [0, SIZE - 1, SIZE * (SIZE - 1), SIZE * SIZE - 1]
    idx = np.array([[c for c in corners]])  # frame 0 only
    near = nearest_spacetime(clip, idx)
    fill = per_frame_linear(clip, idx, near)
    np.testing.assert_array_equal(fill[0, SIZE * SIZE:], near[0, SIZE * SIZE:])
    assert not np.allclose(fill[0, SIZE * SIZE:], clip[0, SIZE * SIZE:])


MOVING = Path(__file__).resolve().parents[2] / "weights" / "moving-fashion"


@pytest.fixture(scope="module")
def video_model():
    return load_shipped(MOVING, threads=1).model


def random_clips(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n clips [n, D] of 8-bit values and |S| observed voxels of each (the protocol's draw)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, D)) / 255, observed_indices(n, D, size, seed)


def test_the_video_protocol_measures_the_shipped_graphs(video_model):
    """The model's mean is Model.mean's at every voxel centre given S (centres and true values), and its NLL the
    256-level mass of the graphs' mixture (Mixture.discretized_log_prob on their outputs)."""
    from export.model import Mixture

    truth, idx = random_clips(2, 64)
    mean, logp = model_clips(video_model, truth, idx)
    grid = grid_positions(FRAMES, SIZE, SIZE)
    ctx = (grid[idx[1]], truth[1, idx[1], None])
    np.testing.assert_allclose(mean[1], video_model.mean(ctx, grid)[:, 0], atol=1e-6)
    dist = video_model.query(ctx, grid[:50])
    as_t = lambda a: torch.from_numpy(np.asarray(a, np.float64))  # noqa: E731
    want = Mixture(as_t(dist.logits), as_t(dist.offsets), as_t(dist.log_sigma), as_t(dist.centers)
                   ).discretized_log_prob(as_t(truth[1, :50, None]), 256, 0.0, 1.0).numpy()
    np.testing.assert_allclose(logp[1, :50], want, rtol=1e-6)


def test_video_samples_are_the_runtime_sampler_s(video_model):
    """The protocol's samples are Model.sample_grid's (what `pt-plugin sample` draws, the runtime's defaults): the
    observed voxels kept, every other one drawn with the same seed."""
    truth, idx = random_clips(1, 64)
    got = model_samples(video_model, truth[..., None], idx, 2, seed=3, autoregressive=300)[0, ..., 0]  # seconds
    grid = grid_positions(FRAMES, SIZE, SIZE)
    want = video_model.sample_grid(grid[idx[0]], truth[0, idx[0], None], None, 2, sample_seed(3, 64, 0),
                                   autoregressive=300)
    np.testing.assert_array_equal(got.astype(np.float32), want.reshape(2, D))
    np.testing.assert_array_equal(got[:, idx[0]], np.repeat(truth[:, idx[0]], 2, 0))


@pytest.mark.fashion
def test_evaluate_video_end_to_end(tmp_path):
    """`python -m export.evaluate weights/moving-fashion` with tiny counts: every method scored, samples of the
    first clip, the frame strip, a report that names its protocol and the graphs it measured."""
    args = parser().parse_args(["weights/moving-fashion", "--out", str(tmp_path), "--clips", "2", "--sizes",
                                "256", "--samples", "2", "--sample-images", "1", "--gauss-train", "50",
                                "--autoregressive", "300", "--threads", "1"])  # N′ 300: seconds, not minutes
    shipped = load_shipped(MOVING, threads=1)
    res = video.evaluate(shipped, args, log=lambda _: None)
    row = res["sizes"]["256"]
    assert 0 < row["model"]["nll_bits"] < 8 and 0 < row["cond_gauss"]["nll_bits"] < 8
    assert all(row[m]["mse"] > 0 for m in ("model", "cond_gauss", "nearest", "linear"))
    assert row["samples"]["samples"] == 2 and row["samples"]["std"] > 0 and row["samples"]["images"] == 1
    coh = row["samples"]["coherence"]  # frame by frame over whole clips
    assert coh["tv"]["truth"] > 0 and coh["tv"]["independent"] > 0 and 0 <= coh["isolated"]["independent"] <= 1
    st = res["settings"]
    assert st["protocol"] == "video" and st["precision"] == "fp32" and "checkpoint" not in st
    cached = shipped.model.has_cache  # the runtime's defaults: exact over cached keys and values, else re-encoding
    assert st["gauss_train"] == 50 and st["cache"] == cached
    assert st["step_fraction"] == (0.0 if cached else DEFAULT_STEP_FRACTION) and st["autoregressive"] == 300
    assert (tmp_path / "frames.png").is_file()
    assert json.loads((tmp_path / "metrics.json").read_text())["sizes"]["256"]["model"] == row["model"]
    block = video.card_blocks(res)["evaluation"]
    assert "| 256 |" in block and sampler_phrase(st, D, "voxel") in block
    assert "independent draws / truth (TV, isolated)" in block


def test_set_sizes_outside_a_clip_are_refused(tmp_path):
    args = parser().parse_args(["weights/moving-fashion", "--out", str(tmp_path), "--sizes", f"0,{D}"])
    with pytest.raises(UsageError, match=rf"--sizes \[0, {D}\] outside 1..{D - 1}"):
        video.evaluate(load_shipped(MOVING, threads=1), args, log=lambda _: None)


def test_a_video_report_is_summarised_for_model_json():
    """export.onnx.graphs --metrics on a video report keeps per |S| the model's NLL and MSE, the Gaussian's NLL and
    the best baseline's MSE (a video report has no PSNR/SSIM: the image summary would fail on it)."""
    from export.onnx.graphs import read_metrics

    path = Path(__file__).resolve().parents[2] / "docs" / "moving-fashion" / "metrics.json"
    report = json.loads(path.read_text())
    got = read_metrics(path)
    assert set(got["sizes"]) == set(report["sizes"])
    for size, r in report["sizes"].items():
        row = got["sizes"][size]
        assert row["mse"] == r["model"]["mse"] and row["nll_bits"] == r["model"]["nll_bits"]
        assert row["best_baseline_mse"] == min(r[m]["mse"] for m in ("cond_gauss", "nearest", "linear"))
