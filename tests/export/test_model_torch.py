"""Properties of the torch network: set semantics of the encoder and query independence."""
import torch

from export.config import ModelConfig
from export.model import PixelTransformer


def small_model(pos_dim=2, val_dim=1):
    torch.manual_seed(0)
    return PixelTransformer(ModelConfig(pos_dim=pos_dim, val_dim=val_dim, d_model=32, n_heads=2, enc_layers=2,
                                        dec_layers=2, ffn=64, num_bins=8 if val_dim == 1 else 1)).eval()


@torch.no_grad()
def test_sample_order_does_not_matter():
    m = small_model()
    pos, val, q = torch.rand(1, 20, 2) * 2 - 1, torch.rand(1, 20, 1), torch.rand(1, 7, 2) * 2 - 1
    mask = torch.ones(1, 20, dtype=torch.bool)
    perm = torch.randperm(20)
    a = m(pos, val, mask, q)
    b = m(pos[:, perm], val[:, perm], mask, q)
    torch.testing.assert_close(a.logits, b.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.mean(), b.mean(), atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_padding_changes_nothing():
    m = small_model()
    pos, val, q = torch.rand(1, 10, 2) * 2 - 1, torch.rand(1, 10, 1), torch.rand(1, 5, 2) * 2 - 1
    ref = m(pos, val, torch.ones(1, 10, dtype=torch.bool), q)
    ppos = torch.cat([pos, torch.rand(1, 6, 2)], 1)
    pval = torch.cat([val, torch.rand(1, 6, 1) * 100], 1)  # garbage in the padding
    mask = torch.arange(16)[None] < 10
    out = m(ppos, pval, mask, q)
    torch.testing.assert_close(out.logits, ref.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.offsets, ref.offsets, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_queries_are_independent_of_each_other():
    m = small_model()
    pos, val = torch.rand(1, 10, 2) * 2 - 1, torch.rand(1, 10, 1)
    mask = torch.ones(1, 10, dtype=torch.bool)
    q = torch.rand(1, 6, 2) * 2 - 1
    full = m(pos, val, mask, q).mean()
    single = m(pos, val, mask, q[:, 2:3]).mean()
    torch.testing.assert_close(full[:, 2:3], single, atol=1e-6, rtol=1e-5)


@torch.no_grad()
def test_bounded_sigma_and_offsets():
    m = small_model()
    for p in m.parameters():
        p.add_(torch.randn_like(p) * 5)  # extreme weights
    out = m(torch.rand(1, 4, 2), torch.rand(1, 4, 1), torch.ones(1, 4, dtype=torch.bool), torch.rand(1, 3, 2))
    sigma = out.log_sigma.exp()
    assert torch.isfinite(out.logits).all() and sigma.min() >= 1e-3 - 1e-7 and sigma.max() <= 1.0 + 1e-6
    assert out.offsets.abs().max() <= 2 * (1 / 7) + 1e-6


@torch.no_grad()
def test_fully_padded_set_gives_finite_outputs():
    """A set with no real sample (every key masked) stays NaN-free: MASK_FILL is finite."""
    m = small_model()
    pos, val, q = torch.rand(2, 6, 2) * 2 - 1, torch.rand(2, 6, 1), torch.rand(2, 4, 2) * 2 - 1
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[1, :3] = True  # a real set beside the empty one in the same batch
    out = m(pos, val, mask, q)
    for t in (out.logits, out.offsets, out.log_sigma, out.mean()):
        assert torch.isfinite(t).all()


@torch.no_grad()
def test_padding_changes_no_real_output_in_a_batch():
    """Sets of different sizes padded into one batch give each set's unpadded outputs (memory included)."""
    m = small_model()
    sizes = [3, 11, 1]
    sets = [(torch.rand(1, k, 2) * 2 - 1, torch.rand(1, k, 1)) for k in sizes]
    q = torch.rand(1, 5, 2) * 2 - 1
    n = max(sizes)
    pos = torch.cat([torch.cat([p, torch.rand(1, n - p.shape[1], 2) * 50], 1) for p, _ in sets])
    val = torch.cat([torch.cat([v, torch.full((1, n - v.shape[1], 1), 1e3)], 1) for _, v in sets])
    mask = torch.arange(n)[None] < torch.tensor(sizes)[:, None]
    memory = m.encoder(pos, val, mask)
    batched = m(pos, val, mask, q.expand(len(sizes), -1, -1))
    for i, (p, v) in enumerate(sets):
        alone = m(p, v, torch.ones(1, sizes[i], dtype=torch.bool), q)
        torch.testing.assert_close(memory[i, :sizes[i]], m.encoder(p, v, torch.ones(1, sizes[i], dtype=torch.bool))[0],
                                   atol=1e-5, rtol=1e-5)
        for name in ("logits", "offsets", "log_sigma"):
            torch.testing.assert_close(getattr(batched, name)[i:i + 1], getattr(alone, name), atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_folded_attention_equals_plain_multi_head_attention():
    """Issue 18 folds 1/sqrt(dh), a constant-1 feature and the key bias into the projections; the result is
    still softmax(q k^T / sqrt(dh) + bias) v with the module's own weights, live and frozen for export."""
    import math

    from export.model import MASK_FILL, Attention, frozen_for_export, key_bias

    torch.manual_seed(0)
    att = Attention(32, 4, 0.0).eval()
    x, mem = torch.randn(2, 5, 32), torch.randn(2, 7, 32)
    mask = torch.tensor([[True] * 7, [True] * 3 + [False] * 4])
    h, dh = 4, 8
    q = att.q(x).view(2, 5, h, dh).transpose(1, 2)
    k, v = (t.view(2, 7, h, dh).transpose(1, 2) for t in att.kv(mem).chunk(2, dim=-1))
    scores = q @ k.transpose(-1, -2) / math.sqrt(dh) + torch.where(mask, 0.0, MASK_FILL)[:, None, None, :]
    want = att.proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 5, 32))
    torch.testing.assert_close(att(x, mem, key_bias(mask)), want, atol=1e-5, rtol=1e-5)
    with frozen_for_export(att):
        assert att.frozen is not None
        torch.testing.assert_close(att(x, mem, key_bias(mask)), want, atol=1e-5, rtol=1e-5)
    assert att.frozen is None
    assert set(att.state_dict()) == {f"{n}.{p}" for n in ("q", "kv", "proj") for p in ("weight", "bias")}


def test_key_bias_is_zero_for_samples_and_finite_for_padding():
    from export.model import MASK_FILL, key_bias

    bias = key_bias(torch.tensor([[True, False, True]]))
    assert bias.shape == (1, 1, 1, 3)
    assert bias.flatten().tolist() == [0.0, MASK_FILL, 0.0]
    assert torch.isfinite(key_bias(torch.zeros(1, 2, dtype=torch.bool), torch.float16)).all()


def test_normalize_values_maps_the_value_range_to_plus_minus_one():
    """With normalize_values the encoder sees (v - centre) / half-range: the same as feeding those values raw."""
    torch.manual_seed(0)
    plain = ModelConfig(pos_dim=3, val_dim=1, d_model=32, n_heads=2, enc_layers=1, dec_layers=1, ffn=64,
                        num_bins=8, value_range=(-0.3, 0.3))
    scaled = ModelConfig(**{**plain.__dict__, "normalize_values": True})
    a, b = PixelTransformer(plain).eval(), PixelTransformer(scaled).eval()
    b.load_state_dict(a.state_dict())
    pos, val = torch.rand(2, 5, 3) * 2 - 1, torch.rand(2, 5, 1) * 0.6 - 0.3
    mask = torch.ones(2, 5, dtype=torch.bool)
    assert torch.allclose(b.encoder(pos, val, mask), a.encoder(pos, val / 0.3, mask), atol=1e-5)
    assert not torch.allclose(b.encoder(pos, val, mask), a.encoder(pos, val, mask), atol=1e-3)


def test_init_std_zero_scales_by_fan_in():
    torch.manual_seed(0)
    m = PixelTransformer(ModelConfig(d_model=64, n_heads=2, enc_layers=1, dec_layers=1, ffn=256, num_bins=8,
                                     init_std=0.0))
    w = m.decoder.blocks[0].ff[2].weight  # 256 -> 64
    assert abs(float(w.std()) - 256 ** -0.5) < 0.1 * 256 ** -0.5


@torch.no_grad()
def test_locality_init_makes_attention_peak_at_the_same_position():
    """With locality_init, a fresh decoder's first cross-attention gives a query most weight on the sample
    at its own position; without it, attention is nearly uniform."""
    def first_layer_weights(alpha):
        torch.manual_seed(0)
        cfg = ModelConfig(pos_dim=2, d_model=64, n_heads=2, enc_layers=1, dec_layers=1, ffn=64, num_bins=8,
                          locality_init=alpha)
        m = PixelTransformer(cfg).eval()
        pos = torch.rand(1, 32, 2) * 2 - 1
        mem = m.encoder(pos, torch.rand(1, 32, 1), torch.ones(1, 32, dtype=torch.bool))
        att = m.decoder.blocks[0].att
        q_in = m.decoder.blocks[0].ln1(torch.cat([m.decoder.query_token.expand(1, 32, -1),
                                                  m.decoder.posenc(pos)], -1))
        q = att.q(q_in).view(1, 32, att.h, att.dh).transpose(1, 2)
        k = att.kv(mem).view(1, 32, 2, att.h, att.dh)[:, :, 0].transpose(1, 2)
        w = torch.softmax(q @ k.transpose(-1, -2) / att.dh ** 0.5, -1)[0].mean(0)  # [queries, keys]
        return float(w.diagonal().mean()), float(w.mean())
    own, avg = first_layer_weights(1.5)
    assert own > 5 * avg
    own0, avg0 = first_layer_weights(0.0)
    assert own0 < 1.5 * avg0


def test_fourier_axis_scales_scale_each_axis_of_the_frequency_matrix():
    base = ModelConfig(pos_dim=3, d_model=32, n_heads=2, enc_layers=1, dec_layers=1, ffn=32, num_bins=4)
    plain = PixelTransformer(base).encoder.posenc.B
    wide_t = ModelConfig(**{**base.__dict__, "fourier_axis_scales": [1.0, 2.0, 0.25]})
    scaled = PixelTransformer(wide_t).encoder.posenc.B
    torch.testing.assert_close(scaled, plain * torch.tensor([1.0, 2.0, 0.25])[:, None])


def test_fourier_axis_scales_need_one_positive_number_per_axis():
    import pytest

    from export.config import ConfigError

    for bad in ([1.0, 1.0], [1.0, 0.0, 1.0]):
        with pytest.raises(ConfigError, match="fourier_axis_scales must be 3 positive numbers"):
            ModelConfig(pos_dim=3, fourier_axis_scales=bad).validate()
