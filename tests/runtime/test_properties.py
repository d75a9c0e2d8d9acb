"""Property-based tests (hypothesis) of the public API on the tiny trained model.

Properties: a refusal is an InputError / ModelNotFoundError / WeightsError with a message, never
a raw numpy/onnxruntime/Python error; accepted input gives finite output of the documented shape
(values inside the model's range); the caller's arrays are never modified; the same seed gives the
same samples; threads give what serial calls give. Bounded to about a minute on 2 cores.
"""
from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pt_plugin import (
    InputError,
    ModelNotFoundError,
    WeightsError,
    compose,
    grid_positions,
    observe_mask,
    observe_random,
)
from pt_plugin.distribution import Distribution

REFUSALS = (InputError, ModelNotFoundError, WeightsError)
REFUSED = object()
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")  # numpy overflow/invalid warnings are failures too


def props(n: int = 25):
    """Hypothesis settings of this suite: n examples, no deadline (CPU shared), no example database on disk."""
    return settings(max_examples=n, deadline=None, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def attempt(fn, *args, **kwargs):
    """fn's result, or REFUSED when it refuses with one of pt-plugin's errors and a message; anything else fails."""
    try:
        return fn(*args, **kwargs)
    except REFUSALS as e:
        assert str(e).strip(), f"{type(e).__name__} without a message"
        return REFUSED


def snapshot(*objs):
    """Deep copies of the arguments, to check afterwards that a call left them alone."""
    return copy.deepcopy(objs)


def assert_unchanged(before, after) -> None:
    """Every numpy array (also inside tuples and lists) is unchanged, NaNs included."""
    for b, a in zip(before, after):
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and a.shape == b.shape
            assert np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
        elif isinstance(a, (tuple, list)):
            assert_unchanged(b, a)


def assert_values(out, shape) -> None:
    """out has the documented shape and finite values inside the model's range [0, 1]."""
    assert out.shape == shape, (out.shape, shape)
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0


# -- strategies ---------------------------------------------------------------------------------------
unit = st.floats(-1, 1, allow_nan=False)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**13, 10**13), st.floats(), st.text(max_size=3),
                    st.sampled_from([np.int64(3), np.float32(0.5), np.uint8(0), np.bool_(True)]))
weird_arrays = hnp.arrays(dtype=st.sampled_from([np.float32, np.float64, np.int64, np.uint8, np.bool_, np.complex64,
                                                 np.dtype("U2")]),
                          shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))
ragged = st.lists(st.lists(st.floats(-2, 2), max_size=3), max_size=4)
anything = st.one_of(scalars, weird_arrays, ragged)


@st.composite
def sample_sets(draw, min_k: int = 1, max_k: int = 40):
    """A valid sample set (positions [K, 2] in [-1, 1], values in [0, 1]) in one of the accepted layouts."""
    k = draw(st.integers(min_k, max_k))
    pos = draw(hnp.arrays(np.float64, (k, 2), elements=unit))
    val = draw(hnp.arrays(np.float64, (k, 1), elements=st.floats(0, 1)))
    layout = draw(st.sampled_from(["float32", "float64", "fortran", "list", "flat"]))
    if layout == "float32":
        return pos.astype(np.float32), val.astype(np.float32)
    if layout == "fortran":
        return np.asfortranarray(pos), val
    if layout == "list":
        return pos.tolist(), val.tolist()
    if layout == "flat":
        return pos, val[:, 0]
    return pos, val


def queries(max_q: int = 12):
    """Valid query positions [Q, 2]."""
    return st.integers(1, max_q).flatmap(lambda q: hnp.arrays(np.float64, (q, 2), elements=unit))


maybe_sets = st.one_of(sample_sets(), st.tuples(anything, anything),
                       sample_sets().flatmap(lambda s: st.tuples(st.just(s[0]), anything)),
                       st.tuples(hnp.arrays(np.float64, (3, 2), elements=st.floats(-3, 3)),
                                 hnp.arrays(np.float64, (3, 1), elements=st.floats(-1, 2))))
seeds = st.one_of(st.integers(0, 2**32), st.none())
bad_counts = st.sampled_from([-1, 0, 1.5, None, "2", True, 10**12, np.float64(2.0), [2]])


# -- encode, query, mean ----------------------------------------------------------------------------------

