"""The evaluation protocol and its baselines."""
import json
from pathlib import Path

import numpy as np

from export.evaluate.baselines import ConditionalGaussian, linear_fill, nearest_fill


def test_linear_fill_reproduces_a_plane():
    h, w = 9, 11
    ys, xs = np.mgrid[0:h, 0:w]
    plane = (0.3 * xs - 0.2 * ys + 1).ravel()
    idx = np.array([0, w - 1, (h - 1) * w, h * w - 1, 4 * w + 5, 2 * w + 7])  # corners + inner points
    np.testing.assert_allclose(linear_fill(plane[idx], idx, h, w), plane, atol=1e-9)


def test_nearest_fill_copies_the_closest_sample():
    idx = np.array([0, 15])  # (0,0) and (3,3) of a 4x4 grid
    out = nearest_fill(np.array([0.0, 1.0]), idx, 4, 4)
    assert out[1] == 0.0 and out[14] == 1.0 and out[0] == 0.0 and out[15] == 1.0


def test_conditional_gaussian_matches_direct_formula():
    rng = np.random.default_rng(0)
    x = rng.random((200, 12)) @ rng.random((12, 12))
    g = ConditionalGaussian(1e-3).fit(x)
    idx, vals = np.array([1, 4, 7]), x[0, [1, 4, 7]]
    mean, var = g.predict(idx, vals)
    cov, mu = g.cov.numpy(), g.mean.numpy()
    u = np.setdiff1d(np.arange(12), idx)
    k = cov[np.ix_(u, idx)] @ np.linalg.inv(cov[np.ix_(idx, idx)])
    np.testing.assert_allclose(mean.numpy()[u], mu[u] + k @ (vals - mu[idx]), atol=1e-8)
    np.testing.assert_allclose(var.numpy()[u], np.diag(cov[np.ix_(u, u)] - k @ cov[np.ix_(idx, u)]), atol=1e-8)
    np.testing.assert_allclose(mean.numpy()[idx], vals)


def evaluate_tiny(model, out, *argv):
    """The gray protocol through `python -m export.evaluate MODEL --out OUT ...`; returns the saved report."""
    from export.evaluate.__main__ import main

    assert main([str(model), "--out", str(out), "--threads", "1", *argv]) == 0
    return json.loads((out / "metrics.json").read_text())


def test_evaluate_writes_reports(tiny_export, tmp_path):
    saved = evaluate_tiny(tiny_export, tmp_path, "--images", "4", "--sizes", "16,784", "--samples", "2",
                          "--sample-images", "2", "--gauss-train", "1000")
    for name in ("metrics.json", "metrics.md", "metrics.png", "samples.png"):
        assert (tmp_path / name).is_file(), name
    st = saved["settings"]
    assert st["protocol"] == "gray" and st["model"] == str(tiny_export) and st["precision"] == "fp32"
    assert st["data"] == "fashion-mnist" and st["pixels"] == 784 and st["sample_images"] == 2
    r16 = saved["sizes"]["16"]
    assert r16["model"]["nll_bits"] > 0 and r16["cond_gauss"]["nll_bits"] > 0
    assert r16["linear"]["nll_bits"] is None and 0 < r16["model"]["mse"] < 1
    assert saved["sizes"]["784"]["linear"]["mse"] == 0 and "samples" not in saved["sizes"]["784"]
    assert r16["samples"]["std"] > 0 and r16["samples"]["images"] == 2 and r16["samples"]["samples"] == 2
    coh = r16["samples"]["coherence"]
    assert coh["tv"]["truth"] > 0 and coh["tv"]["independent"] > 0 and 0 <= coh["isolated"]["samples"] <= 1
    assert st["cache"] is False and st["step_fraction"] > 0  # no cache graphs: hybrid re-encoding
    md = (tmp_path / "metrics.md").read_text()
    assert "| 16 |" in md and "TV samples / truth" in md and "hybrid re-encoding" in md


