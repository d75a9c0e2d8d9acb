"""int8 cache graphs (export.quantize.cache_int8): made beside an int8 variant, gated against float32, recorded in
model.json, and what a model loaded at int8 samples over; refused or dropped when they cannot be kept."""
import json
import shutil

import numpy as np
import onnx
import pytest
from test_precision import copy_export

import pt_plugin
from export.errors import UsageError
from export.onnx.cache_graphs import add_to_folder
from export.quantize import cache_int8
from export.quantize.__main__ import main as quantize
from export.quantize.parity import TOLERANCES, within
from pt_plugin.errors import InputError
from weights_server import serve


@pytest.fixture(scope="module")
def folder(tiny_export, torch_model, tmp_path_factory):
    """The tiny export with an int8 variant, then its cache graphs (which make their int8 copies)."""
    out = copy_export(tiny_export, tmp_path_factory.mktemp("cache_int8") / "tiny")
    assert quantize([str(out), "--int8"]) == 0
    add_to_folder(torch_model, out)
    return out


def observed(k: int = 20, seed: int = 0):
    image = np.random.default_rng(seed).random((28, 28, 1)).astype(np.float32)
    return pt_plugin.observe_random(image, k, seed)


def test_cache_graphs_get_int8_copies_gated_and_recorded(folder):
    meta = json.loads((folder / "model.json").read_text())
    entry = meta["variants"]["int8"]["cache"]
    assert entry["files"] == ["context.int8.onnx", "step.int8.onnx"]
    assert within(entry["parity"], TOLERANCES["int8"]) and entry["parity"]["steps"] == cache_int8.STEP_TOKENS
    for name in entry["files"]:
        assert meta["files"][name] == f"sha256:{pt_plugin.metadata.sha256(folder / name)}"
        graph = onnx.load(str(folder / name))
        assert any(n.op_type == "MatMulNBits" for n in graph.graph.node)
        assert {p.key: p.value for p in graph.metadata_props}["pt_plugin_precision"] == "int8"
        assert entry["bytes"][name] < (folder / name.replace(".int8", "")).stat().st_size
    assert not list(folder.glob(".cache-int8-*"))


def test_the_registry_lists_them(folder, tmp_path):
    from export.onnx.registry import write_registry

    shutil.copytree(folder, tmp_path / "m")
    listed = {line.split()[0] for line in write_registry(tmp_path)}
    assert {"m/context.int8.onnx", "m/step.int8.onnx", "m/context.onnx", "m/encoder.int8.onnx"} <= listed


def test_an_int8_model_samples_over_its_own_cache_graphs(folder):
    fp32, int8 = (pt_plugin.load(folder, precision=p, device="cpu", threads=1) for p in ("fp32", "int8"))
    assert int8.has_cache and int8.sampling_plan()[0]
    for graph in (int8.context_graph, int8.step_graph):
        assert graph.session.get_modelmeta().custom_metadata_map["pt_plugin_precision"] == "int8"
    pos, val = observed()
    q = pt_plugin.grid_positions(28, 28)[:60]
    drawn = int8.sample(pos, val, q, 2, seed=3, cache=True)
    assert drawn.shape == (2, 60, 1) and np.isfinite(drawn).all()
    # the same first draw law as float32 within the gate: the first drawn value of one seed lands near it
    lo, hi = fp32.value_range
    first = fp32.sample(pos, val, q, 2, seed=3, cache=True)
    assert np.abs(drawn - first).max() <= hi - lo


def test_quantizing_again_keeps_the_cache_entry(folder):
    before = json.loads((folder / "model.json").read_text())["variants"]["int8"]["cache"]
    assert quantize([str(folder), "--int8", "--force"]) == 0
    assert json.loads((folder / "model.json").read_text())["variants"]["int8"]["cache"] == before


def test_over_the_gate_nothing_is_kept_and_int8_samples_by_re_encoding(folder, tmp_path, monkeypatch):
    copy = tmp_path / "over"
    shutil.copytree(folder, copy)
    monkeypatch.setitem(cache_int8.TOLERANCES, "int8", {"mean_value_max_abs_diff": 0.0,
                                                         "mean_value_mean_abs_diff": 0.0})
    assert not cache_int8.add_int8_cache(copy, force=True)
    meta = json.loads((copy / "model.json").read_text())
    assert "cache" not in meta["variants"]["int8"] and "step.int8.onnx" not in meta["files"]
    assert not (copy / "step.int8.onnx").exists() and not (copy / "context.int8.onnx").exists()
    model = pt_plugin.load(copy, precision="int8", device="cpu", threads=1)
    assert not model.has_cache
    pos, val = observed()
    q = pt_plugin.grid_positions(28, 28)[:10]
    with pytest.raises(InputError, match="has no cache graphs .*context.int8.onnx / step.int8.onnx.*cache_int8"):
        model.sample(pos, val, q, cache=True)
    assert model.sample(pos, val, q, seed=0).shape == (1, 10, 1)  # the default: re-encoding


def test_refusals_say_what_is_missing(folder, tiny_export, tmp_path):
    with pytest.raises(UsageError, match="already exist .*--force"):
        cache_int8.add_int8_cache(folder)
    plain = copy_export(tiny_export, tmp_path / "plain")
    with pytest.raises(UsageError, match="has no cache graphs"):
        cache_int8.add_int8_cache(plain)
    no_int8 = tmp_path / "no_int8"
    shutil.copytree(folder, no_int8)
    meta = json.loads((no_int8 / "model.json").read_text())
    del meta["variants"]["int8"]
    (no_int8 / "model.json").write_text(json.dumps(meta))
    with pytest.raises(UsageError, match="has no int8 variant"):
        cache_int8.add_int8_cache(no_int8, force=True)


def test_a_downloaded_model_brings_the_cache_graphs_of_its_precision(folder, tmp_path, monkeypatch):
    """A registered model fetched through pooch gets its cache graphs with it (fp32: context.onnx, step.onnx; int8:
    the int8 ones), so it samples over them as a bundled one does."""
    files = [p.name for p in folder.iterdir() if p.suffix in (".onnx", ".json")]
    _, server = serve(folder, files, tmp_path, monkeypatch)
    try:
        for precision, graphs in (("fp32", ("context.onnx", "step.onnx")),
                                  ("int8", ("context.int8.onnx", "step.int8.onnx"))):
            model = pt_plugin.load("tiny", precision=precision, device="cpu", threads=1)
            assert all((model.path / g).is_file() for g in graphs) and model.has_cache
            pos, val = observed()
            assert model.sample(pos, val, pt_plugin.grid_positions(28, 28)[:5], seed=0, cache=True).shape == (1, 5, 1)
    finally:
        server.shutdown()