@props(80)
@given(data=st.data())
def test_query_and_mean(runtime_model, data):
    pos, val = data.draw(maybe_sets)
    q = data.draw(st.one_of(queries(), anything))
    before = snapshot(pos, val, q)
    mean = attempt(runtime_model.mean, (pos, val), q)
    dist = attempt(runtime_model.query, (pos, val), q)
    assert_unchanged(before, (pos, val, q))
    assert (mean is REFUSED) == (dist is REFUSED)
    if mean is not REFUSED:
        batch = np.shape(q)[:-1]  # [Q] or, for a batched [1, Q, 2], [1, Q]
        assert_values(mean, batch + (1,))
        assert dist.shape == batch
        np.testing.assert_allclose(dist.mean(), mean, atol=1e-5)


@props(40)
@given(sets=st.one_of(st.lists(sample_sets(), min_size=1, max_size=4), st.lists(maybe_sets, max_size=3), anything),
       q=queries())
def test_encode_batch(runtime_model, sets, q):
    before = snapshot(sets)
    ctx = attempt(runtime_model.encode_batch, sets)
    assert_unchanged(before, (sets,))
    if ctx is not REFUSED:
        assert ctx.batch == len(sets) and len(repr(ctx)) < 100
        out = runtime_model.mean(ctx, np.broadcast_to(q, (len(sets),) + q.shape))
        assert_values(out, (len(sets), len(q), 1))
        single = runtime_model.mean(tuple(sets[0]), q)
        np.testing.assert_allclose(out[0], single, atol=1e-5)


@props(40)
@given(s=sample_sets(), shape=st.one_of(st.just((28, 28)), st.just([28, 28]), st.tuples(st.integers(-3, 40),
                                                                                      st.integers(-3, 40)), anything),
       return_std=st.booleans())
def test_mean_image(runtime_model, s, shape, return_std):
    out = attempt(runtime_model.mean_image, *s, shape, return_std=return_std)
    sequence = isinstance(shape, (tuple, list)) or (isinstance(shape, np.ndarray) and shape.ndim == 1)
    ok = shape is None or (sequence and len(shape) == 2
                           and all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in list(shape))
                           and min(shape) >= 1)  # any resolution: positions are continuous (issue 11.3)
    assert (out is not REFUSED) == ok, shape
    if ok:
        want = (28, 28, 1) if shape is None else (int(shape[0]), int(shape[1]), 1)
        for part in (out if return_std else (out,)):
            assert part.shape == want and np.isfinite(part).all()
        assert_values(out[0] if return_std else out, want)


# -- sampling ---------------------------------------------------------------------------------------------

@props(60)
@given(s=sample_sets(), q=queries(8), num_samples=st.one_of(st.integers(1, 3), bad_counts),
       seed=st.one_of(seeds, scalars), autoregressive=st.one_of(st.integers(0, 8), scalars),
       step_fraction=st.one_of(st.floats(0, 0.99), scalars),
       temperature=st.one_of(st.floats(0.05, 3), scalars))
def test_sample(runtime_model, s, q, num_samples, seed, autoregressive, step_fraction, temperature):
    kwargs = dict(num_samples=num_samples, seed=seed, autoregressive=autoregressive, step_fraction=step_fraction,
                  temperature=temperature)
    out = attempt(runtime_model.sample, *s, q, **kwargs)
    if out is not REFUSED:
        assert_values(out, (num_samples, len(q), 1))
        if seed is not None:
            np.testing.assert_array_equal(out, runtime_model.sample(*s, q, **kwargs))


@props(25)
@given(k=st.integers(770, 784), seed=seeds, num_samples=st.one_of(st.integers(1, 2), bad_counts),
       shape=st.one_of(st.none(), st.just((28, 28)), anything), step_fraction=st.one_of(st.just(0.0), scalars))
def test_sample_images(runtime_model, test_image, k, seed, num_samples, shape, step_fraction):
    pos, val = observe_random(test_image, k, seed=0)
    out = attempt(runtime_model.sample_images, pos, val, shape, num_samples, seed, step_fraction=step_fraction)
    if out is not REFUSED:
        assert_values(out, (num_samples, 28, 28, 1))
        np.testing.assert_array_equal(observe_mask(out[0], observe_mask_of(pos))[1], val)  # observed pixels kept
        if seed is not None:
            again = runtime_model.sample_images(pos, val, shape, num_samples, seed, step_fraction=step_fraction)
            np.testing.assert_array_equal(out, again)


def observe_mask_of(pos) -> np.ndarray:
    """The 28x28 bool mask of the pixels at positions (pixel centres)."""
    mask = np.zeros((28, 28), bool)
    col = np.round((pos[:, 0] + 1) / 2 * 28 - 0.5).astype(int)
    row = np.round((pos[:, 1] + 1) / 2 * 28 - 0.5).astype(int)
    mask[row, col] = True
    return mask


