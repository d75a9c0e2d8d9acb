"""export.tools.diagnose: the conditioning gain is zero when shuffling S changes nothing, positive once it matters."""
import torch

from export.config import ModelConfig
from export.model import PixelTransformer
from export.tools.diagnose import conditioning_gain, own_key_weight


def small_model() -> PixelTransformer:
    torch.manual_seed(0)
    return PixelTransformer(ModelConfig(pos_dim=2, val_dim=1, d_model=32, n_heads=2, enc_layers=1, dec_layers=1,
                                        ffn=64, num_bins=8, normalize_values=True, init_std=0.0, locality_init=1.5))


def batch(values: torch.Tensor):
    """Sets that observe the query positions themselves, with the given per-set values [B, K, 1]."""
    b, k, _ = values.shape
    pos = torch.rand(b, k, 2, generator=torch.Generator().manual_seed(1)) * 2 - 1
    return pos, values, torch.ones(b, k, dtype=torch.bool), pos, values


def test_identical_sets_gain_nothing():
    same = torch.full((3, 5, 1), 0.7)
    r = conditioning_gain(small_model(), [batch(same)])
    assert r["gain"] == 0.0 and r["with_s"] == r["shuffled_s"]


def test_gain_is_the_difference_and_values_matter():
    vals = torch.stack([torch.full((5, 1), v) for v in (0.0, 0.5, 1.0)])
    r = conditioning_gain(small_model(), [batch(vals)] * 2)
    assert abs(r["gain"] - (r["with_s"] - r["shuffled_s"])) < 1e-9
    assert r["gain"] != 0.0  # other sets' values change the prediction


def test_copy_error_is_measured_at_the_samples_own_positions():
    vals = torch.stack([torch.full((5, 1), v) for v in (0.0, 0.5, 1.0)])
    pos, v, mask, _, _ = batch(vals)
    far = torch.full((3, 5, 2), 0.99)  # queries elsewhere, with other values: copy_mse must not see them
    r = conditioning_gain(small_model(), [(pos, v, mask, far, 1 - v)])
    model = small_model().eval()
    with torch.no_grad():
        want = ((model(pos, v, mask, pos).mean() - v) ** 2).mean().item()
        at_queries = ((model(pos, v, mask, far).mean() - (1 - v)) ** 2).mean().item()
    assert abs(r["copy_mse"] - want) < 1e-6 and abs(r["query_mse"] - at_queries) < 1e-6
    assert r["copy_mse"] != r["query_mse"]


def test_own_key_weight_reads_the_first_blocks_attention_at_each_samples_own_key():
    """Per head, the softmax weight a query at sample i's position gives key i (padding excluded), checked
    against attention recomputed by hand from the block's weights; uniform attention is 1/|S| per set."""
    model = small_model().eval()
    vals = torch.rand(2, 6, 1, generator=torch.Generator().manual_seed(2))
    pos, v, mask, _, _ = batch(vals)
    mask[1, 4:] = False  # a padded set: 4 real samples
    w = own_key_weight(model, [(pos, v, mask, pos, v)])
    att = model.decoder.blocks[0].att
    with torch.no_grad():
        mem = model.encoder(pos, v, mask)
        x = model.decoder.blocks[0].ln1(model.decoder.tokens(pos))
        q, k = att.q(x), att.kv(mem)[..., :32]
        h, dh = 2, 16
        q, k = q.view(2, 6, h, dh).transpose(1, 2), k.view(2, 6, h, dh).transpose(1, 2)
        scores = q @ k.transpose(-1, -2) / dh ** 0.5
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
        own = torch.diagonal(torch.softmax(scores, -1), dim1=-2, dim2=-1)  # [B, H, K]
        want = [(own[:, i][mask]).mean().item() for i in range(h)]
    assert len(w["own_key"]) == h
    assert max(abs(a - b) for a, b in zip(w["own_key"], want)) < 1e-5
    assert abs(w["uniform"] - (6 * (1 / 6) + 4 * (1 / 4)) / 10) < 1e-6
