"""The onnxruntime API against the torch model, its sampling, and its answers to bad input."""
import threading

import numpy as np
import pytest
import torch

import pt_plugin
from pt_plugin import InputError, ModelNotFoundError, grid_positions, observe_random


def observed(image, k=40, seed=0):
    return observe_random(image, k, seed=seed)


def test_mean_and_log_prob_match_torch(runtime_model, torch_model, test_image):
    pos, val = observed(test_image)
    q = grid_positions(28, 28)
    dist = runtime_model.query((pos, val), q)
    with torch.no_grad():
        mix = torch_model(torch.from_numpy(pos)[None], torch.from_numpy(val)[None],
                          torch.ones(1, len(pos), dtype=torch.bool), torch.from_numpy(q)[None])
    np.testing.assert_allclose(dist.mean(), mix.mean()[0].numpy(), atol=1e-4)
    v = test_image.reshape(-1, 1)
    np.testing.assert_allclose(dist.log_prob(v), mix.log_prob(torch.from_numpy(v)[None])[0].numpy(), atol=1e-3)
    np.testing.assert_allclose(dist.probs, torch.softmax(mix.logits, -1)[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(dist.sigmas, mix.log_sigma.exp()[0].numpy(), rtol=1e-4)


def test_sampling_distribution_matches_torch(runtime_model, torch_model, test_image):
    """Draws at one position follow the torch model's distribution (bin frequencies)."""
    pos, val = observed(test_image)
    q = np.repeat(grid_positions(28, 28)[400:401], 4000, 0)
    draws = runtime_model.query((pos, val), q).sample(np.random.default_rng(0))
    with torch.no_grad():
        mix = torch_model(torch.from_numpy(pos)[None], torch.from_numpy(val)[None],
                          torch.ones(1, len(pos), dtype=torch.bool), torch.from_numpy(q[:1])[None])
    tdraws = torch.cat([mix.sample(torch.Generator().manual_seed(i)) for i in range(4000)]).numpy().ravel()
    assert abs(draws.mean() - tdraws.mean()) < 0.02 and abs(draws.std() - tdraws.std()) < 0.02


def test_chunked_decoding_equals_one_pass(runtime_model, test_image):
    pos, val = observed(test_image)
    q = grid_positions(28, 28)
    np.testing.assert_allclose(runtime_model.mean((pos, val), q, chunk=100), runtime_model.mean((pos, val), q),
                               atol=1e-6)


def test_shuffling_samples_changes_no_mean(runtime_model, test_image):
    pos, val = observed(test_image)
    perm = np.random.default_rng(3).permutation(len(pos))
    a = runtime_model.mean_image(pos, val)
    b = runtime_model.mean_image(pos[perm], val[perm])
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_batched_sets_of_different_sizes_equal_single_sets(runtime_model, test_image):
    sets = [observed(test_image, k, seed=k) for k in (5, 30, 100)]
    ctx = runtime_model.encode_batch(sets)
    q = grid_positions(28, 28)[:50]
    batched = runtime_model.mean(ctx, np.broadcast_to(q, (3,) + q.shape))
    for i, s in enumerate(sets):
        np.testing.assert_allclose(batched[i], runtime_model.mean(s, q), atol=1e-5)


def test_same_seed_same_samples(runtime_model, test_image):
    pos, val = observed(test_image, 100)
    a = runtime_model.sample_images(pos, val, num_samples=2, seed=7, step_fraction=0.2)
    b = runtime_model.sample_images(pos, val, num_samples=2, seed=7, step_fraction=0.2)
    c = runtime_model.sample_images(pos, val, num_samples=2, seed=8, step_fraction=0.2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == (2, 28, 28, 1) and a.min() >= 0 and a.max() <= 1
    assert not np.array_equal(a[0], a[1])  # each sample has its own order and draws


def test_lower_temperature_gives_less_varied_samples(runtime_model, test_image):
    pos, val = observed(test_image, 30)
    spread = {t: runtime_model.sample_images(pos, val, num_samples=8, seed=3, step_fraction=0.2,
                                             temperature=t).std(0).mean() for t in (1.0, 0.3)}
    assert spread[0.3] < 0.7 * spread[1.0], spread


def test_observed_pixels_are_kept(runtime_model, test_image):
    pos, val = observed(test_image, 100)
    s = runtime_model.sample_images(pos, val, num_samples=1, seed=0, step_fraction=0.3)
    row, col = (((pos[:, k] + 1) / 2 * 28 - 0.5).round().astype(int) for k in (1, 0))
    idx = row * 28 + col
    np.testing.assert_array_equal(s.reshape(-1)[idx], val[:, 0])


def test_one_position_per_step_is_the_exact_path(runtime_model, test_image):
    """The scheduled mode with steps of one equals the exact sampler for the same seed."""
    pos, val = observed(test_image, 20)
    q = grid_positions(28, 28)[::9][:40]
    exact = runtime_model.sample(pos, val, q, num_samples=2, seed=5, autoregressive=25, step_fraction=0.0)
    tiny = runtime_model.sample(pos, val, q, num_samples=2, seed=5, autoregressive=25, step_fraction=1e-9)
    np.testing.assert_array_equal(exact, tiny)


def test_exact_sampler_against_a_plain_loop(runtime_model, test_image):
    """The batched exact sampler equals a one-sample-at-a-time loop written from the paper (Eq. 5-6)."""
    from pt_plugin.distribution import Distribution

    pos, val = observed(test_image, 10)
    q = grid_positions(28, 28)[::13][:30]
    n_ar = 12
    got = runtime_model.sample(pos, val, q, num_samples=1, seed=11, autoregressive=n_ar, step_fraction=0)[0]
    rng = np.random.default_rng(11)
    order = rng.permutation(len(q))
    sp, sv = pos.copy(), val.copy()
    want = np.zeros((len(q), 1), np.float32)
    for j in order[:n_ar]:
        d = runtime_model.query((sp, sv), q[j:j + 1])
        x = np.clip(d.sample(rng), 0, 1).astype(np.float32)
        want[j] = x[0]
        sp, sv = np.concatenate([sp, q[j:j + 1]]), np.concatenate([sv, x])
    want[order[n_ar:]] = runtime_model.mean((sp, sv), q[order[n_ar:]])
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert isinstance(d, Distribution)


def test_progress_callback(runtime_model, test_image):
    pos, val = observed(test_image, 700)
    seen = []
    runtime_model.sample_images(pos, val, seed=0, step_fraction=0, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (84, 84) and [d for d, _ in seen] == list(range(1, 85))


def test_threads_share_one_model(runtime_model, test_image):
    pos, val = observed(test_image)
    ref = runtime_model.mean_image(pos, val)
    results = []
    threads = [threading.Thread(target=lambda: results.append(runtime_model.mean_image(pos, val))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(np.allclose(r, ref, atol=1e-6) for r in results)


def test_one_dimensional_model(tmp_path):
    """A pos_dim 1 model, exported here, works through the same API."""
    from export.config import ModelConfig
    from export.model import PixelTransformer
    from export.onnx.graphs import export

    cfg = ModelConfig(pos_dim=1, val_dim=1, d_model=16, n_heads=2, enc_layers=1, dec_layers=1, ffn=32,
                      num_bins=1, value_range=(-3.0, 3.0))
    torch.manual_seed(0)
    model = PixelTransformer(cfg).eval()
    export(model, {"config": {"model": {}, "train": {}}, "step": 0}, tmp_path / "fn1d", "fn1d")
    m = pt_plugin.load(model_path=tmp_path / "fn1d", device="cpu")
    x = np.linspace(-1, 1, 9, dtype=np.float32)
    dist = m.query((x, np.sin(3 * x)), np.linspace(-1, 1, 50))
    assert dist.shape == (50,) and dist.mean().shape == (50, 1)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)[None, :, None], torch.sin(3 * torch.from_numpy(x))[None, :, None],
                    torch.ones(1, 9, dtype=torch.bool), torch.linspace(-1, 1, 50)[None, :, None]).mean()
    np.testing.assert_allclose(dist.mean(), ref[0].numpy(), atol=1e-4)
    draws = m.sample(x, np.sin(3 * x), np.linspace(-1, 1, 20), num_samples=3, seed=0)
    assert draws.shape == (3, 20, 1) and np.isfinite(draws).all()
    with pytest.raises(InputError, match="2-D model"):
        m.mean_image(x, np.sin(3 * x), (4, 4))
    with pytest.raises(InputError, match="no training grid"):
        m.mean_grid(x, np.sin(3 * x))
    assert m.mean_grid(x, np.sin(3 * x), (33,)).shape == (33, 1)


# -- bad input ----------------------------------------------------------------------------------

def test_documented_conversions(runtime_model, test_image):
    pos, val = observed(test_image)
    ref = runtime_model.mean_image(pos, val)
    pos64 = np.asfortranarray(pos.astype(np.float64))
    val64 = val.astype(np.float64)
    before = pos64.copy()
    np.testing.assert_allclose(runtime_model.mean_image(pos64, val64), ref, atol=1e-6)
    np.testing.assert_allclose(runtime_model.mean_image(pos.tolist(), val[:, 0]), ref, atol=1e-6)
    np.testing.assert_array_equal(pos64, before)  # the caller's arrays are untouched


@pytest.mark.parametrize("change, message", [
    (lambda p, v: (p[:, :1], v), r"shape \(40, 1\); expected \[N, pos_dim\] with pos_dim=2"),
    (lambda p, v: (p, np.repeat(v, 3, 1)), r"expected \[N, val_dim\] with val_dim=1"),
    (lambda p, v: (p[:-1], v), "differ in length"),
    (lambda p, v: (np.where(np.arange(40)[:, None] == 3, np.nan, p), v), "NaN or infinite"),
    (lambda p, v: (p, np.where(np.arange(40)[:, None] == 0, np.inf, v)), "NaN or infinite"),
    (lambda p, v: (p * 3, v), r"outside \[-1, 1\]"),
    (lambda p, v: (p, v * 255), "outside the model's value range"),
    (lambda p, v: (p[:0], v[:0]), "empty"),
    (lambda p, v: (np.array(["a", "b"]), v), "numeric"),
])
def test_bad_sample_sets_are_refused(runtime_model, test_image, change, message):
    pos, val = observed(test_image)
    p, v = change(pos, val)
    with pytest.raises(InputError, match=message):
        runtime_model.mean_image(p, v)


def test_default_sampler_is_the_measured_scheduled_one(runtime_model, test_image):
    """The API's default is step_fraction 0.1, the CLI's too (issue 16.21): fewer passes than positions."""
    from pt_plugin.sampling import DEFAULT_STEP_FRACTION

    pos, val = observed(test_image, 64)
    seen = []
    runtime_model.sample_images(pos, val, seed=0, progress=lambda d, t: seen.append(d))
    assert DEFAULT_STEP_FRACTION == 0.1 and seen[-1] == 784 - 64 and len(seen) < 60


def test_any_resolution(runtime_model, test_image):
    """A grid other than the training grid is a valid query: a 56x56 mean agrees with the 28x28 one on average."""
    pos, val = observed(test_image, 200)
    fine = runtime_model.mean_grid(pos, val, (56, 56))
    coarse = runtime_model.mean_image(pos, val)
    assert fine.shape == (56, 56, 1)
    pooled = fine.reshape(28, 2, 28, 2, 1).mean((1, 3))
    assert np.abs(pooled - coarse).mean() < 0.05
    assert runtime_model.sample_grid(pos, val, (14, 14), num_samples=2, seed=0).shape == (2, 14, 14, 1)


def test_bad_queries_and_shapes(runtime_model, test_image):
    pos, val = observed(test_image)
    with pytest.raises(InputError, match=r"shape \(array order \['y', 'x'\]\) must have 2 axes"):
        runtime_model.mean_image(pos, val, (32, 32, 3))
    with pytest.raises(InputError, match="pos_dim=2"):
        runtime_model.query((pos, val), np.zeros((5, 3)))
    with pytest.raises(InputError, match="no query positions"):
        runtime_model.query((pos, val), np.zeros((0, 2)))
    with pytest.raises(InputError, match="num_samples"):
        runtime_model.sample_images(pos, val, num_samples=0)
    with pytest.raises(InputError, match="step_fraction"):
        runtime_model.sample_images(pos, val, step_fraction=1.5)
    for bad in (0, -1.0, float("inf"), float("nan"), "0.5", True):
        with pytest.raises(InputError, match="temperature must be a finite number > 0"):
            runtime_model.sample_images(pos, val, temperature=bad)
    with pytest.raises(InputError, match="cannot observe 900 pixels"):
        observe_random(test_image, 900)


def test_unknown_model_lists_known_ones(tmp_path):
    with pytest.raises(ModelNotFoundError, match="known models: .*fashion-mnist"):
        pt_plugin.load("no-such-model")
    with pytest.raises(ModelNotFoundError, match="missing encoder.onnx"):
        pt_plugin.load(model_path=tmp_path)


def test_a_folder_in_the_working_directory_never_replaces_a_registered_model(tmp_path, monkeypatch, tiny_export):
    """Issue 16.1: registered names resolve through the registry only."""
    import shutil

    shutil.copytree(tiny_export, tmp_path / "fashion-mnist")
    monkeypatch.chdir(tmp_path)
    model = pt_plugin.load("fashion-mnist", device="cpu")
    assert model.path != tmp_path / "fashion-mnist" and model.info.bins == 64  # the bundled model, not the copy
    assert pt_plugin.load("./fashion-mnist", device="cpu").info.bins == 16  # a path loads the folder
    shutil.copytree(tiny_export, tmp_path / "mine")
    with pytest.raises(ModelNotFoundError, match="give it as a path"):
        pt_plugin.load("mine")


def test_bad_device_is_refused(tiny_export):
    with pytest.raises(InputError, match="device must be one of"):
        pt_plugin.load(model_path=tiny_export, device="tpu")


def test_cuda_request_is_refused_clearly_without_a_gpu(tiny_export):
    from pt_plugin.sessions import cuda_driver_problem

    if cuda_driver_problem() is None:
        pytest.skip("this machine has a usable CUDA device")
    with pytest.raises(pt_plugin.DeviceError, match="device='cuda' asked for, but"):
        pt_plugin.load(model_path=tiny_export, device="cuda")


def test_info(runtime_model):
    info = runtime_model.info
    assert info.pos_dim == 2 and info.val_dim == 1 and info.grid == (28, 28) and info.bins == 16
    assert info.value_range == (0.0, 1.0) and "CPUExecutionProvider" in info.providers