# -- Distribution -----------------------------------------------------------------------------------------

@props(80)
@given(s=sample_sets(max_k=20), q=queries(6), v=st.one_of(st.floats(-10, 10), hnp.arrays(np.float64,
       st.sampled_from([(1,), (6,), (6, 1), (2, 1, 1), (3, 6, 1)]), elements=st.floats(-10, 10)), anything),
       rng=st.one_of(seeds, scalars), temperature=st.one_of(st.floats(1e-300, 1e3), scalars))
def test_distribution_methods(runtime_model, s, q, v, rng, temperature):
    dist = runtime_model.query(s, q)
    n = len(q)
    assert dist.shape == (n,) and len(repr(dist)) < 100
    assert np.allclose(dist.probs.sum(-1), 1) and (dist.sigmas > 0).all()
    assert_values(dist.mean(), (n, 1))
    var = dist.variance()
    assert var.shape == (n, 1) and np.isfinite(var).all() and (var >= 0).all()
    before = snapshot(v)
    for method in (dist.log_prob, dist.cdf):
        out = attempt(method, v)
        if out is not REFUSED:
            want = np.broadcast_shapes(np.shape(v)[:-1] if np.ndim(v) and np.shape(v)[-1] == 1 else np.shape(v),
                                       (n,))
            assert out.shape == want and not np.isnan(out).any()
            if np.abs(np.asarray(v, np.float64)).max(initial=0) <= 1e6:
                assert np.isfinite(out).all()
            if method == dist.cdf:
                assert (out >= -1e-7).all() and (out <= 1 + 1e-7).all()
    assert_unchanged(before, (v,))
    draw = attempt(dist.sample, rng, temperature)
    if draw is not REFUSED:
        assert_values(draw, (n, 1))
        if rng is not None:
            np.testing.assert_array_equal(draw, dist.sample(rng, temperature))
        assert_values(dist[: max(1, n // 2)].sample(rng, temperature), (max(1, n // 2), 1))


# -- image helpers ----------------------------------------------------------------------------------------

images = st.one_of(hnp.arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 6)), elements=st.floats(0, 1)),
                   hnp.arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 3)),
                              elements=st.floats(0, 1, width=32)),
                   anything)


@props(80)
@given(image=images, k=st.one_of(st.integers(-2, 40), scalars), seed=st.one_of(seeds, scalars))
def test_observe_random(image, k, seed):
    before = snapshot(image)
    out = attempt(observe_random, image, k, seed)
    assert_unchanged(before, (image,))
    if out is not REFUSED:
        pos, val = out
        img = np.asarray(image, np.float32)
        channels = 1 if img.ndim == 2 else img.shape[2]
        assert pos.shape == (k, 2) and val.shape == (k, channels) and np.abs(pos).max() < 1
        assert len(np.unique(pos, axis=0)) == k and np.isfinite(val).all()
        if seed is not None:
            np.testing.assert_array_equal(pos, observe_random(image, k, seed)[0])


@props(80)
@given(data=st.data(), image=images)
def test_observe_mask_and_compose(data, image):
    shape = np.shape(image)[:2] if isinstance(image, np.ndarray) and image.ndim >= 2 else (3, 3)
    mask = data.draw(st.one_of(hnp.arrays(st.sampled_from([np.bool_, np.float64, np.uint8]), shape),
                               hnp.arrays(np.float64, shape + (3,), elements=st.floats(0, 1)), anything))
    other = data.draw(st.one_of(st.just(np.zeros(image.shape if isinstance(image, np.ndarray) else (3, 3))), anything))
    before = snapshot(image, mask, other)
    got = attempt(observe_mask, image, mask)
    mixed = attempt(compose, image, other, mask)
    assert_unchanged(before, (image, mask, other))
    m = np.asarray(mask, np.float64) if mixed is not REFUSED or got is not REFUSED else None
    if m is not None and m.ndim == 3:
        m = m.mean(-1)
    if got is not REFUSED:
        assert len(got[0]) == (m > 0.5).sum() and np.isfinite(got[1]).all()
    if mixed is not REFUSED:
        img = np.asarray(image, np.float32)
        img = img[..., None] if img.ndim == 2 else img
        assert mixed.shape == img.shape
        np.testing.assert_array_equal(mixed[m > 0.5], img[m > 0.5])  # the same rule as observe_mask


