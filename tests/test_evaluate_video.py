"""export.evaluate.video baselines: space-time nearest and per-frame linear fill on clips with known answers."""
import numpy as np

from export.datasets.video import FRAMES, SIZE
from export.evaluate.video import D, nearest_spacetime, per_frame_linear, score, voxel_coords


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


def test_ar_sample_with_no_autoregressive_steps_is_the_mean():
    """N' = 0: every unobserved position takes the mean given S; N' = all: every one is a draw."""
    import torch

    from export.config import ModelConfig
    from export.evaluate.images import ar_sample, model_predict
    from export.model import PixelTransformer
    from pt_plugin import grid_positions

    torch.manual_seed(0)
    model = PixelTransformer(ModelConfig(pos_dim=2, val_dim=1, d_model=32, n_heads=2, enc_layers=1, dec_layers=1,
                                         ffn=64, num_bins=8)).eval()
    images = np.random.default_rng(0).random((2, 16)).astype(np.float32)
    idx = np.array([[0, 5, 9], [3, 4, 15]])
    centers = torch.from_numpy(grid_positions(4, 4))
    mean, _ = model_predict(model, images, idx, centers, 2)
    gen = torch.Generator().manual_seed(0)
    frozen = ar_sample(model, images, idx, centers, 2, 0.1, gen, autoregressive=0)
    for i in range(2):
        rest = np.setdiff1d(np.arange(16), idx[i])
        np.testing.assert_allclose(frozen[i, :, rest].T, np.repeat(mean[i, rest][None], 2, 0), atol=1e-5)
        np.testing.assert_array_equal(frozen[i, :, idx[i]].T, np.repeat(images[i, idx[i]][None], 2, 0))
    drawn = ar_sample(model, images, idx, centers, 2, 0.1, gen, autoregressive=16)
    assert not np.allclose(drawn[0, 0], drawn[0, 1])  # independent draws differ


def test_a_video_report_is_summarised_for_model_json():
    """export.onnx.graphs --metrics on a video report keeps per |S| the model's NLL and MSE, the Gaussian's NLL and
    the best baseline's MSE (a video report has no PSNR/SSIM: the image summary would fail on it)."""
    import json
    from pathlib import Path

    from export.onnx.graphs import read_metrics

    path = Path(__file__).resolve().parents[1] / "docs" / "moving-fashion" / "metrics.json"
    report = json.loads(path.read_text())
    got = read_metrics(path)
    assert set(got["sizes"]) == set(report["sizes"])
    for size, r in report["sizes"].items():
        row = got["sizes"][size]
        assert row["mse"] == r["model"]["mse"] and row["nll_bits"] == r["model"]["nll_bits"]
        assert row["best_baseline_mse"] == min(r[m]["mse"] for m in ("cond_gauss", "nearest", "linear"))
