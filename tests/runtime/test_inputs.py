"""Issue 16: every fuzzing finding on the public API ends in a pt_plugin error that says what was expected."""
import logging
import warnings

import numpy as np
import pytest
from PIL import Image

import pt_plugin
from pt_plugin import InputError, PtPluginError, compose, grid_positions, inputs, observe_mask, observe_random, sessions
from pt_plugin.distribution import Distribution
from pt_plugin.images import read_image


@pytest.fixture
def observed(test_image):
    return observe_random(test_image, 40, seed=0)


@pytest.fixture
def budget(runtime_model):
    """Restore the shared model's attention_budget after a test that changes it."""
    before = runtime_model.attention_budget
    yield runtime_model
    runtime_model.attention_budget = before


# -- 5. num_samples ---------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [-1, 0, 1.5, None, "2", True])
def test_num_samples_is_checked(runtime_model, observed, bad):
    pos, val = observed
    with pytest.raises(InputError, match="num_samples must be an integer >= 1"):
        runtime_model.sample_images(pos, val, num_samples=bad)
    with pytest.raises(InputError, match="num_samples must be an integer >= 1"):
        runtime_model.sample(pos, val, grid_positions(28, 28)[:5], num_samples=bad)


def test_num_samples_checked_when_every_pixel_is_observed(runtime_model, test_image):
    pos, val = grid_positions(28, 28), test_image.reshape(-1, 1)
    for kwargs, message in [({"num_samples": -1}, "num_samples"), ({"seed": -1}, "seed"),
                            ({"step_fraction": "0.1"}, "step_fraction"), ({"temperature": 0}, "temperature"),
                            ({"temprature": 0.5}, "unknown option")]:
        with pytest.raises(InputError, match=message):
            runtime_model.sample_images(pos, val, **kwargs)
    out = runtime_model.sample_images(pos, val, num_samples=2, seed=0)
    np.testing.assert_array_equal(out[1], test_image)


def test_huge_num_samples_is_refused_by_the_memory_guard(runtime_model, observed):
    pos, val = observed
    with pytest.raises(InputError, match=r"GiB of memory.*PT_PLUGIN_MAX_MEMORY_GB"):
        runtime_model.sample_images(pos, val, num_samples=10**12)
    with pytest.raises(InputError, match="fewer samples"):
        runtime_model.sample(pos, val, grid_positions(28, 28)[:5], num_samples=10**8)


# -- 6. seed ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [-1, 1.5, "a", True, [1, 2]])
def test_bad_seeds_are_refused(runtime_model, observed, test_image, bad):
    pos, val = observed
    with pytest.raises(InputError, match="seed must be None, an integer >= 0"):
        runtime_model.sample_images(pos, val, seed=bad)
    with pytest.raises(InputError, match="seed must be None, an integer >= 0"):
        observe_random(test_image, 5, seed=bad)


def test_good_seeds(runtime_model, observed, test_image):
    pos, val = observed
    q = grid_positions(28, 28)[:6]
    a = runtime_model.sample(pos, val, q, seed=np.int64(3), autoregressive=3)
    np.testing.assert_array_equal(a, runtime_model.sample(pos, val, q, seed=3, autoregressive=3))
    assert runtime_model.sample(pos, val, q, seed=None, autoregressive=3).shape == (1, 6, 1)
    np.testing.assert_array_equal(observe_random(test_image, 5, seed=np.uint8(2))[0],
                                  observe_random(test_image, 5, seed=2)[0])


# -- 7. step_fraction -------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["0.1", True, -0.1, 1.0, float("nan")])
def test_step_fraction_is_checked(runtime_model, observed, bad):
    pos, val = observed
    with pytest.raises(InputError, match=r"step_fraction must be a number in \[0, 1\)"):
        runtime_model.sample(pos, val, grid_positions(28, 28)[:5], step_fraction=bad)