def test_evaluation_measures_the_shipped_graphs(tiny_export, runtime_model, tmp_path):
    """The report's model NLL is the runtime Distribution's mass on each true pixel's 8-bit level (its own cdf),
    its mean the runtime's mean_grid, and its samples Model.sample_images with the protocol's seed."""
    import pt_plugin
    from export.datasets import FASHION_DIR
    from export.datasets.images import load_idx_images
    from export.evaluate.images import evaluation_images, model_pixels, model_samples, observed_indices, sample_seed

    saved = evaluate_tiny(tiny_export, tmp_path, "--images", "3", "--sizes", "16", "--samples", "0",
                          "--gauss-train", "500")
    imgs, which = evaluation_images(load_idx_images(FASHION_DIR, "test"), 3, 0)
    assert which.tolist() == saved["settings"]["test_indices"]
    idx = observed_indices(3, 784, 16, 0)
    grid = pt_plugin.grid_positions(28, 28)
    bits = []
    for img, obs in zip(imgs[..., 0].astype(np.float64), idx):
        free = np.setdiff1d(np.arange(784), obs)
        dist = runtime_model.query((grid[obs], img[obs, None]), grid[free])
        h, v = 1 / 255 / 2, img[free]
        upper, lower = np.where(v >= 1 - h / 2, 10.0, v + h), np.where(v <= h / 2, -10.0, v - h)
        bits.append(-np.log2(np.maximum(dist.cdf(upper) - dist.cdf(lower), 1e-12)))
    assert abs(np.concatenate(bits).mean() - saved["sizes"]["16"]["model"]["nll_bits"]) < 1e-4
    mean, _ = model_pixels(runtime_model, imgs[:1], idx[:1], 1)
    want = runtime_model.mean_grid(grid[idx[0]], imgs[0, idx[0]]).reshape(1, 784, 1)
    np.testing.assert_allclose(mean, want, atol=1e-6)
    drawn = model_samples(runtime_model, imgs[:1], idx[:1], 2, 5)[0]
    users = runtime_model.sample_images(grid[idx[0]], imgs[0, idx[0]], num_samples=2, seed=sample_seed(5, 16, 0))
    np.testing.assert_array_equal(drawn, users.reshape(2, 784, 1))


def test_int8_graphs_give_their_own_figures(tiny_export, tmp_path):
    """--precision int8 measures the int8 graphs: other figures than fp32's on the same draws."""
    import shutil
    import subprocess
    import sys

    folder = tmp_path / "tiny"
    shutil.copytree(tiny_export, folder)
    r = subprocess.run([sys.executable, "-m", "export.quantize", str(folder), "--int8"], capture_output=True,
                       text=True, timeout=600, cwd=Path(__file__).resolve().parents[2])
    assert r.returncode == 0, r.stderr
    args = ("--images", "2", "--sizes", "64", "--samples", "0", "--gauss-train", "200")
    fp32 = evaluate_tiny(folder, tmp_path / "fp32", *args)
    int8 = evaluate_tiny(folder, tmp_path / "int8", "--precision", "int8", *args)
    assert int8["settings"]["precision"] == "int8"
    assert int8["sizes"]["64"]["cond_gauss"] == fp32["sizes"]["64"]["cond_gauss"]  # the baselines do not move
    assert int8["sizes"]["64"]["model"]["nll_bits"] != fp32["sizes"]["64"]["model"]["nll_bits"]


def test_the_gray_card_blocks(tiny_export, tmp_path):
    """The model card's blocks of a gray report: the evaluation table below the full image, and the samples."""
    from export.evaluate.report import card_blocks, summary

    saved = evaluate_tiny(tiny_export, tmp_path, "--images", "2", "--sizes", "16,784", "--samples", "2",
                          "--sample-images", "1", "--gauss-train", "200")
    blocks = card_blocks(saved)
    assert set(blocks) == {"evaluation", "samples"}
    assert f"| 16 | {saved['sizes']['16']['model']['nll_bits']:.3f} |" in blocks["evaluation"]
    assert "| 784 |" not in blocks["evaluation"]
    assert f"| 16 | {saved['sizes']['16']['samples']['std']:.3f} |" in blocks["samples"]
    assert summary(saved)["sizes"]["784"]["cond_gauss_nll_bits"] is None


def test_export_records_the_evaluation_summary(tiny_run, tiny_export, tmp_path):
    """`export.onnx.graphs --metrics metrics.json` puts the per-|S| figures of the report into model.json."""
    from export.onnx.graphs import main

    report = evaluate_tiny(tiny_export, tmp_path / "eval", "--images", "2", "--sizes", "16", "--samples", "0",
                           "--gauss-train", "500")
    assert main([str(tiny_run / "model.pt"), "--out", str(tmp_path / "tiny"), "--grid", "28,28", "--sizes", "1",
                 "--metrics", str(tmp_path / "eval" / "metrics.json")]) == 0
    metrics = json.loads((tmp_path / "tiny" / "model.json").read_text())["metrics"]
    r16 = report["sizes"]["16"]
    assert metrics["sizes"]["16"]["nll_bits"] == r16["model"]["nll_bits"]
    assert metrics["sizes"]["16"]["cond_gauss_mse"] == r16["cond_gauss"]["mse"]