@props(60)
@given(h=st.one_of(st.integers(-2, 64), st.integers(10**5, 10**7), scalars), w=st.one_of(st.integers(-2, 64), scalars))
def test_grid_positions(h, w):
    out = attempt(grid_positions, h, w)
    if out is not REFUSED:
        assert out.shape == (h * w, 2) and out.dtype == np.float32 and np.abs(out).max() < 1
        assert np.isclose(out[:, 0].min(), 1 / w - 1, atol=1e-6) and np.isclose(out[:, 1].max(), 1 - 1 / h, atol=1e-6)


@props(50)
@given(logits=hnp.arrays(np.float64, (3, 4), elements=st.floats(-30, 30)),
       offsets=hnp.arrays(np.float64, (3, 4, 1), elements=st.floats(-0.2, 0.2)),
       log_sigma=hnp.arrays(np.float64, (3, 4), elements=st.floats(-8, 1)),
       value_range=st.one_of(st.none(), st.just((0.0, 1.0)), anything), temperature=st.floats(1e-300, 1e6))
def test_distribution_from_arrays(logits, offsets, log_sigma, value_range, temperature):
    centers = np.linspace(0, 1, 4)[:, None]
    dist = attempt(Distribution, logits, offsets, log_sigma, centers, value_range)
    if dist is REFUSED:
        return
    for out in (dist.mean(), dist.sample(0, temperature), dist.variance()):
        assert out.shape == (3, 1) and np.isfinite(out).all()
    if dist.value_range is not None:
        lo, hi = dist.value_range
        assert dist.mean().min() >= lo and dist.sample(1, temperature).max() <= hi
    assert np.isfinite(dist.log_prob(0.5)).all() and dist.cdf(np.array([[0.2], [0.5], [0.9]])).shape == (3,)


# -- issue 31: bools, progress callbacks, contexts ----------------------------------------------------------

@props(40)
@given(s=sample_sets(max_k=12), q=queries(6), which=st.sampled_from(["positions", "values", "queries"]),
       progress=st.one_of(st.none(), st.just(lambda d, t: None), scalars))
def test_bool_arrays_and_bad_progress_are_refused(runtime_model, s, q, which, progress):
    """Property: a bool array as positions, values or query positions is refused (True would become 1.0), and
    progress is None or a callable; otherwise mean and sample run."""
    pos, val = np.asarray(s[0], np.float64), np.asarray(s[1], np.float64)
    flip = {"positions": pos, "values": val, "queries": np.asarray(q)}
    flip[which] = flip[which] > 0.5
    ok_progress = progress is None or callable(progress)
    for call in (lambda: runtime_model.mean((flip["positions"], flip["values"]), flip["queries"], progress=progress),
                 lambda: runtime_model.sample(flip["positions"], flip["values"], flip["queries"], progress=progress)):
        with pytest.raises(InputError, match="array of bools" if ok_progress else "bools|progress"):
            call()
    if ok_progress:
        assert_values(runtime_model.mean((pos, val), q, progress=progress), (len(q), 1))


@props(10)
@given(s=sample_sets(max_k=12), q=queries(6))
def test_a_context_is_answered_only_by_its_own_graphs(runtime_model, s, q):
    """Property: the same model answers its Context as it answers the arrays; another identity refuses it."""
    from dataclasses import replace

    ctx = runtime_model.encode(*s)
    np.testing.assert_allclose(runtime_model.mean(ctx, q), runtime_model.mean(s, q), atol=1e-6)
    with pytest.raises(InputError, match="encoded by another model"):
        runtime_model.mean(replace(ctx, model_id="another"), q)


# -- threads ----------------------------------------------------------------------------------------------

@props(8)
@given(sets=st.lists(sample_sets(max_k=30), min_size=2, max_size=4), q=queries(10), seed=st.integers(0, 1000))
def test_threads_equal_serial_calls(runtime_model, sets, q, seed):
    def work(s):
        return (runtime_model.mean(s, q), runtime_model.query(s, q).log_prob(0.5),
                runtime_model.sample(*s, q, num_samples=2, seed=seed, autoregressive=4))

    serial = [work(s) for s in sets]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(work, sets))
    for a, b in zip(serial, threaded):
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, atol=1e-6)


def test_suite_uses_the_tiny_model(runtime_model):
    """The properties above run on the session's tiny model (2 heads, 16 bins): cheap enough for CI."""
    assert runtime_model.info.bins == 16 and runtime_model.heads == 2
    with pytest.raises(InputError):
        runtime_model.mean_image(np.zeros((1, 2)), np.full((1, 1), 2.0))
