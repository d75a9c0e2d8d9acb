"""Mixed-precision int8 (export.quantize.fallback): graph surgery back to float32 and the choice of MatMuls."""
import json

import numpy as np
import onnx
import pytest
from test_precision import copy_export

from export.quantize import fallback as int8_fallback
from export.quantize.__main__ import main
from export.quantize.calibration import calibration_feeds
from export.quantize.graphs import session
from export.quantize.parity import TOLERANCES
from export.quantize.static_int8 import make_int8


@pytest.fixture(scope="module")
def qdq(tiny_export, tmp_path_factory):
    """Full int8 graphs of the tiny export (no gate), next to their float32 sources."""
    folder = tmp_path_factory.mktemp("qdq")
    meta = json.loads((tiny_export / "model.json").read_text())
    paths = (folder / "encoder.q.onnx", folder / "decoder.q.onnx")
    feeds = calibration_feeds(tiny_export, meta, "random")
    for src, dst, f in zip(("encoder.onnx", "decoder.onnx"), paths, feeds):
        make_int8(tiny_export / src, dst, f)
    return paths


def encoder_memory(path, seed=0):
    rng = np.random.default_rng(seed)
    sess = session(path)
    feed = {"sample_positions": rng.uniform(-1, 1, (2, 20, 2)).astype(np.float32),
            "sample_values": rng.uniform(0, 1, (2, 20, 1)).astype(np.float32),
            "sample_mask": np.ones((2, 20), bool)}
    return sess.run(None, feed)[0]


def test_every_matmul_back_in_float_gives_the_float_graph(tiny_export, qdq, tmp_path):
    fp, q = onnx.load(str(tiny_export / "encoder.onnx")), onnx.load(str(qdq[0]))
    names = int8_fallback.quantized_matmuls(q)
    assert names, "the tiny encoder has quantized MatMuls"
    none_left = int8_fallback.keep_float(q, fp, names)
    assert not [n for n in none_left.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    onnx.save(none_left, str(tmp_path / "e.onnx"))
    want, full_int8 = encoder_memory(tiny_export / "encoder.onnx"), encoder_memory(qdq[0])
    assert np.abs(full_int8 - want).max() > 1e-4  # quantization did change it
    np.testing.assert_allclose(encoder_memory(tmp_path / "e.onnx"), want, atol=1e-5)


def test_one_matmul_back_in_float_leaves_the_others_int8(tiny_export, qdq, tmp_path):
    fp, q = onnx.load(str(tiny_export / "encoder.onnx")), onnx.load(str(qdq[0]))
    names = int8_fallback.quantized_matmuls(q)
    mixed = int8_fallback.keep_float(q, fp, names[:1])
    assert int8_fallback.quantized_matmuls(mixed) == names[1:]
    onnx.checker.check_model(mixed)
    with pytest.raises(KeyError, match="no such MatMul"):
        int8_fallback.keep_float(q, fp, ["not_a_node"])


class FakePair:
    """Nodes with known additive errors: write() hands the float set to parity as the 'encoder path'."""

    def __init__(self, errors):
        self.errors = errors

    def all_names(self):
        return [(0, n) for n in self.errors]

    def write(self, float_nodes, tag):
        return frozenset(float_nodes), None


def additive_parity(pair):
    return lambda floats, _: {"mean_value_max_abs_diff": sum(e for n, e in pair.errors.items()
                                                             if (0, n) not in floats),
                              "mean_value_mean_abs_diff": 0.0}


TOL = {"mean_value_max_abs_diff": 1.0, "mean_value_mean_abs_diff": 1.0}


def quiet(line):
    pass


def test_the_fewest_worst_matmuls_go_back_to_float():
    pair = FakePair({"a": 0.1, "b": 0.9, "c": 0.05, "d": 0.6, "e": 0.2, "f": 0.01, "g": 0.0, "h": 0.0, "i": 0.0})
    # total 1.86: dropping b (0.9) leaves 0.96 <= 1
    assert int8_fallback.choose_float_nodes(pair, additive_parity(pair), TOL, log=quiet, target=1.0) == [(0, "b")]
    pair.errors["d"] = 0.95  # total 2.21: dropping d leaves 1.26, d and b 0.36
    assert int8_fallback.choose_float_nodes(pair, additive_parity(pair), TOL, log=quiet, target=1.0) == \
        [(0, "d"), (0, "b")]


def test_the_choice_keeps_headroom_for_the_held_out_gate():
    pair = FakePair({"a": 0.1, "b": 0.9, "c": 0.05, "d": 0.6, "e": 0.2, "f": 0.01, "g": 0.0, "h": 0.0, "i": 0.0})
    # dropping b leaves 0.96: inside the gate, not inside 0.7 of it; b and d leave 0.36
    assert int8_fallback.choose_float_nodes(pair, additive_parity(pair), TOL, log=quiet, target=0.7) == \
        [(0, "b"), (0, "d")]


def test_no_choice_when_more_than_a_third_would_stay_float():
    pair = FakePair({n: 0.5 for n in "abcdefghi"})  # 4.5: seven would have to go back, three may
    assert int8_fallback.choose_float_nodes(pair, additive_parity(pair), TOL, log=quiet, target=1.0) is None


def test_quantize_records_the_matmuls_kept_float(tiny_export, tmp_path, monkeypatch):
    folder = copy_export(tiny_export, tmp_path / "tiny")
    # a gate only float32 meets, and every MatMul allowed back: the fallback must put them all back
    monkeypatch.setitem(TOLERANCES, "int8", {"mean_value_max_abs_diff": 1e-9, "mean_value_mean_abs_diff": 1e-9})
    monkeypatch.setattr(int8_fallback, "MAX_FLOAT_SHARE", 1.0)
    assert main([str(folder), "--int8"]) == 0
    entry = json.loads((folder / "model.json").read_text())["variants"]["int8"]
    kept = entry["float32_matmuls"]
    assert kept["encoder"] and kept["decoder"]
    assert "kept float32" in entry["method"]
    assert entry["parity"]["mean_value_max_abs_diff"] <= 1e-9
    assert not list(folder.glob("*.tmp"))
    meta = {p.key: p.value for p in onnx.load(str(folder / "encoder.int8.onnx")).metadata_props}
    assert meta["pt_plugin_precision"] == "int8"
