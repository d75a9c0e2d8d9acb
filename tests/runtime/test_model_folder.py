"""Issue 16.2-16.3: a model folder is checked at load; a broken one is a WeightsError naming the file."""
import json
import shutil

import numpy as np
import pytest

import pt_plugin
from pt_plugin import WeightsError


@pytest.fixture()
def folder(tiny_export, tmp_path):
    dst = tmp_path / "m"
    shutil.copytree(tiny_export, dst)
    return dst


def edit_meta(folder, change):
    meta = json.loads((folder / "model.json").read_text())
    meta = change(meta)
    (folder / "model.json").write_text(json.dumps(meta))


def test_export_records_the_sha256_of_its_graphs(tiny_export):
    meta = json.loads((tiny_export / "model.json").read_text())
    assert set(meta["files"]) == {"encoder.onnx", "decoder.onnx"}
    assert all(v.startswith("sha256:") and len(v) == 71 for v in meta["files"].values())


def test_a_flipped_byte_is_refused(folder):
    data = bytearray((folder / "encoder.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "encoder.onnx").write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="encoder.onnx does not match the sha256"):
        pt_plugin.load(model_path=folder, device="cpu")


@pytest.mark.parametrize("content", [b"", b"garbage bytes, not a protobuf", "truncated"])
def test_unloadable_graphs_name_the_file(folder, content):
    edit_meta(folder, lambda m: {k: v for k, v in m.items() if k != "files"})  # an export without hashes
    path = folder / "decoder.onnx"
    path.write_bytes(path.read_bytes()[:200] if content == "truncated" else content)
    with pytest.raises(WeightsError, match="decoder.onnx is not a loadable ONNX graph"):
        pt_plugin.load(model_path=folder, device="cpu")


@pytest.mark.parametrize("change, message", [
    (lambda m: {k: v for k, v in m.items() if k != "pos_dim"}, "'pos_dim' must be an integer"),
    (lambda m: {**m, "pos_dim": "two"}, "'pos_dim' must be an integer"),
    (lambda m: {**m, "value_range": [0]}, "value_range"),
    (lambda m: None, "expected a JSON object"),
    (lambda m: {**m, "architecture": {**m["architecture"], "n_heads": 0}}, "'n_heads' must be an integer >= 1"),
    (lambda m: {**m, "bin_centers": m["bin_centers"][:-1]}, "bin_centers"),
    (lambda m: {**m, "pos_dim": 3, "grid": None, "signal": {**m["signal"], "axes": ["x", "y", "t"],
                                                            "grid": None}}, "ends in 2, but model.json says 3"),
    (lambda m: {**m, "bins": 8, "bin_centers": m["bin_centers"][:8]}, "decoder output logits ends in"),
    (lambda m: {**m, "signal": {**m["signal"], "kind": "sound"}}, "signal.kind"),
    (lambda m: {**m, "grid": [14, 14]}, "signal.grid .* and grid .* differ"),
    (lambda m: {**m, "signal": {**m["signal"], "value_range": [0.0, 2.0]}},
     r"signal.value_range .* and value_range .* differ"),  # issue 31: the duplicates must agree
])
def test_broken_model_json_is_refused_at_load(folder, change, message):
    edit_meta(folder, change)
    with pytest.raises(WeightsError, match=message) as err:
        pt_plugin.load(model_path=folder, device="cpu")
    assert "model.json" in str(err.value)


def test_invalid_json(folder):
    (folder / "model.json").write_text("{not json")
    with pytest.raises(WeightsError, match="not valid JSON"):
        pt_plugin.load(model_path=folder, device="cpu")


def test_graph_io_contract_without_pt_plugin(tiny_export, runtime_model):
    """A client in another language needs only onnxruntime and model.json (issue 11.1): recompute the mean
    from the graph_io block's formulas with plain numpy and compare with pt_plugin's."""
    import onnxruntime as ort

    meta = json.loads((tiny_export / "model.json").read_text())
    io = meta["graph_io"]
    assert "true = a real sample" in io["encoder"]["inputs"]["sample_mask"]
    assert io["distribution"]["mean"] == "sum_b q[b] * m[b]"
    # issue 31: what a JavaScript client had to guess is written down in every new export
    assert "unclipped mean" in io["distribution"]["variance"] and "not clipped" in io["distribution"]["std"]
    assert "float64" in io["distribution"]["precision"] and "all padding" in io["padding"]
    assert {"bin_centers", "alpha", "architecture", "demo.npz", "variants"} <= set(io["fields"])
    assert "baked into the graphs" in io["fields"]["architecture"]
    assert f"onnxruntime >= {meta['requires_onnxruntime']}" in io["runtime"] and "opset 23" in io["runtime"]
    enc = ort.InferenceSession(str(tiny_export / "encoder.onnx"), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(tiny_export / "decoder.onnx"), providers=["CPUExecutionProvider"])
    h, w = meta["signal"]["grid"]
    assert meta["signal"]["axes"] == ["x", "y"] and meta["signal"]["array_axes"] == ["y", "x"]
    rng = np.random.default_rng(0)
    # two sets, the second padded: positions at cell centres (i + 0.5) / n * 2 - 1, columns (x, y)
    cells = rng.choice(h * w, 30, replace=False)
    xy = np.stack([(cells % w + 0.5) / w * 2 - 1, (cells // w + 0.5) / h * 2 - 1], -1).astype(np.float32)
    vals = rng.uniform(*meta["value_range"], (30, 1)).astype(np.float32)
    pos = np.stack([xy, np.where(np.arange(30)[:, None] < 12, xy, 0)])
    val = np.stack([vals, np.where(np.arange(30)[:, None] < 12, vals, 0)])
    mask = np.stack([np.ones(30, bool), np.arange(30) < 12])
    (memory,) = enc.run(None, {"sample_positions": pos, "sample_values": val, "sample_mask": mask})
    ys, xs = np.meshgrid((np.arange(h) + 0.5) / h * 2 - 1, (np.arange(w) + 0.5) / w * 2 - 1, indexing="ij")
    q = np.broadcast_to(np.stack([xs.ravel(), ys.ravel()], -1).astype(np.float32), (2, h * w, 2)).copy()
    logits, offsets, log_sigma = dec.run(None, {"memory": memory, "sample_mask": mask, "query_positions": q})
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    means = np.asarray(meta["bin_centers"]) + offsets
    mean = np.clip((probs[..., None] * means).sum(-2), *meta["value_range"])
    for i, k in enumerate((30, 12)):
        want = runtime_model.mean_image(xy[:k], vals[:k])
        np.testing.assert_allclose(mean[i].reshape(h, w, 1), want, atol=1e-5)
    second = (probs[..., None] * (means ** 2 + np.exp(log_sigma)[..., None] ** 2)).sum(-2)
    assert np.all(second - mean ** 2 > -1e-6)


def test_graphs_mask_once_and_fuse_gelu(tiny_export):
    """Issue 18: the mask is one Where over [batch, samples] per graph (no full-size Where or Add per layer),
    GELU is one standard Gelu node per layer, and the query projections are plain initializers (int8 sees
    them) with no Mul or Concat on their output."""
    import onnx

    for name in ("encoder.onnx", "decoder.onnx"):
        model = onnx.load(str(tiny_export / name))
        ops = [n.op_type for n in model.graph.node]
        assert ops.count("Where") == 1, name
        assert "Erf" not in ops and ops.count("Gelu") >= 1, name
        inits = {i.name for i in model.graph.initializer}
        products = [n for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and n.input[1] not in inits]
        assert len(products) == 2 * ops.count("Softmax"), name  # only scores and weights·values multiply activations


def test_graphs_use_standard_operators_only(tiny_export):
    """Issue 18: the default graphs run in onnx's reference evaluator (standard ops, no contrib ops), with
    padding, and agree with onnxruntime."""
    import onnx
    import onnxruntime as ort
    from onnx.reference import ReferenceEvaluator

    rng = np.random.default_rng(0)
    pos = rng.uniform(-1, 1, (2, 9, 2)).astype(np.float32)
    val = rng.uniform(0, 1, (2, 9, 1)).astype(np.float32)
    mask = np.stack([np.ones(9, bool), np.arange(9) < 4])
    q = rng.uniform(-1, 1, (2, 5, 2)).astype(np.float32)
    outs = []
    for run in ("reference", "onnxruntime"):
        graphs = []
        for name in ("encoder.onnx", "decoder.onnx"):
            model = onnx.load(str(tiny_export / name))
            assert {op.domain for op in model.opset_import} <= {"", "ai.onnx"}
            graphs.append(ReferenceEvaluator(model) if run == "reference" else
                          ort.InferenceSession(str(tiny_export / name), providers=["CPUExecutionProvider"]))
        (memory,) = graphs[0].run(None, {"sample_positions": pos, "sample_values": val, "sample_mask": mask})
        outs.append(graphs[1].run(None, {"memory": memory, "sample_mask": mask, "query_positions": q}))
    for ref, got in zip(*outs):
        np.testing.assert_allclose(ref, got, atol=1e-4, rtol=1e-4)