def test_none_takes_the_default_of_the_path_sampled(runtime_model, observed):
    """step_fraction / autoregressive None: the re-encoding sampler's defaults for a model without cache graphs."""
    pos, val = observed
    q = grid_positions(28, 28)[:5]
    a = runtime_model.sample(pos, val, q, seed=3, step_fraction=None, autoregressive=None)
    b = runtime_model.sample(pos, val, q, seed=3, step_fraction=0.1, autoregressive=2048)
    np.testing.assert_array_equal(a, b)


# -- 8. shapes --------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [28, np.array([28.0, 28.0]), (28, float("inf")), (28, float("nan")), (28.9, 28),
                                 ("28", "28"), (28,), (28, 28, 1), (0, 28), (-28, 28), (True, 28), "28x28"])
def test_bad_shapes_are_refused(runtime_model, observed, bad):
    pos, val = observed
    with pytest.raises(InputError, match="shape"):
        runtime_model.mean_image(pos, val, bad)
    with pytest.raises(InputError, match="shape"):
        runtime_model.sample_images(pos, val, bad)


def test_grid_shape_validator():
    assert inputs.grid_shape(np.array([28, 28])) == (28, 28)
    assert inputs.grid_shape([4, 5, 6]) == (4, 5, 6)  # any number of axes
    assert inputs.grid_shape((np.int32(3),), 1) == (3,)
    for bad, ndim in [((28, 28), 3), ((), None), (28, None), ((28.0, 28), None), ([[28, 28]], None),
                      (np.array([[28, 28]]), None)]:
        with pytest.raises(InputError, match="shape"):
            inputs.grid_shape(bad, ndim)


def test_grids_whose_cell_count_overflows_int64_are_refused_by_the_memory_guard(runtime_model, observed):
    """5.7e12 x 3.2e6 cells is past 2**63: np.prod wrapped around to a small count that passed the memory
    check, and numpy then failed allocating 42 TiB (found by hypothesis). Counted in Python ints, it is refused."""
    huge = (5_741_081_827_069, 3_213_072)
    with pytest.raises(InputError, match="memory"):
        grid_positions(*huge)
    pos, val = observed
    with pytest.raises(InputError, match="memory"):
        runtime_model.sample_grid(pos, val, huge)
    with pytest.raises(InputError, match="memory"):
        runtime_model.mean_grid(pos, val, huge)


def test_numpy_shape_is_accepted(runtime_model, observed):
    pos, val = observed
    assert runtime_model.mean_image(pos, val, np.array([28, 28])).shape == (28, 28, 1)


# -- 9. encode_batch and ragged queries ---------------------------------------------------------------

def test_encode_batch_arguments(runtime_model, observed):
    pos, val = observed
    for bad, message in [(None, "list of"), (3, "list of"), ("ab", "list of"), ([(pos, val, val)], "set 0 must be a"),
                         ([(pos, val), pos], "set 1 must be a"), ([], "at least one")]:
        with pytest.raises(InputError, match=message):
            runtime_model.encode_batch(bad)
    ctx = runtime_model.encode_batch((s for s in [(pos, val), (pos[:5], val[:5])]))  # a generator is fine
    assert ctx.batch == 2


def test_ragged_inputs_are_refused(runtime_model, observed):
    pos, val = observed
    ragged = [[0.0, 0.0], [0.5]]
    with pytest.raises(InputError, match="could not be read as an array"):
        runtime_model.query((pos, val), ragged)
    with pytest.raises(InputError, match="could not be read as an array"):
        runtime_model.mean((pos, val), ragged)
    with pytest.raises(InputError, match="could not be read as an array"):
        runtime_model.encode_batch([(ragged, [0.1, 0.2])])


# -- 10. Distribution -----------------------------------------------------------------------------------

def small_distribution(value_range=None, batch=(3,)):
    rng = np.random.default_rng(0)
    bins = 4
    return Distribution(rng.normal(size=batch + (bins,)), 0.05 * rng.normal(size=batch + (bins, 1)),
                        np.log(np.full(batch + (bins,), 0.05)), np.linspace(0, 1, bins)[:, None], value_range)


