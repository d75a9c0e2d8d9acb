"""Weight-only int8 (export.quantize.weight_only): the int8 variant made when static int8 misses the gate."""
import json

import numpy as np
import onnx
import pytest
from test_precision import copy_export

import pt_plugin
from export.quantize import static_int8
from export.quantize import weight_only as int8_weight_only
from export.quantize.__main__ import main
from export.quantize.batch_independence import independence_ok, independence_tolerance
from export.quantize.parity import TOLERANCES, within
from pt_plugin import grid_positions, observe_random


def badly_calibrated(real_make_int8):
    """static int8 calibrated on values a hundredth of the real ones: its activations saturate, far over the gate."""
    def make_int8(src, dst, feeds):
        shrunk = [{k: v * np.float32(0.01) if v.dtype == np.float32 else v for k, v in f.items()} for f in feeds]
        return real_make_int8(src, dst, shrunk)
    return make_int8


@pytest.fixture(scope="module")
def weight_only(tiny_export, tmp_path_factory):
    """The tiny export quantized with a static int8 that cannot pass: the weight-only tier is what is kept."""
    folder = copy_export(tiny_export, tmp_path_factory.mktemp("weight_only") / "tiny")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(static_int8, "make_int8", badly_calibrated(static_int8.make_int8))
        assert main([str(folder), "--int8", "--no-float-fallback"]) == 0
    return folder


def test_weight_only_is_recorded_as_the_int8_variant(weight_only):
    entry = json.loads((weight_only / "model.json").read_text())["variants"]["int8"]
    assert entry["method"] == int8_weight_only.METHOD
    assert "float32_matmuls" not in entry
    assert within(entry["parity"], TOLERANCES["int8"])
    assert independence_ok({k: v for k, v in entry["batch_independence"].items() if k != "tolerance"})
    for role in ("encoder", "decoder"):
        graph = onnx.load(str(weight_only / f"{role}.int8.onnx"))
        assert sum(n.op_type == "MatMulNBits" for n in graph.graph.node) > 0
        assert not [n for n in graph.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
        assert {p.key: p.value for p in graph.metadata_props}["pt_plugin_precision"] == "int8"
    assert not list(weight_only.glob("*.tmp"))


def test_weight_only_graphs_are_smaller(weight_only):
    for role in ("encoder", "decoder"):
        assert (weight_only / f"{role}.int8.onnx").stat().st_size < 0.6 * (weight_only / f"{role}.onnx").stat().st_size


def test_weight_only_runs_batch_independent_and_close_to_fp32(weight_only, runtime_model, test_image):
    model = pt_plugin.load(model_path=weight_only, device="cpu", precision="int8")
    grid = grid_positions(28, 28)
    target = observe_random(test_image, 30, seed=0)
    alone = model.mean(model.encode(*target), grid)
    batched = model.mean(model.encode_batch([observe_random(test_image, 200, seed=2), target]),
                         np.broadcast_to(grid, (2,) + grid.shape), chunk=7)[1]
    assert np.abs(batched - alone).max() <= independence_tolerance("int8")
    fp32 = runtime_model.mean(runtime_model.encode(*target), grid)
    assert np.abs(alone - fp32).max() <= TOLERANCES["int8"]["mean_value_max_abs_diff"]


def test_without_the_weight_only_tier_a_failing_static_int8_keeps_nothing(tiny_export, tmp_path, monkeypatch):
    folder = copy_export(tiny_export, tmp_path / "tiny")
    monkeypatch.setattr(static_int8, "make_int8", badly_calibrated(static_int8.make_int8))
    assert main([str(folder), "--int8", "--no-float-fallback", "--no-weight-only-fallback"]) == 1
    assert "variants" not in json.loads((folder / "model.json").read_text())
    assert not list(folder.glob("*int8*"))


def test_weight_only_graphs_name_the_onnxruntime_they_need(weight_only, monkeypatch):
    """8-bit MatMulNBits has a CPU kernel from onnxruntime 1.22: an older one gets a clear error, not a crash
    inside session creation."""
    from pt_plugin import sessions

    entry = json.loads((weight_only / "model.json").read_text())["variants"]["int8"]
    assert entry["requires_onnxruntime"] == int8_weight_only.MIN_ONNXRUNTIME
    meta = json.loads((weight_only / "model.json").read_text())
    monkeypatch.setattr(sessions.ort, "__version__", "1.21.1")
    with pytest.raises(pt_plugin.InputError, match=r"int8 graphs .*MatMulNBits.*need onnxruntime >= 1.22; this is "
                                                    r"onnxruntime 1.21.1") as refused:
        pt_plugin.load(model_path=weight_only, device="cpu", precision="int8")
    if meta["requires_onnxruntime"] == "1.18":  # an opset-20 export: fp32 still loads, and the error says so
        assert "precision='fp32'" in str(refused.value)
        assert pt_plugin.load(model_path=weight_only, device="cpu").precision == "fp32"
    else:  # opset 23: the fp32 graphs need 1.23 themselves, so the error does not send the user there
        assert "precision='fp32'" not in str(refused.value)
        with pytest.raises(pt_plugin.InputError, match=r"graphs of .* \(ONNX opset 23\) need onnxruntime >= 1.23"):
            pt_plugin.load(model_path=weight_only, device="cpu")


def test_version_tuple_reads_release_and_dev_versions():
    from pt_plugin.sessions import version_tuple

    assert version_tuple("1.22.0") == (1, 22, 0) and version_tuple("1.23.0.dev20250101") == (1, 23, 0)
    assert version_tuple("1.22rc1") == (1, 22) < version_tuple("1.22.0") and version_tuple("") == ()
