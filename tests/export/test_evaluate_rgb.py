"""The RGB evaluation (issue 12): the per-channel discretised likelihood, the kNN posterior, the whole protocol.

A tiny random (untrained) PixelTransformer with val_dim 3, exported to ONNX, and synthetic 8×8 images: no data
set, no training.
"""
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

import pt_plugin
from export.config import Config
from export.evaluate.baselines import KNN_SIGMAS, KnnPosterior, select_knn
from export.evaluate.images import model_pixels, observed_indices, unobserved_mask
from export.model import Mixture, PixelTransformer

PALETTE = [[r, g, b] for r in (0.0, 0.5, 1.0) for g in (0.0, 0.5, 1.0) for b in (0.0, 0.5, 1.0)]
TINY = {"val_dim": 3, "d_model": 16, "n_heads": 2, "enc_layers": 1, "dec_layers": 1, "ffn": 32, "bin_centers": PALETTE}


def level_mass(v: float, m: float, s: float, levels: int = 256) -> float:
    """Brute force: N(m, s²) mass of v's level on [0, 1], the edge levels open to ±∞."""
    h = 1 / (levels - 1) / 2
    lo = -math.inf if v <= h / 2 else (v - h - m) / s
    hi = math.inf if v >= 1 - h / 2 else (v + h - m) / s
    tail = lambda z: 0.5 * math.erfc(z / math.sqrt(2))  # noqa: E731 - P(Z > z), accurate in both tails
    mass = tail(lo) - tail(hi) if lo > -1 else tail(-hi) - tail(-lo)
    return max(mass, 1e-12)


def brute_log_prob(logits, offsets, log_sigma, centers, v, levels=256) -> float:
    """log Σ_b q_b Π_c mass(v_c | c_bc + μ_bc, σ_b) for one query."""
    q = np.exp(logits - logits.max())
    q /= q.sum()
    total = sum(q[b] * np.prod([level_mass(v[c], centers[b, c] + offsets[b, c], math.exp(log_sigma[b]), levels)
                                for c in range(len(v))]) for b in range(len(q)))
    return math.log(total)


def random_mixture(n: int = 5, bins: int = 4, seed: int = 0) -> Mixture:
    g = torch.Generator().manual_seed(seed)
    return Mixture(torch.randn(n, bins, generator=g, dtype=torch.float64),
                   0.1 * torch.randn(n, bins, 3, generator=g, dtype=torch.float64),
                   torch.empty(n, bins, dtype=torch.float64).uniform_(-4, -1, generator=g),
                   torch.rand(bins, 3, generator=g, dtype=torch.float64))


def test_rgb_discretized_log_prob_matches_brute_force():
    mix = random_mixture()
    v = torch.tensor([[0.0, 1.0, 0.5], [10 / 255, 250 / 255, 1.0], [0.2, 0.2, 0.2], [1.0, 0.0, 0.0],
                      [128 / 255, 3 / 255, 77 / 255]], dtype=torch.float64)
    got = mix.discretized_log_prob(v).numpy()
    want = [brute_log_prob(mix.logits[i].numpy(), mix.offsets[i].numpy(), mix.log_sigma[i].numpy(),
                           mix.centers.numpy(), v[i].numpy()) for i in range(len(v))]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_rgb_discretized_probabilities_sum_to_one():
    """Over all levels³ values (4 levels per channel) the discretised mixture is a distribution."""
    mix = random_mixture(n=1)
    lv = torch.arange(4, dtype=torch.float64) / 3
    grid = torch.cartesian_prod(lv, lv, lv)                          # [64, 3]
    wide = Mixture(*(t.expand(len(grid), *t.shape[1:]) for t in (mix.logits, mix.offsets, mix.log_sigma)), mix.centers)
    assert math.isclose(wide.discretized_log_prob(grid, levels=4).exp().sum().item(), 1.0, rel_tol=1e-9)


def tiny_model(seed: int = 0) -> PixelTransformer:
    cfg = Config.from_dict({"model": TINY})
    torch.manual_seed(seed)
    model = PixelTransformer(cfg.model).eval()
    with torch.no_grad():  # spread the untrained head so logits, offsets and σ differ between bins
        model.decoder.head.weight.normal_(0, 0.5)
    return model


