"""Weights through pooch: a real download from a local HTTP server, hash checks, offline mode."""
from pathlib import Path

import pytest

import pt_plugin
from pt_plugin import weights
from pt_plugin.errors import WeightsError
from weights_server import serve


@pytest.fixture()
def served(tiny_export, tmp_path, monkeypatch):
    """A weights/ tree (registry + one model) served on 127.0.0.1, with the runtime pointed at it."""
    root, server = serve(tiny_export, weights.MODEL_FILES, tmp_path, monkeypatch)
    yield root
    server.shutdown()


def test_download_verifies_and_loads(served, tmp_path):
    folder = weights.fetch("tiny")
    assert folder == tmp_path / "cache" / "tiny"
    for f in weights.MODEL_FILES:
        assert weights.sha256(folder / f) == weights.sha256(served / "tiny" / f)
    model = pt_plugin.load("tiny", device="cpu")
    assert model.info.name == "tiny"
    assert weights.describe_models()[0]["where"] == "cached"


def test_corrupted_download_is_detected_and_not_kept(served, tmp_path):
    (served / "tiny" / "decoder.onnx").write_bytes(b"corrupted")
    with pytest.raises(WeightsError, match="sha256"):
        weights.fetch("tiny")
    assert not (tmp_path / "cache" / "tiny" / "decoder.onnx").exists()
    assert weights.cached_path("tiny") is None


def test_corrupted_cache_is_fetched_again(served, tmp_path):
    weights.fetch("tiny")
    (tmp_path / "cache" / "tiny" / "encoder.onnx").write_bytes(b"bit rot")
    folder = weights.locate("tiny")
    assert weights.sha256(folder / "encoder.onnx") == weights.sha256(served / "tiny" / "encoder.onnx")


def test_offline_without_cache_says_what_to_do(served, monkeypatch):
    monkeypatch.setenv("PT_PLUGIN_OFFLINE", "1")
    with pytest.raises(WeightsError, match="PT_PLUGIN_OFFLINE=1 forbids"):
        pt_plugin.load("tiny")


def test_offline_with_cache_works(served, monkeypatch):
    weights.fetch("tiny")
    monkeypatch.setenv("PT_PLUGIN_OFFLINE", "1")
    assert pt_plugin.load("tiny", device="cpu").info.name == "tiny"


def test_unreachable_server_is_reported(served, monkeypatch):
    monkeypatch.setenv("PT_PLUGIN_WEIGHTS_URL", "http://127.0.0.1:9/")
    with pytest.raises(WeightsError, match="could not download"):
        weights.fetch("tiny")


def test_tampered_cache_file_is_reported_as_such(served, tmp_path, monkeypatch):
    """Issue 16.4: offline, a changed cache file is a hash mismatch, not 'not in the cache'."""
    weights.fetch("tiny")
    (tmp_path / "cache" / "tiny" / "decoder.onnx").write_bytes(b"tampered")
    monkeypatch.setenv("PT_PLUGIN_OFFLINE", "1")
    with pytest.raises(WeightsError, match="does not match its sha256 in registry.txt.*delete it"):
        pt_plugin.load("tiny")


def test_no_default_server(served, tmp_path, monkeypatch):
    """Issue 11.7: without PT_PLUGIN_WEIGHTS_URL nothing is tried, the error says what to set, no folder is left."""
    monkeypatch.delenv("PT_PLUGIN_WEIGHTS_URL")
    with pytest.raises(WeightsError, match="set PT_PLUGIN_WEIGHTS_URL"):
        weights.fetch("tiny")
    assert not (tmp_path / "cache").exists()


def test_failed_download_leaves_no_empty_cache_folder(served, tmp_path, monkeypatch):
    monkeypatch.setenv("PT_PLUGIN_WEIGHTS_URL", "http://127.0.0.1:9/")
    with pytest.raises(WeightsError, match="could not download"):
        weights.fetch("tiny")
    assert not (tmp_path / "cache" / "tiny").exists() and not (tmp_path / "cache").exists()


def test_every_registered_model_is_packed_into_the_wheel():
    """pyproject's wheel force-include holds every model folder of registry.txt: a model registered but not
    packed would be looked for online by every `pip install` user."""
    import tomllib

    root = Path(__file__).resolve().parents[2]
    packed = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"][
        "force-include"]
    names = {line.split("/")[0] for line in (root / "weights" / "registry.txt").read_text().splitlines() if line}
    assert names and all(packed.get(f"weights/{n}") == f"pt_plugin/weights/{n}" for n in names), names


def test_precisions_come_from_the_registered_graph_files():
    assert weights.precisions_in(["m/encoder.onnx", "m/decoder.onnx", "m/model.json"]) == ["fp32"]
    assert weights.precisions_in(["m/model.json", "m/encoder.onnx", "m/encoder.int8.onnx", "m/decoder.int8.onnx",
                                  "m/encoder.fp16.onnx", "m/demo.npz"]) == ["fp32", "int8", "fp16"]
    assert weights.precisions_in([]) == []
