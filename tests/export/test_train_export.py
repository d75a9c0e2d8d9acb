"""A tiny real training run lowers its validation loss; its ONNX export matches torch."""
import json

import numpy as np
import pytest
import torch

from export.onnx.graphs import ExportError, export, load_checkpoint, validate


def test_training_lowers_validation_loss(tiny_run):
    ck = torch.load(tiny_run / "model.pt", weights_only=False)
    hist = ck["history"]
    assert ck["step"] == 200 and [h["step"] for h in hist] == [0, 100, 200]
    assert hist[-1]["val_loss"] < hist[0]["val_loss"] - 0.5, hist
    assert hist[-1]["val_nll"] < hist[0]["val_nll"] - 0.5, hist


def test_resume_continues_from_last_checkpoint(tiny_run, tmp_path):
    from export.train import main

    cfg = json.loads((tiny_run / "config.json").read_text())
    cfg["train"].update(out=str(tmp_path), steps=20, val_every=10, ckpt_every=10, log_every=10, limit=200)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    assert main(["--config", str(tmp_path / "cfg.json"), "--steps", "10"]) == 0
    assert main(["--config", str(tmp_path / "cfg.json"), "--resume"]) == 0
    ck = torch.load(tmp_path / "last.pt", weights_only=False)
    assert ck["step"] == 20 and [h["step"] for h in ck["history"]] == [0, 10, 20]


def test_a_run_stopped_on_time_validates_its_final_weights(tiny_run, tmp_path):
    """--max-minutes between two validations: the history ends with the final weights' figure (an
    equal-wall-clock comparison needs it; it used to end at the last scheduled validation)."""
    from export.train import main

    cfg = json.loads((tiny_run / "config.json").read_text())
    cfg["train"].update(out=str(tmp_path), steps=100000, val_every=100000, ckpt_every=100000, log_every=100000,
                        limit=200, max_minutes=0.01)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    assert main(["--config", str(tmp_path / "cfg.json")]) == 0
    ck = torch.load(tmp_path / "model.pt", weights_only=False)
    assert ck["step"] > 0 and [h["step"] for h in ck["history"]] == [0, ck["step"]]
    assert ck["metrics"]["step"] == ck["step"]


def test_fine_tuning_records_the_earlier_training(tiny_run, tmp_path):
    """--init keeps the lineage, so an export reports every step the weights have seen."""
    from export.onnx.graphs import model_metadata
    from export.train import main

    cfg = json.loads((tiny_run / "config.json").read_text())
    cfg["train"].update(out=str(tmp_path), steps=5, val_every=5, ckpt_every=5, log_every=5, limit=200)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    assert main(["--config", str(tmp_path / "cfg.json"), "--init", str(tiny_run / "model.pt")]) == 0
    model, ck = load_checkpoint(tmp_path / "model.pt")
    assert ck["step"] == 5 and [r["steps"] for r in ck["lineage"]] == [200]
    assert [h["step"] for h in ck["lineage"][0]["history"]] == [0, 100, 200]  # the earlier run's curve
    training = model_metadata(model, ck, "tiny", "0", [28, 28], None)["training"]
    assert training["steps"] == 5 and training["total_steps"] == 205
    assert "history" not in training["earlier_runs"][0]  # model.json stays small


def test_export_files_and_metadata(tiny_export):
    import onnx

    meta = json.loads((tiny_export / "model.json").read_text())
    assert meta["pos_dim"] == 2 and meta["val_dim"] == 1 and meta["grid"] == [28, 28] and meta["bins"] == 16
    assert np.asarray(meta["bin_centers"]).shape == (16, 1)
    for name in ("encoder.onnx", "decoder.onnx"):
        m = onnx.load(str(tiny_export / name))
        assert m.opset_import[0].version >= 18
        props = {p.key: p.value for p in m.metadata_props}
        assert json.loads(props["pt_plugin"])["name"] == meta["name"]
        assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in m.graph.initializer)


def test_opset_23_graphs_compute_what_opset_20_graphs_do(tiny_run, tiny_export, tmp_path):
    """From opset 23 each attention is one standard Attention node (no [B, H, Lq, K] scores in the graph); the
    numbers are the folded formulation's, so an opset-20 export of the same checkpoint gives the same law."""
    import onnx

    import pt_plugin
    from export.onnx.graphs import main

    old = tmp_path / "tiny20"
    assert main([str(tiny_run / "model.pt"), "--out", str(old), "--grid", "28,28", "--sizes", "1,7", "--opset",
                 "20"]) == 0
    metas = {f: json.loads((f / "model.json").read_text()) for f in (old, tiny_export)}
    assert (metas[old]["opset"], metas[old]["requires_onnxruntime"]) == (20, "1.18")
    assert (metas[tiny_export]["opset"], metas[tiny_export]["requires_onnxruntime"]) == (23, "1.23")
    arch = metas[old]["architecture"]
    for folder, per_layer in ((old, 0), (tiny_export, 1)):
        for name, layers in (("encoder.onnx", arch["enc_layers"]), ("decoder.onnx", arch["dec_layers"])):
            m = onnx.load(str(folder / name))
            assert m.opset_import[0].version == metas[folder]["opset"]
            assert sum(n.op_type == "Attention" for n in m.graph.node) == per_layer * layers
    rng = np.random.default_rng(0)
    pos, val = rng.uniform(-1, 1, (300, 2)).astype(np.float32), rng.uniform(0, 1, (300, 1)).astype(np.float32)
    queries = rng.uniform(-1, 1, (50, 2)).astype(np.float32)
    a, b = (pt_plugin.load(model_path=f, device="cpu") for f in (old, tiny_export))
    np.testing.assert_allclose(a.mean((pos, val), queries), b.mean((pos, val), queries), atol=1e-5, rtol=0)


def test_a_model_that_needs_a_newer_onnxruntime_is_refused_before_loading(tiny_export, monkeypatch):
    import pt_plugin
    from pt_plugin import sessions

    monkeypatch.setattr(sessions.ort, "__version__", "1.22.1")
    with pytest.raises(pt_plugin.InputError, match=r"ONNX opset 23\) need onnxruntime >= 1.23; this is onnxruntime "
                                                    r"1.22.1: upgrade onnxruntime-gpu$"):
        pt_plugin.load(model_path=tiny_export, device="cpu")


def test_parity_with_padding_and_large_sets(tiny_run, tiny_export):
    model, _ = load_checkpoint(tiny_run / "model.pt")
    worst = validate(model, tiny_export, sizes=(1, 7, 64, 2048), batches=(1, 3), num_queries=20)
    assert worst < 1e-4


def test_export_refuses_to_overwrite(tiny_run, tiny_export):
    model, ck = load_checkpoint(tiny_run / "model.pt")
    with pytest.raises(ExportError, match="--force"):
        export(model, ck, tiny_export, "tiny")


def test_bad_checkpoint_is_reported(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ExportError):
        load_checkpoint(tmp_path / "x.pt")
    with pytest.raises(ExportError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