def test_model_pixels_rgb_sums_channels_per_component(rgb_run):
    """The shipped graphs' level likelihood of an RGB pixel: the product of its channels' masses per component."""
    model = pt_plugin.load(rgb_run / "export", device="cpu")
    h = w = 8
    img = np.random.default_rng(0).integers(0, 256, (1, h * w, 3)).astype(np.float32) / 255
    idx = observed_indices(1, h * w, 5, 0)
    mean, logp = model_pixels(model, img, idx, 1)
    assert mean.shape == (1, h * w, 3) and logp.shape == (1, h * w)
    grid = pt_plugin.grid_positions(h, w)
    dist = model.query((grid[idx[0]], img[0, idx[0]]), grid)
    np.testing.assert_allclose(mean[0], dist.mean(), atol=1e-6)
    for j in (0, 7, 15, 63):
        want = brute_log_prob(dist.logits[j], dist.offsets[j], dist.log_sigma[j], dist.centers, img[0, j])
        # the cdf difference (erf) loses ~1e-4 of the mass far out in a tail, even in float64
        assert abs(logp[0, j] - want) < 1e-3, (j, logp[0, j], want)


def test_knn_posterior_with_tau_zero_is_the_best_match():
    rng = np.random.default_rng(1)
    train = rng.integers(0, 256, (20, 16, 3)).astype(np.float32) / 255
    knn = KnnPosterior(train)
    truth = train[7].copy()
    idx = np.array([0, 5, 9, 14])
    noisy = np.clip(truth[idx] + rng.normal(0, 0.01, (4, 3)), 0, 1)  # still nearest to image 7
    for tau in (0.0, 1e-4):
        mean, _ = knn.predict(idx, noisy, truth, tau, tau, 0.05)
        np.testing.assert_allclose(mean, train[7], atol=1e-6)
    # a very wide τ weighs every image alike: the mean is the training mean
    np.testing.assert_allclose(knn.predict(idx, noisy, truth, 1e6, 1e6, 0.05)[0], train.mean(0), atol=1e-5)


def test_knn_log_prob_matches_brute_force():
    rng = np.random.default_rng(2)
    train = rng.integers(0, 256, (6, 9, 3)).astype(np.float32) / 255
    target = rng.integers(0, 256, (9, 3)).astype(np.float32) / 255
    target[0] = [0.0, 1.0, 1.0]  # edge levels
    idx, tau, sigma = np.array([2, 4]), 0.3, 0.08
    knn = KnnPosterior(train)
    _, logp = knn.predict(idx, target[idx], target, 0.0, tau, sigma)
    dist = ((train[:, idx].astype(np.float64) - target[idx]) ** 2).sum((1, 2))
    wts = np.exp(-dist / (2 * tau ** 2))
    wts /= wts.sum()
    for j in range(9):
        p = sum(wts[i] * np.prod([level_mass(target[j, c], train[i, j, c], sigma) for c in range(3)]) for i in range(6))
        assert math.isclose(logp[j], math.log(p), rel_tol=1e-5), j


def test_select_knn_prefers_a_sharp_tau_when_images_repeat():
    """Held-out images that are copies of training images: the mean is best from the nearest image alone."""
    rng = np.random.default_rng(3)
    train = rng.integers(0, 256, (30, 16, 3)).astype(np.float32) / 255
    choice = select_knn(KnnPosterior(train), train[:6], sizes=(8,), pixels=8)["8"]
    assert choice["tau_mean"] <= 0.05 and choice["held_out_mse"] < 1e-6
    assert choice["sigma"] == min(KNN_SIGMAS)  # the copies match exactly: the sharpest σ of the grid


def synthetic_images(n: int, seed: int, size: int = 8) -> np.ndarray:
    """n smooth colour images with a square of another colour, [n, size, size, 3] uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    out = []
    for _ in range(n):
        base = rng.random(3) + rng.normal(0, 0.3, 3) * xx[..., None] + rng.normal(0, 0.3, 3) * yy[..., None]
        y0, x0 = rng.integers(0, size - 3, 2)
        base[y0:y0 + 3, x0:x0 + 3] = rng.random(3)
        out.append(np.clip(np.rint(base * 255), 0, 255).astype(np.uint8))
    return np.stack(out)


def test_siblings_stay_out_of_the_tuning_database():
    """An emoji held out for tuning takes its other skin tones and vendor with it out of the kNN's database."""
    from export.datasets.emoji import sibling_groups
    from export.evaluate.rgb import tuning_split

    names = [f"google_{i:05x}.png" for i in range(12)] + ["twitter_00000.png", "google_00000-1f3fb.png", "x.png"]
    keys = sibling_groups(names)
    assert keys[0] == keys[12] == keys[13] == "00000.png" and keys[14] == "x.png"
    train, tune, db = tuning_split(keys, "folder:x/train", 5, 5)
    assert len(train) == 10 and len(tune) == 5 and not set(train) & set(tune)
    assert not set(keys[db]) & set(keys[tune]) and set(db) <= set(train)


