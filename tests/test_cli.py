"""The installed `pt-plugin` console script, run in a subprocess as a user would."""
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

EXE = shutil.which("pt-plugin")
pytestmark = pytest.mark.skipif(EXE is None, reason="pt-plugin is not installed (pip install -e .)")


def run(*args, cwd=None):
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600)


def test_sample_demo_writes_the_figure(tiny_export, tmp_path):
    r = run("sample", "--demo", "--model", tiny_export, "-n", "2", "--observed", "100", "--step-fraction", "0.2",
            "--temperature", "0.8", "--out", tmp_path / "s.png", "--out-dir", tmp_path / "each", "--scale", "3")
    assert r.returncode == 0, r.stderr
    im = Image.open(tmp_path / "s.png")
    # ground truth | observed | mean | 2 samples, each 28*3 px, 2 px gaps
    assert im.size == (5 * 84 + 6 * 2, 84 + 4)
    assert Image.open(tmp_path / "each" / "sample_01.png").size == (28, 28)


def test_mean_writes_mean_and_std(tiny_export, tmp_path, test_image):
    src = tmp_path / "img.png"
    Image.fromarray((test_image[..., 0] * 255).astype(np.uint8)).save(src)
    r = run("mean", src, "--model", tiny_export, "--out", tmp_path / "m.png")
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "m.png").size == (4 * 112 + 5 * 2, 112 + 4)
    assert "MSE" in r.stdout


def test_mask_selects_observed_pixels(tiny_export, tmp_path):
    mask = np.zeros((28, 28), np.uint8)
    mask[:14] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    r = run("mean", "--demo", "--mask", tmp_path / "mask.png", "--model", tiny_export, "--out", tmp_path / "m.png")
    assert r.returncode == 0, r.stderr
    assert "392 observed" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["sample", "missing.png"], "image not found"),
    (["sample", "--demo", "--observed", "5000"], "not possible for a 28x28 image"),
    (["sample", "--demo", "--model", "no-such-model"], "unknown model"),
    (["mean"], "give an IMAGE or --demo"),
    (["sample", "--demo", "-n", "0"], "at least 1"),
    (["sample", "--demo", "--temperature", "0"], "--temperature"),
])
def test_bad_input_exits_with_one_line(tiny_export, tmp_path, args, message):
    if "--model" not in args:
        args = args + ["--model", str(tiny_export)]
    r = run(*args, cwd=tmp_path)
    assert r.returncode != 0
    assert message in r.stderr and "Traceback" not in r.stderr


def test_wrong_size_image_is_refused_unless_resized(tiny_export, tmp_path):
    Image.fromarray(np.zeros((40, 30), np.uint8)).save(tmp_path / "big.png")
    r = run("mean", tmp_path / "big.png", "--model", tiny_export, "--out", tmp_path / "m.png")
    assert r.returncode != 0 and "pass --resize" in r.stderr and "Traceback" not in r.stderr
    r = run("mean", tmp_path / "big.png", "--model", tiny_export, "--resize", "--out", tmp_path / "m.png")
    assert r.returncode == 0, r.stderr


def test_unreadable_image(tiny_export, tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    r = run("mean", tmp_path / "bad.png", "--model", tiny_export)
    assert r.returncode != 0 and "not a readable image" in r.stderr and "Traceback" not in r.stderr


def test_version_models_info():
    r = run("--version")
    assert r.returncode == 0 and "pt-plugin" in r.stdout
    r = run("models")
    assert r.returncode == 0 and "fashion-mnist" in r.stdout and "bundled" in r.stdout
    r = run("info")
    assert r.returncode == 0 and "providers available" in r.stdout and "CUDA:" in r.stdout


def test_sample_with_the_bundled_default_model(tmp_path):
    r = run("sample", "--demo", "-n", "1", "--out", tmp_path / "d.png")
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "d.png").size == (4 * 112 + 5 * 2, 112 + 4)
