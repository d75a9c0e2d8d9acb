"""Shared fixtures: a tiny PixelTransformer trained for real on a slice of Fashion-MNIST, and its export."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

FASHION = Path("/usr/share/datasets/fashion-mnist")
TINY_MODEL = {"d_model": 32, "n_heads": 2, "enc_layers": 1, "dec_layers": 1, "ffn": 64, "num_bins": 16}
TINY_TRAIN = {"limit": 2000, "val_images": 200, "batch_size": 8, "min_samples": 4, "max_samples": 128,
              "num_queries": 64, "steps": 200, "lr": 2e-3, "warmup": 20, "log_every": 100, "val_every": 100,
              "ckpt_every": 100, "threads": 2, "precision": "bf16"}  # bf16 training, fp32 graphs: the export
#   fixtures below then check that a bf16-trained checkpoint passes the usual parity gate (emulated bf16 where the
#   CPU lacks it: slower, same code path)


NO_FASHION = f"Fashion-MNIST not in {FASHION} (apt-get install dataset-fashion-mnist)"
# the fixtures below that read Fashion-MNIST: a test that uses one (directly or through another fixture) skips
# without it. A test or parameter that reads it otherwise carries @pytest.mark.fashion; the fixtures also call
# require_fashion(), so a test that escapes both still skips rather than errors.
FASHION_FIXTURES = {"tiny_run", "tiny_export", "torch_model", "runtime_model", "test_image"}


def has_fashion() -> bool:
    return (FASHION / "train-images-idx3-ubyte.gz").is_file()


def require_fashion() -> None:
    """Skip the calling test (from a fixture or the test itself) when Fashion-MNIST is not installed."""
    if not has_fashion():
        pytest.skip(NO_FASHION)


def pytest_configure(config):
    config.addinivalue_line("markers", "fashion: needs Fashion-MNIST in /usr/share/datasets (skipped without it)")


def needs_fashion(item) -> bool:
    """Whether a collected test reads Fashion-MNIST: its marker (parameters' marks included) or a fixture in its
    closure (item.fixturenames holds every fixture it needs, through other fixtures too)."""
    fixtures = set(getattr(item, "fixturenames", ()))
    return item.get_closest_marker("fashion") is not None or bool(FASHION_FIXTURES & fixtures)


def pytest_collection_modifyitems(config, items):
    if has_fashion():
        return
    skip = pytest.mark.skip(reason=NO_FASHION)
    for item in items:
        if needs_fashion(item):
            item.add_marker(skip)


# set PT_PLUGIN_TEST_CACHE=/some/dir to keep the tiny model between runs while working on the tests
CACHE = os.environ.get("PT_PLUGIN_TEST_CACHE")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """Train the tiny model (a few hundred steps, ~20 s) and return its run folder."""
    from export.train import main

    require_fashion()
    out = Path(CACHE) / "tiny_run" if CACHE else tmp_path_factory.mktemp("tiny_run")
    if CACHE and (out / "model.pt").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    cfg = {"model": TINY_MODEL, "train": {**TINY_TRAIN, "data_dir": str(FASHION), "out": str(out)}}
    (out / "cfg.json").write_text(json.dumps(cfg))
    assert main(["--config", str(out / "cfg.json")]) == 0
    return out


@pytest.fixture(scope="session")
def tiny_export(tiny_run, tmp_path_factory) -> Path:
    """The tiny model exported to ONNX (encoder.onnx, decoder.onnx, model.json)."""
    from export.onnx.graphs import main

    out = (Path(CACHE) if CACHE else tmp_path_factory.mktemp("tiny_export")) / "tiny"
    if CACHE and (out / "model.json").is_file():
        return out
    assert main([str(tiny_run / "model.pt"), "--out", str(out), "--grid", "28,28", "--sizes", "1,7,64"]) == 0
    return out


@pytest.fixture(scope="session")
def torch_model(tiny_run):
    from export.onnx.graphs import load_checkpoint

    return load_checkpoint(tiny_run / "model.pt")[0]


@pytest.fixture(scope="session")
def runtime_model(tiny_export):
    import pt_plugin

    return pt_plugin.load(model_path=tiny_export, device="cpu")


@pytest.fixture(scope="session")
def test_image() -> np.ndarray:
    from export.datasets.images import load_idx_images

    require_fashion()
    return load_idx_images(FASHION, "test")[0]
