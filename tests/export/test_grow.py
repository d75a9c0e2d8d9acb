"""Depth growth (export.grow): a deeper model from trained weights starts out computing the same function."""
import dataclasses
import json

import pytest
import torch

from export import grow
from export.config import ModelConfig
from export.errors import ExportError
from export.model import PixelTransformer

SMALL = ModelConfig(d_model=32, n_heads=2, enc_layers=2, dec_layers=1, ffn=64, num_bins=8, locality_init=1.0)


def trained_like(cfg: ModelConfig) -> PixelTransformer:
    """A model whose every weight is random (zero-initialised biases would hide a mis-copied block)."""
    torch.manual_seed(0)
    model = PixelTransformer(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def outputs(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    sp, sv, qp = torch.rand(2, 9, 2, generator=g), torch.rand(2, 9, 1, generator=g), torch.rand(2, 5, 2, generator=g)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, 6:] = False
    with torch.no_grad():
        mix = model(sp, sv, mask, qp)
        buf, _ = model(sp, sv, mask, qp, torch.rand(2, 3, 2, generator=g), torch.rand(2, 3, 1, generator=g))
    return [mix.logits, mix.offsets, mix.log_sigma, buf.logits]


@pytest.mark.parametrize("enc,dec", [(3, 1), (4, 3), (2, 2)])
def test_a_grown_model_computes_what_the_trained_one_does(enc, dec):
    small = trained_like(SMALL)
    new = dataclasses.replace(SMALL, enc_layers=enc, dec_layers=dec)
    big = PixelTransformer(new)
    big.load_state_dict(grow.grow_state_dict(small.state_dict(), SMALL, new, big.state_dict()))
    for a, b in zip(outputs(small), outputs(big.eval())):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    # and the new blocks are real blocks that training can move: only their residual outputs start at zero
    fresh = [i for i in range(enc) if i not in grow.old_block_slots(SMALL.enc_layers, enc)]
    for i in fresh:
        blk = big.encoder.blocks[i]
        assert blk.att.proj.weight.abs().max() == 0 and blk.att.q.weight.abs().max() > 0


def test_old_blocks_keep_their_order_spread_over_the_new_stack():
    assert grow.old_block_slots(4, 6) == [0, 1, 3, 4]
    assert grow.old_block_slots(4, 4) == [0, 1, 2, 3]
    assert grow.old_block_slots(1, 3) == [0]


@pytest.mark.parametrize("change", [{"d_model": 64}, {"ffn": 128}, {"enc_layers": 1}])
def test_anything_but_depth_growth_is_refused_with_a_message(change):
    new = dataclasses.replace(SMALL, **change)
    with pytest.raises(ExportError, match="grow|shrink|differ"):
        grow.grow_state_dict(trained_like(SMALL).state_dict(), SMALL, new, PixelTransformer(new).state_dict())


def test_init_from_a_shallower_checkpoint_grows_it(tiny_run, tmp_path):
    """export.train --init with more layers: the run starts at the checkpoint's validation NLL."""
    from export.train import main

    cfg = json.loads((tiny_run / "config.json").read_text())
    cfg["model"]["enc_layers"] += 1
    cfg["train"].update(out=str(tmp_path), steps=2, val_every=2, ckpt_every=2, log_every=2, limit=200)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    assert main(["--config", str(tmp_path / "cfg.json"), "--init", str(tiny_run / "model.pt")]) == 0
    ck = torch.load(tmp_path / "model.pt", weights_only=False)
    before = torch.load(tiny_run / "model.pt", weights_only=False)["history"][-1]["val_nll"]
    assert ck["history"][0]["step"] == 0 and ck["history"][0]["val_nll"] == pytest.approx(before, abs=1e-4)
    assert ck["config"]["model"]["enc_layers"] == cfg["model"]["enc_layers"]