def test_log_prob_and_cdf_value_shapes():
    d = small_distribution()
    assert d.log_prob(0.5).shape == (3,)
    np.testing.assert_allclose(d.log_prob(0.5), d.log_prob(np.full((3, 1), 0.5)))
    np.testing.assert_allclose(d.log_prob(np.full(3, 0.5)), d.log_prob(np.full((3, 1), 0.5)))
    assert d.cdf(np.full((3, 1), 0.5)).shape == (3,)  # [Q, 1]: one value per query, not [Q, Q]
    np.testing.assert_allclose(d.cdf(np.full((3, 1), 0.5)), d.cdf(0.5))
    assert d.cdf(np.linspace(0, 1, 5)[:, None, None]).shape == (5, 3)  # several thresholds: [T, 1, 1]
    col = small_distribution(batch=(2, 1))
    assert col.log_prob(np.full((2, 1), 0.5)).shape == (2, 1)  # batch-shaped values of a [B, 1] batch
    for bad in (np.zeros(5), np.zeros((4, 1)), "a", np.nan, [[0.1], [0.2, 0.3]]):
        with pytest.raises(InputError):
            d.log_prob(bad)
        with pytest.raises(InputError):
            d.cdf(bad)


def test_sample_temperatures():
    d = small_distribution((0.0, 1.0))
    for bad in (float("inf"), float("nan"), 0, -1, "1", None):
        with pytest.raises(InputError, match="temperature"):
            d.sample(0, temperature=bad)
    mode = np.take_along_axis(d.component_means[..., 0], d.probs.argmax(-1)[:, None], -1)[:, 0]
    np.testing.assert_allclose(d.sample(0, temperature=5e-324)[:, 0], np.clip(mode, 0, 1), atol=1e-12)
    with pytest.raises(InputError, match="rng"):
        d.sample(-1)


def test_mean_and_sample_stay_in_the_value_range():
    d = Distribution(np.array([[0.0, 9.0]]), np.array([[[0.0], [0.01]]]), np.log(np.full((1, 2), 0.3)),
                     np.array([[0.0], [1.0]]), (0.0, 1.0))
    assert d.mean().max() <= 1.0 and d[0:1].mean().max() <= 1.0
    draws = Distribution(np.repeat(d.logits, 1000, 0), np.repeat(d.offsets, 1000, 0),
                         np.repeat(d.log_sigma, 1000, 0), d.centers, (0.0, 1.0)).sample(0)
    assert draws.min() >= 0.0 and draws.max() <= 1.0
    assert Distribution(d.logits, d.offsets, d.log_sigma, d.centers).mean().max() > 1.0  # without a range: as is


def test_model_distributions_know_the_value_range(runtime_model, observed):
    dist = runtime_model.query(observed, grid_positions(28, 28))
    assert dist.value_range == (0.0, 1.0) and dist[:3].value_range == (0.0, 1.0)


def test_bad_distribution_arrays():
    with pytest.raises(InputError, match="do not fit"):
        Distribution(np.zeros((3, 4)), np.zeros((3, 5, 1)), np.zeros((3, 4)), np.zeros((4, 1)))
    with pytest.raises(InputError, match="value_range"):
        Distribution(np.zeros((3, 4)), np.zeros((3, 4, 1)), np.zeros((3, 4)), np.zeros((4, 1)), (1, 0))
    with pytest.raises(InputError, match="index"):
        small_distribution()[5]


# -- 11. images and masks -------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["abc", [[0.1, 0.2], [0.3]], np.zeros((4, 4, 0)), np.zeros((0, 4)),
                                 np.zeros((2, 2, 2, 2)), np.full((4, 4), np.nan)])