@pytest.fixture
def rgb_run(tmp_path):
    """A folder with train/ (40) and test/ (10) PNGs and a tiny RGB model that trained on folder:.../train,
    exported to tmp_path/export (model.json records its 8 held-out images)."""
    from export.onnx.graphs import main as export

    for split, n, seed in (("train", 40, 0), ("test", 10, 1)):
        (tmp_path / "rgb" / split).mkdir(parents=True)
        for i, im in enumerate(synthetic_images(n, seed)):
            Image.fromarray(im).save(tmp_path / "rgb" / split / f"im{i:02d}.png")
    cfg = Config.from_dict({"model": TINY, "train": {"data": f"folder:{tmp_path}/rgb/train", "val_images": 8}})
    model = tiny_model()
    torch.save({"config": cfg.to_dict(), "model": model.state_dict(), "step": 3}, tmp_path / "model.pt")
    assert export([str(tmp_path / "model.pt"), "--out", str(tmp_path / "export"), "--grid", "8,8",
                   "--sizes", "1,7"]) == 0
    meta = json.loads((tmp_path / "export" / "model.json").read_text())
    meta["training"]["val_images"] = 8
    (tmp_path / "export" / "model.json").write_text(json.dumps(meta))
    return tmp_path


def test_evaluate_rgb_end_to_end(rgb_run):
    from export.datasets.images import load_image_folder
    from export.evaluate.__main__ import main
    from export.evaluate.report import card_blocks, summary

    out = rgb_run / "eval"
    assert main([str(rgb_run / "export"), "--out", str(out), "--images", "6", "--sizes", "4,16", "--samples", "2",
                 "--sample-images", "2", "--tune-images", "6", "--threads", "1"]) == 0
    for name in ("metrics.json", "metrics.md", "metrics.png", "samples.png", "composition.png"):
        assert (out / name).is_file(), name
    res = json.loads((out / "metrics.json").read_text())
    st = res["settings"]
    assert st["protocol"] == "rgb" and st["channels"] == 3 and st["pixels"] == 64 and st["step"] == 3
    assert st["tuning"]["train_images"] == 32 and st["tuning"]["held_out_images"] == 6
    assert st["cache"] is False and st["buffer_size"] is None  # the tiny export has no cache graphs
    for size in ("4", "16"):
        r = res["sizes"][size]
        for m in ("model", "cond_gauss", "knn"):
            assert 0 < r[m]["nll_bits"] < 16, (size, m)
        for m in ("model", "cond_gauss", "knn", "linear", "nearest"):
            assert 0 < r[m]["mse"] < 1 and -1 <= r[m]["ssim"] <= 1, (size, m)
        assert r["linear"]["nll_bits"] is None and r["samples"]["std"] > 0
        coh = r["samples"]["coherence"]  # samples, truth and independent draws over whole RGB images
        for k in ("tv", "isolated"):
            assert all(0 <= coh[k][w] <= np.sqrt(3) for w in ("samples", "truth", "independent")), (size, k)
        assert coh["tv"]["samples_over_truth"] == pytest.approx(coh["tv"]["samples"] / coh["tv"]["truth"])
        assert isinstance(r["targets"]["nll_1bit_below_cond_gauss"], bool)
        assert r["targets"]["best_baseline_mse"] == min(r[m]["mse"] for m in ("cond_gauss", "knn", "linear", "nearest"))
        assert r["targets"]["mse_below_best_baseline"] == (r["model"]["mse"] < r["targets"]["best_baseline_mse"])
    tg = res["targets"]
    assert tg["pass"] == (tg["nll_1bit_below_cond_gauss"] and tg["mse_below_best_baseline"])
    # the model's NLL is bits per sub-pixel of the shipped graphs: the level log-likelihood over unobserved
    # pixels / (3 ln 2), on the seeded images of the test folder
    test = load_image_folder(rgb_run / "rgb" / "test").reshape(10, 64, 3)
    imgs = test[st["test_indices"]]
    idx = observed_indices(6, 64, 16, 0)
    _, logp = model_pixels(pt_plugin.load(rgb_run / "export", device="cpu"), imgs, idx, 4)
    want = -logp[unobserved_mask(idx, 64)].mean() / (3 * math.log(2))
    assert math.isclose(res["sizes"]["16"]["model"]["nll_bits"], want, rel_tol=1e-9)
    s = summary(res)  # what export.onnx.graphs --metrics records in model.json
    assert s["sizes"]["16"]["knn_nll_bits"] == res["sizes"]["16"]["knn"]["nll_bits"]
    assert "RGB" in s["protocol"] and "pass" in s["targets"]
    blocks = card_blocks(res)
    assert f"| 16 | {res['sizes']['16']['model']['nll_bits']:.3f} |" in blocks["evaluation"]
    assert "kNN MSE" in blocks["evaluation"] and "| 16 |" in blocks["samples"]
    assert "independent draws / truth (TV, isolated)" in blocks["samples"]
    assert "| 16 |" in (out / "metrics.md").read_text()
