"""bf16 mixed-precision training (export.precision): the choice, the float32 islands, the fused attention, and
that a bf16 run learns and exports like an fp32 one."""
import json

import pytest
import torch

from export import precision
from export.config import ModelConfig
from export.model import PixelTransformer

CPU = torch.device("cpu")


def tiny_model(**kw) -> PixelTransformer:
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=32, n_heads=2, enc_layers=1, dec_layers=1, ffn=64, num_bins=16, **kw)
    return PixelTransformer(cfg)


def batch(b=3, k=20, q=12, pos_dim=2, val_dim=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(b, k, dtype=torch.bool)
    mask[0, k // 2:] = False  # padding in the batch
    return (torch.rand(b, k, pos_dim, generator=g) * 2 - 1, torch.rand(b, k, val_dim, generator=g), mask,
            torch.rand(b, q, pos_dim, generator=g) * 2 - 1, torch.rand(b, q, val_dim, generator=g))


def test_auto_picks_bf16_only_where_the_cpu_has_it(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx512_bf16": False, "amx_bf16": False})
    prec, why = precision.choose("auto", CPU)
    assert prec == "fp32" and "neither AVX512_BF16 nor AMX_BF16" in why
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx512_bf16": True, "amx_bf16": False})
    assert precision.choose("auto", CPU) == ("bf16", "auto: the CPU has AVX512_BF16")
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx512_bf16": False, "amx_bf16": True})
    assert precision.choose("auto", CPU)[0] == "bf16"


def test_explicit_precisions_are_kept_and_emulated_bf16_is_flagged(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx512_bf16": False, "amx_bf16": False})
    assert precision.choose("fp32", CPU)[0] == "fp32"
    prec, why = precision.choose("bf16", CPU)
    assert prec == "bf16" and "emulated" in why
    with pytest.raises(precision.PrecisionError, match="one of auto, fp32, bf16"):
        precision.choose("fp16", CPU)


def test_attention_auto_fuses_from_the_measured_key_count_on_a_cpu():
    assert precision.fused_attention("auto", "bf16", CPU) == precision.FUSE_FROM_CPU["bf16"] > 0
    assert precision.fused_attention("auto", "fp32", CPU) == precision.FUSE_FROM_CPU["fp32"] > 0
    assert precision.fused_attention("folded", "fp32", CPU) is None
    assert precision.fused_attention("fused", "bf16", CPU) == 0
    assert precision.describe_attention(640) == "folded attention below 640 keys, fused from there"
    with pytest.raises(precision.PrecisionError, match="one of auto, folded, fused"):
        precision.fused_attention("flash", "bf16", CPU)


def test_cpu_flags_are_booleans():
    flags = precision.cpu_flags()
    assert set(flags) == {"avx512_bf16", "amx_bf16"} and all(isinstance(v, bool) for v in flags.values())


@pytest.mark.parametrize("argv", [["--precision", "half"], ["--precision", "BF16"]])
def test_a_bad_precision_is_refused_before_any_work(argv, tmp_path, capsys):
    from export.train import main

    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "precision must be one of auto, fp32, bf16" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_a_bad_attention_is_refused(tmp_path, capsys):
    from export.train import main

    assert main(["--attention", "flash", "--out", str(tmp_path / "run")]) == 2
    assert "attention must be one of auto, folded, fused" in capsys.readouterr().err


def test_a_bad_precision_in_a_config_file_is_refused(tmp_path, capsys):
    from export.train import main

    (tmp_path / "cfg.json").write_text(json.dumps({"train": {"precision": "int8"}}))
    assert main(["--config", str(tmp_path / "cfg.json")]) == 2
    assert "'int8'" in capsys.readouterr().err


@pytest.mark.parametrize("fused", [False, True])
def test_islands_stay_float32_under_bf16_autocast(fused):
    """Fourier features, value embedding and output head run in float32; the blocks really run in bf16."""
    model = tiny_model().fuse_attention(0 if fused else None)
    seen: dict[str, torch.dtype] = {}

    def record(name):
        return lambda _m, _inp, out: seen.__setitem__(name, (out[0] if isinstance(out, tuple) else out).dtype)

    model.encoder.posenc.register_forward_hook(record("posenc"))
    model.encoder.value_embed.register_forward_hook(record("value_embed"))
    model.decoder.head.register_forward_hook(record("head"))
    model.encoder.blocks[0].ff[0].register_forward_hook(record("block_linear"))
    model.decoder.blocks[0].att.proj.register_forward_hook(record("attention_out"))
    spos, sval, mask, qpos, qval = batch()
    with precision.autocast("bf16", CPU):
        mix = model(spos, sval, mask, qpos)
    assert seen["posenc"] == seen["value_embed"] == seen["head"] == torch.float32, seen
    assert seen["block_linear"] == seen["attention_out"] == torch.bfloat16, seen
    assert mix.logits.dtype == mix.offsets.dtype == mix.log_sigma.dtype == torch.float32
    assert mix.loss(qval, 0.1).dtype == torch.float32


def test_islands_are_no_ops_without_autocast():
    model = tiny_model()
    spos, sval, mask, qpos, _ = batch()
    mix = model(spos, sval, mask, qpos)
    assert mix.logits.dtype == torch.float32


@pytest.mark.parametrize("normalize", [False, True])
def test_fused_attention_equals_the_folded_one(normalize):
    """Training's scaled_dot_product_attention and the exported folded formulation: same outputs and gradients."""
    spos, sval, mask, qpos, qval = batch(k=33, q=17)
    outs, grads = [], []
    for fused in (False, True):
        model = tiny_model(normalize_values=normalize).fuse_attention(0 if fused else None)
        loss = model(spos, sval, mask, qpos).loss(qval, 0.1).mean()
        loss.backward()
        outs.append(loss.detach())
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    assert torch.allclose(outs[0], outs[1], rtol=1e-5, atol=1e-6)
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_attention_is_fused_only_from_the_threshold_on():
    model = tiny_model().fuse_attention(21)
    att = model.encoder.blocks[0].att
    calls = []
    fused = att.fused_forward
    att.fused_forward = lambda *a: calls.append(a[1].shape[1]) or fused(*a)
    for k in (20, 21, 30):
        spos, sval, mask, qpos, _ = batch(k=k)
        model(spos, sval, mask, qpos)
    assert calls == [21, 30]


def test_an_export_never_uses_the_fused_attention():
    from export.model import frozen_for_export

    model = tiny_model().fuse_attention(0)
    att = model.decoder.blocks[0].att
    calls = []
    att.fused_forward = lambda *a: calls.append(a)  # would be called by a fused forward
    with frozen_for_export(model):
        model(*batch()[:4])
    assert not calls


@pytest.mark.parametrize("fused", [False, True])
def test_bf16_training_steps_lower_a_finite_loss(fused):
    model = tiny_model().fuse_attention(0 if fused else None)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    spos, sval, mask, qpos, qval = batch(b=4, k=24, q=32)
    losses = []
    for _ in range(40):
        with precision.autocast("bf16", CPU):
            mix = model(spos, sval, mask, qpos)
        loss = mix.loss(qval, 0.1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(map(lambda x: x == x and abs(x) < 1e6, losses)), losses
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5, losses
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay float32
    assert all(s.dtype == torch.float32 for st in opt.state.values() for s in st.values() if s.dim())


def test_the_tiny_run_trained_in_bf16_and_its_export_passed_parity(tiny_run, tiny_export):
    """conftest's tiny model trains with precision bf16; its fp32 graphs passed export.onnx.graphs's parity gate."""
    ck = torch.load(tiny_run / "model.pt", weights_only=False)
    assert ck["precision"] == "bf16"
    meta = json.loads((tiny_export / "model.json").read_text())
    assert meta["training"]["precision"] == "bf16"
    assert ck["config"]["train"]["precision"] == "bf16"