def test_bad_images_are_refused(bad):
    with pytest.raises(InputError, match="image"):
        observe_random(bad, 1)
    with pytest.raises(InputError, match="image"):
        observe_mask(bad, np.ones((4, 4), bool))
    with pytest.raises(InputError, match="image"):
        compose(bad, np.zeros((4, 4)), np.ones((4, 4), bool))


@pytest.mark.parametrize("bad", [None, "mask", np.ones((3, 4)), [[1, 0], [1]]])
def test_bad_masks_are_refused(bad):
    img = np.zeros((4, 4))
    with pytest.raises(InputError, match="mask"):
        observe_mask(img, bad)
    with pytest.raises(InputError, match="mask"):
        compose(img, img, bad)


def test_one_mask_rule_for_observe_mask_and_compose():
    a, b = np.ones((2, 2)), np.zeros((2, 2))
    numeric = np.array([[0.3, 0.6], [1.0, 0.0]])
    selected = numeric > 0.5
    np.testing.assert_array_equal(compose(a, b, numeric)[..., 0], selected)
    assert len(observe_mask(a, numeric)[0]) == selected.sum()
    np.testing.assert_array_equal(compose(a, b, selected)[..., 0], selected)
    np.testing.assert_array_equal(compose(a, b, numeric.astype(np.float32)[..., None].repeat(3, -1))[..., 0], selected)


# -- 12. attention_budget -------------------------------------------------------------------------------

def test_attention_budget_is_validated(budget, observed):
    model = budget
    ref = model.mean(observed, grid_positions(28, 28)[:20])
    model.attention_budget = 1e6
    assert model.attention_budget == 1_000_000 and isinstance(model.attention_budget, int)
    np.testing.assert_allclose(model.mean(observed, grid_positions(28, 28)[:20]), ref, atol=1e-6)
    for bad in (0, -5, 1.5, float("inf"), float("nan"), "1e6", None, True):
        with pytest.raises(InputError, match="attention_budget must be a positive integer"):
            model.attention_budget = bad
    assert model.attention_budget == 1_000_000


# -- 13. copies -----------------------------------------------------------------------------------------

def test_check_set_always_copies(runtime_model, observed):
    pos, val = (np.ascontiguousarray(a, np.float32) for a in observed)
    p, v = runtime_model.check_set(pos, val)
    assert not np.shares_memory(p, pos) and not np.shares_memory(v, val)
    v[:] = 0.5
    assert not np.all(val == 0.5)


# -- 14. memory guards ----------------------------------------------------------------------------------

def test_a_huge_set_is_refused_up_front(runtime_model):
    rng = np.random.default_rng(0)
    pos, val = rng.uniform(-1, 1, (20_000, 2)), rng.uniform(0, 1, (20_000, 1))
    with pytest.raises(InputError, match=r"encoding 1 set\(s\) of up to 20,000 samples would need about .* GiB"):
        runtime_model.encode(pos, val)
    with pytest.raises(InputError, match="fewer samples per set"):
        runtime_model.mean_image(pos, val)


def test_memory_limit_is_configurable(runtime_model, observed, monkeypatch):
    monkeypatch.setenv("PT_PLUGIN_MAX_MEMORY_GB", "0.0001")
    with pytest.raises(InputError, match="0.0001 GiB limit"):
        runtime_model.sample_images(*observed, num_samples=50)
    monkeypatch.setenv("PT_PLUGIN_MAX_MEMORY_GB", "lots")
    with pytest.raises(InputError, match="PT_PLUGIN_MAX_MEMORY_GB='lots' is not a positive number"):
        runtime_model.mean_image(*observed)
    monkeypatch.setenv("PT_PLUGIN_MAX_MEMORY_GB", "inf")
    assert runtime_model.mean_image(*observed).shape == (28, 28, 1)


