"""Issue 32: the causal buffer. Encoding S once and adding drawn tokens through cached keys and values computes
exactly what the teacher-forced causal forward computes, and given S alone nothing changes."""
from pathlib import Path

import pytest
import torch

from export.cache import cached_step, context_caches
from export.config import ModelConfig
from export.model import PixelTransformer, buffer_biases
from tiny_configs import CONFIGS

GP_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "gp-curves.json"



def random_set(cfg: ModelConfig, b: int, n: int, g: torch.Generator):
    lo, hi = cfg.value_range
    return torch.rand(b, n, cfg.pos_dim, generator=g) * 2 - 1, lo + (hi - lo) * torch.rand(b, n, cfg.val_dim,
                                                                                            generator=g)


@pytest.fixture(params=sorted(CONFIGS))
def model(request):
    torch.manual_seed(0)
    return PixelTransformer(CONFIGS[request.param]).eval()


def laws_close(a, b, atol=2e-5):
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=atol, rtol=1e-5)


@torch.no_grad()
def test_queries_given_s_alone_are_todays_computation(model):
    """The buffer's queries (S only) and the context graph's first law equal the plain forward pass."""
    g = torch.Generator().manual_seed(1)
    spos, sval = random_set(model.cfg, 2, 7, g)
    smask = torch.ones(2, 7, dtype=torch.bool)
    smask[1, 5:] = False  # a padded set
    bpos, bval = random_set(model.cfg, 2, 4, g)
    qpos, _ = random_set(model.cfg, 2, 5, g)
    plain = model(spos, sval, smask, qpos)
    _, queries = model(spos, sval, smask, qpos, bpos, bval)
    laws_close((queries.logits, queries.offsets, queries.log_sigma), (plain.logits, plain.offsets, plain.log_sigma))
    first = context_caches(model, spos, sval, smask, qpos)[4:]
    laws_close(first, (plain.logits, plain.offsets, plain.log_sigma))


@torch.no_grad()
@pytest.mark.parametrize("per_step", [1, 3])
def test_cached_steps_equal_the_causal_forward(model, per_step):
    """Drawing a buffer of 6 tokens, `per_step` at a time through the caches, gives at every buffer position the
    law the teacher-forced causal forward gives there (from S and the earlier buffer tokens)."""
    g = torch.Generator().manual_seed(2)
    spos, sval = random_set(model.cfg, 2, 5, g)
    smask = torch.ones(2, 5, dtype=torch.bool)
    smask[0, 3:] = False
    bpos, bval = random_set(model.cfg, 2, 6, g)
    qpos, _ = random_set(model.cfg, 2, 3, g)
    want, _ = model(spos, sval, smask, qpos, bpos, bval)

    if per_step == 1:  # exact sampling: the next position is queried after each token
        ek, ev, dk, dv, *first = context_caches(model, spos, sval, smask, bpos[:, :1])
        got = [first]
        mask = smask
        for j in range(6):
            nxt = bpos[:, j + 1:j + 2] if j < 5 else qpos[:, :1]
            caches = (*ek, *ev, *dk, *dv)
            nk, nv, ndk, ndv, *law = cached_step(model, bpos[:, j:j + 1], bval[:, j:j + 1], caches, mask, nxt)
            ek, ev, dk, dv = (torch.cat([a, b], 3) for a, b in ((ek, nk), (ev, nv), (dk, ndk), (dv, ndv)))
            mask = torch.cat([mask, torch.ones(2, 1, dtype=torch.bool)], 1)
            if j < 5:
                got.append(law)
        for j, law in enumerate(got):
            laws_close(law, (want.logits[:, j:j + 1], want.offsets[:, j:j + 1], want.log_sigma[:, j:j + 1]))
    else:  # several tokens per step: causal among themselves; the law of the next block given all before it
        ek, ev, dk, dv, *_ = context_caches(model, spos, sval, smask, qpos)
        mask = smask
        nk, nv, ndk, ndv, *_ = cached_step(model, bpos[:, :3], bval[:, :3], (*ek, *ev, *dk, *dv), mask, qpos)
        ek, ev, dk, dv = (torch.cat([a, b], 3) for a, b in ((ek, nk), (ev, nv), (dk, ndk), (dv, ndv)))
        mask = torch.cat([mask, torch.ones(2, 3, dtype=torch.bool)], 1)
        # token 3 given S and tokens 0..2: query it through a step that adds token 3 itself
        law3 = context_free_law(model, ek, ev, dk, dv, mask, bpos, bval, 3)
        laws_close(law3, (want.logits[:, 3:4], want.offsets[:, 3:4], want.log_sigma[:, 3:4]))


def context_free_law(model, ek, ev, dk, dv, mask, bpos, bval, j):
    """The law at buffer position j from the caches holding S and buffer tokens < j: a step with no new token
    is not a graph; decode directly from the decoder caches."""
    from export.cache import _decode
    from export.model import key_bias

    return _decode(model, list(dk), list(dv), key_bias(mask), bpos[:, j:j + 1])


def test_buffer_biases_shape_the_attention():
    """S never reads the buffer; buffer token j reads S and tokens ≤ j; its prediction reads tokens < j."""
    smask = torch.tensor([[True, True, False]])
    enc, dec = buffer_biases(smask, 3, 2)
    allowed = lambda b: (b[0, 0] == 0).int().tolist()  # noqa: E731
    assert allowed(enc) == [[1, 1, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0],
                            [1, 1, 0, 1, 0, 0], [1, 1, 0, 1, 1, 0], [1, 1, 0, 1, 1, 1]]
    assert allowed(dec) == [[1, 1, 0, 0, 0, 0], [1, 1, 0, 1, 0, 0], [1, 1, 0, 1, 1, 0],
                            [1, 1, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0]]


def test_training_with_a_buffer_records_its_figure(tmp_path):
    """`--buffer-max` trains the causal buffer beside the queries: the loss stays finite and every validation
    reports the buffer's NLL next to today's (gp-curves: drawn on the fly, no data needed)."""
    from export.train import main

    out = tmp_path / "run"
    assert main(["--config", str(GP_CONFIG), "--steps", "6", "--val-every", "3", "--log-every", "3",
                 "--buffer-max", "8", "--d-model", "16", "--ffn", "24", "--enc-layers", "1", "--dec-layers", "1",
                 "--num-queries", "16", "--threads", "1", "--precision", "fp32", "--out", str(out)]) == 0
    history = torch.load(out / "model.pt", weights_only=False)["history"]
    assert [h["step"] for h in history] == [0, 3, 6]
    assert all(torch.isfinite(torch.tensor([h["val_nll"], h["val_buffer_nll"]])).all() for h in history)


@pytest.mark.parametrize("flags, message", [(["--buffer-max", "16", "--num-queries", "16"], "buffer_max must be"),
                                            (["--buffer-max", "-1"], "buffer_max must be"),
                                            (["--buffer-weight", "1.5"], "buffer_weight must be")])
def test_a_bad_buffer_setting_is_refused_before_any_work(flags, message, tmp_path, capsys):
    from export.train import main

    assert main(["--config", str(GP_CONFIG), *flags, "--out", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
