"""The value distribution: torch Mixture (training) and numpy Distribution (runtime) agree and are right."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from export.model import Mixture
from pt_plugin.distribution import Distribution, _erf, draw_mixture


def random_mixture(batch=(4, 5), bins=8, val_dim=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(*batch, bins, generator=g)
    offsets = 0.05 * torch.randn(*batch, bins, val_dim, generator=g)
    log_sigma = torch.log(0.02 + 0.1 * torch.rand(*batch, bins, generator=g))
    centers = torch.linspace(0, 1, bins).unsqueeze(1).repeat(1, val_dim)
    return Mixture(logits, offsets, log_sigma, centers)


def to_numpy(mix):
    return Distribution(mix.logits.numpy(), mix.offsets.numpy(), mix.log_sigma.numpy(), mix.centers.numpy())


def test_mean_is_probability_weighted_component_means():
    mix = random_mixture()
    q = torch.softmax(mix.logits, -1)
    expected = (q[..., None] * (mix.centers + mix.offsets)).sum(-2)
    torch.testing.assert_close(mix.mean(), expected)
    np.testing.assert_allclose(to_numpy(mix).mean(), expected.numpy(), atol=1e-6)


def test_loss_uses_nearest_bin():
    centers = torch.tensor([[0.0], [0.5], [1.0]])
    logits = torch.tensor([[0.0, 3.0, -3.0]])
    mix = Mixture(logits, torch.zeros(1, 3, 1), torch.log(torch.full((1, 3), 0.1)), centers)
    v = torch.tensor([[0.45]])  # nearest centre: 0.5 (index 1)
    logq1 = torch.log_softmax(logits, -1)[0, 1]
    expected = -logq1 + 0.1 * (math.log(0.1) + 0.5 * 0.05**2 / 0.1**2)
    torch.testing.assert_close(mix.loss(v, alpha=0.1), expected.reshape(1), rtol=1e-5, atol=1e-6)
    assert mix.nearest_bin(torch.tensor([[0.8], [0.2]])).tolist() == [2, 0]


def test_sigma_is_a_standard_deviation():
    centers = torch.tensor([[0.5]])
    mix = Mixture(torch.zeros(20000, 1), torch.zeros(20000, 1, 1), torch.log(torch.full((20000, 1), 0.07)), centers)
    draws = mix.sample(torch.Generator().manual_seed(0))
    assert abs(draws.std().item() - 0.07) < 0.002
    np_draws = to_numpy(mix).sample(np.random.default_rng(0))
    assert abs(np_draws.std() - 0.07) < 0.002
    assert abs(np_draws.mean() - 0.5) < 0.002


def test_numpy_and_torch_log_prob_agree():
    mix = random_mixture(val_dim=2)
    v = torch.rand(4, 5, 2)
    np.testing.assert_allclose(to_numpy(mix).log_prob(v.numpy()), mix.log_prob(v).numpy(), rtol=1e-5, atol=1e-5)


def test_log_prob_integrates_to_one_and_cdf_matches():
    mix = to_numpy(random_mixture(batch=(3,)))
    xs = np.linspace(-1, 2, 30001)
    dens = np.exp(mix.log_prob(np.broadcast_to(xs[:, None, None], (len(xs), 3, 1))))
    total = np.trapezoid(dens, xs, axis=0)
    np.testing.assert_allclose(total, 1.0, atol=1e-4)
    cum = np.cumsum(dens, 0) * (xs[1] - xs[0])
    i = np.searchsorted(xs, 0.4)
    np.testing.assert_allclose(mix.cdf(np.full(3, xs[i])), cum[i], atol=2e-3)


def test_sampling_follows_bin_probabilities():
    logits = np.log(np.array([[0.2, 0.5, 0.3]]))
    d = Distribution(np.repeat(logits, 30000, 0), np.zeros((30000, 3, 1)), np.log(np.full((30000, 3), 1e-3)),
                     np.array([[0.0], [0.5], [1.0]]))
    draws = d.sample(np.random.default_rng(1))[:, 0]
    freq = [np.mean(np.abs(draws - c) < 0.01) for c in (0.0, 0.5, 1.0)]
    np.testing.assert_allclose(freq, [0.2, 0.5, 0.3], atol=0.015)
    with pytest.raises(ValueError, match="temperature"):
        d.sample(0, temperature=0)


def test_variance_matches_draws():
    d = to_numpy(random_mixture(batch=(1,)))
    big = Distribution(np.repeat(d.logits, 50000, 0), np.repeat(d.offsets, 50000, 0),
                       np.repeat(d.log_sigma, 50000, 0), d.centers)
    draws = big.sample(np.random.default_rng(2))
    np.testing.assert_allclose(draws.var(), d.variance()[0, 0], rtol=0.03)


def test_erf_is_accurate():
    x = np.linspace(-5, 5, 1001)
    np.testing.assert_allclose(_erf(x), [math.erf(t) for t in x], atol=2e-7)


def reference_draw(logits, offsets, log_sigma, centers, rng, temperature):
    """The textbook draw: normalised tempered probabilities, inverse CDF, then the component's Gaussian."""
    q = np.exp(logits - logits.max(-1, keepdims=True))
    q = q / q.sum(-1, keepdims=True)
    w = q ** (1.0 / temperature)
    cum = np.cumsum(w / w.sum(-1, keepdims=True), -1)
    u = rng.random(logits.shape[:-1] + (1,))
    b = np.minimum((u > cum).sum(-1), logits.shape[-1] - 1)
    mu = centers[b] + np.take_along_axis(offsets, b[..., None, None], -2)[..., 0, :]
    sigma = np.exp(np.take_along_axis(log_sigma, b[..., None], -1))
    return mu + temperature * sigma * rng.standard_normal(mu.shape)


@settings(max_examples=60, deadline=None)
@given(batch=st.lists(st.integers(1, 4), min_size=0, max_size=2), bins=st.integers(1, 40),
       val_dim=st.integers(1, 3), temperature=st.sampled_from([1.0, 0.5, 0.8, 2.0]), seed=st.integers(0, 10**6))
def test_draw_mixture_is_the_textbook_draw(batch, bins, val_dim, temperature, seed):
    """The samplers' trimmed draw takes the same components and the same values as normalising first, from the same
    random numbers (up to rounding at a bin edge, which these cases never hit)."""
    g = np.random.default_rng(seed)
    logits = 3 * g.standard_normal((*batch, bins))
    offsets = 0.05 * g.standard_normal((*batch, bins, val_dim)).astype(np.float32)
    log_sigma = np.log(0.01 + 0.1 * g.random((*batch, bins)))
    centers = g.random((bins, val_dim))
    got = draw_mixture(logits, offsets, log_sigma, centers, np.random.default_rng(seed), temperature)
    want = reference_draw(logits, offsets.astype(np.float64), log_sigma, centers, np.random.default_rng(seed),
                          temperature)
    assert got.shape == (*batch, val_dim) and got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_tempered_draws_follow_sharpened_probabilities():
    q = np.array([0.2, 0.5, 0.3])
    n = 30000
    draws = draw_mixture(np.repeat(np.log(q)[None], n, 0), np.zeros((n, 3, 1)), np.log(np.full((n, 3), 1e-3)),
                         np.array([[0.0], [0.5], [1.0]]), np.random.default_rng(3), 0.5)[:, 0]
    freq = [np.mean(np.abs(draws - c) < 0.01) for c in (0.0, 0.5, 1.0)]
    np.testing.assert_allclose(freq, q**2 / (q**2).sum(), atol=0.015)