def test_many_queries_are_refused_before_decoding(runtime_model, observed, monkeypatch):
    monkeypatch.setenv("PT_PLUGIN_MAX_MEMORY_GB", "0.05")
    ctx = runtime_model.encode(*observed)
    q = np.broadcast_to(np.zeros((1, 1, 2), np.float32), (1, 10**6, 2))
    with pytest.raises(InputError, match="answering 1,000,000 queries .* use mean"):
        runtime_model.query(ctx, q)
    assert runtime_model.mean(ctx, q[:, :10**5]).shape == (1, 10**5, 1)  # the mean keeps 1 float per query


# -- 17-19. sessions ------------------------------------------------------------------------------------

def test_cpu_fallback_notice_is_info_level(monkeypatch, caplog):
    monkeypatch.setattr(sessions, "_noted_fallback", False)
    monkeypatch.setattr(sessions, "cuda_driver_problem", lambda: "no NVIDIA driver found (test)")
    monkeypatch.setattr(sessions.ort, "get_available_providers", lambda: [sessions.CUDA, sessions.CPU])
    with caplog.at_level(logging.DEBUG, logger="pt_plugin"):
        assert sessions.resolve_providers("auto", None) == [sessions.CPU]
    notes = [r for r in caplog.records if "runs on the CPU" in r.getMessage()]
    assert len(notes) == 1 and notes[0].levelno == logging.INFO and notes[0].name == "pt_plugin"
    assert not logging.getLogger("pt_plugin").isEnabledFor(logging.INFO)  # so by default nothing is printed


def test_broken_onnxruntime_is_diagnosed(monkeypatch, tiny_export):
    monkeypatch.delattr(sessions.ort, "InferenceSession")
    monkeypatch.delattr(sessions.ort, "get_available_providers")
    with pytest.raises(pt_plugin.errors.OnnxruntimeError,
                       match=r"onnxruntime is broken .*InferenceSession.*pip uninstall -y onnxruntime onnxruntime-gpu"):
        pt_plugin.load(model_path=tiny_export, device="cpu")
    with pytest.raises(pt_plugin.DeviceError, match="onnxruntime is broken"):
        sessions.cuda_driver_problem()
    assert issubclass(pt_plugin.errors.OnnxruntimeError, PtPluginError)


def test_dual_install_warns_once_at_the_callers_line(monkeypatch, tiny_export):
    monkeypatch.setattr(sessions, "_warned_dual", False)
    monkeypatch.setattr(sessions, "installed_onnxruntime_packages", lambda: ["onnxruntime 1.0", "onnxruntime-gpu 1.0"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pt_plugin.load(model_path=tiny_export, device="cpu")
        pt_plugin.load(model_path=tiny_export, device="cpu")
    dual = [w for w in caught if "several onnxruntime packages" in str(w.message)]
    assert len(dual) == 1 and dual[0].filename == __file__


# -- 20. 16-bit PNGs ------------------------------------------------------------------------------------

def test_sixteen_bit_png_is_read_at_full_depth(tmp_path):
    gray = (np.arange(20).reshape(4, 5) * 3000).astype(np.uint16)
    Image.fromarray(gray).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    np.testing.assert_allclose(read_image(tmp_path / "g16.png", 1)[..., 0], gray / 65535, atol=1e-6)
    rgb = read_image(tmp_path / "g16.png", 3)
    assert rgb.shape == (4, 5, 3) and np.allclose(rgb[..., 2], gray / 65535, atol=1e-6)
    Image.fromarray((gray // 257).astype(np.uint8)).save(tmp_path / "g8.png")
    np.testing.assert_allclose(read_image(tmp_path / "g8.png", 1), read_image(tmp_path / "g16.png", 1), atol=1 / 255)


# -- 22. reprs ------------------------------------------------------------------------------------------

def test_reprs_are_short(runtime_model, observed):
    assert len(repr(runtime_model.info)) < 400 and "bin_centers" not in repr(runtime_model.info)
    assert runtime_model.info.metadata["bins"] == 16  # still there, only not printed
    ctx = runtime_model.encode_batch([observed, observed])
    assert repr(ctx) == "Context(batch=2, samples=40, groups=1)"
