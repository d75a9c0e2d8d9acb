"""The evaluation protocol and its baselines."""
import json

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


def test_evaluate_writes_reports(tiny_run, tmp_path):
    from export.evaluate.gray import evaluate

    res = evaluate(tiny_run / "model.pt", out=tmp_path, images=4, sizes=(16, 784), samples=2, sample_images=2,
                   ar_frac=0.5, gauss_train=1000, log=lambda *_: None)
    for name in ("metrics.json", "metrics.md", "metrics.png", "samples.png"):
        assert (tmp_path / name).is_file(), name
    saved = json.loads((tmp_path / "metrics.json").read_text())
    r16 = saved["sizes"]["16"]
    assert r16["model"]["nll_bits"] > 0 and r16["cond_gauss"]["nll_bits"] > 0
    assert r16["linear"]["nll_bits"] is None and 0 < r16["model"]["mse"] < 1
    assert saved["sizes"]["784"]["linear"]["mse"] == 0
    assert res["sizes"]["16"]["samples"]["std"] >= 0
    assert "| 16 |" in (tmp_path / "metrics.md").read_text()


def test_export_records_the_evaluation_summary(tiny_run, tmp_path):
    """`export.onnx.graphs --metrics metrics.json` puts the per-|S| figures of the report into model.json."""
    from export.evaluate.gray import evaluate
    from export.onnx.graphs import main

    evaluate(tiny_run / "model.pt", out=tmp_path / "eval", images=2, sizes=(16,), samples=0, gauss_train=500,
             log=lambda *_: None)
    assert main([str(tiny_run / "model.pt"), "--out", str(tmp_path / "tiny"), "--grid", "28,28", "--sizes", "1",
                 "--metrics", str(tmp_path / "eval" / "metrics.json")]) == 0
    metrics = json.loads((tmp_path / "tiny" / "model.json").read_text())["metrics"]
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())["sizes"]["16"]
    assert metrics["sizes"]["16"]["nll_bits"] == report["model"]["nll_bits"]
    assert metrics["sizes"]["16"]["cond_gauss_mse"] == report["cond_gauss"]["mse"]
