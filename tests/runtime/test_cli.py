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
    (["sample", "missing.png"], "INPUT not found: missing.png"),
    (["sample", "--demo", "--observed", "5000"], "cannot observe 5000 samples of a signal of 784"),
    (["sample", "--demo", "--model", "no-such-model"], "unknown model"),
    (["mean"], "give one of INPUT, --demo or --points"),
    (["sample", "--demo", "-n", "0"], "--num-samples"),
    (["sample", "--demo", "--temperature", "0"], "--temperature"),
    (["sample", "--demo", "--seed", "-1"], "--seed"),
    (["sample", "--demo", "--scale", "-3"], "--scale"),
    (["sample", "--demo", "--scale", "0"], "--scale"),
    (["sample", "--demo", "--scale", "1000"], "--scale"),
    (["sample", "--demo", "--mask", "nomask.png"], "mask not found: nomask.png"),
    (["sample", "--demo", "--mask", "m.png", "--observed", "5"], "--mask and --observed"),
    (["sample", "--demo", "--shape", "28xfoo"], "--shape"),
    (["sample", "--demo", "--out", "s.xyz"], "names no picture format"),
])
def test_bad_input_exits_with_one_line(tiny_export, tmp_path, args, message):
    if "--model" not in args:
        args = args + ["--model", str(tiny_export)]
    r = run(*args, cwd=tmp_path)
    assert r.returncode != 0
    assert message in r.stderr and "Traceback" not in r.stderr
    assert "runs on the CPU" not in r.stderr  # the CPU notice is for `info`, not for every error (issue 16.17)
    assert not list(tmp_path.glob("*.png")) and not list(tmp_path.glob("*.xyz"))  # nothing written


def test_out_dir_naming_a_file_is_refused_before_anything_is_written(tiny_export, tmp_path):
    (tmp_path / "taken").write_text("mine")
    r = run("sample", "--demo", "--model", tiny_export, "--out", tmp_path / "s.png", "--out-dir", tmp_path / "taken")
    assert r.returncode != 0 and "Traceback" not in r.stderr and "taken" in r.stderr
    assert not (tmp_path / "s.png").exists() and (tmp_path / "taken").read_text() == "mine"


def test_out_suffix_picks_the_format_and_one_sample_is_singular(tiny_export, tmp_path):
    r = run("sample", "--demo", "--model", tiny_export, "-n", "1", "--out", tmp_path / "s.jpg")
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "s.jpg").format == "JPEG"
    assert "| 1 sample on" in r.stdout and "1 samples" not in r.stdout


def test_super_resolution_from_the_command_line(tiny_export, tmp_path):
    r = run("mean", "--demo", "--model", tiny_export, "--shape", "56x56", "--scale", "1", "--out", tmp_path / "m.png")
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "m.png").size == (4 * 56 + 5 * 2, 56 + 4)


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


def test_version_models_info(tmp_path):
    r = run("--version")
    assert r.returncode == 0 and "pt-plugin" in r.stdout
    r = run("models")
    assert r.returncode == 0 and "bundled" in r.stdout
    assert any(line.split()[:3] == ["fashion-mnist", "image", "x,y"] for line in r.stdout.splitlines())
    emoji = next(line.split() for line in r.stdout.splitlines() if line.startswith("emoji "))
    assert emoji[-2:] == ["fp32,int8", "bundled"]  # the weight-only int8 graphs are registered
    r = run("info")
    assert r.returncode == 0 and "providers available" in r.stdout and "CUDA:" in r.stdout


def test_sample_with_the_bundled_default_model(tmp_path):
    r = run("sample", "--demo", "-n", "1", "--out", tmp_path / "d.png")
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "d.png").size == (4 * 112 + 5 * 2, 112 + 4)


def test_download_succeeds_offline_for_bundled_models(tmp_path):
    """Issue 11.7: bundled models count as available; nothing is fetched and no cache folder is made."""
    import os

    env = {**os.environ, "PT_PLUGIN_OFFLINE": "1", "PT_PLUGIN_HOME": str(tmp_path / "cache")}
    r = subprocess.run([EXE, "download", "fashion-mnist"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "fashion-mnist: bundled" in r.stdout and not (tmp_path / "cache").exists()


def test_default_observed_stays_within_the_trained_set_sizes():
    """--observed defaults to 64, or to the largest set a model was trained on (polynomials: 20)."""
    from types import SimpleNamespace

    import pt_plugin
    from pt_plugin.cli import default_observed

    assert default_observed(pt_plugin.load("polynomials", device="cpu")) == 20
    assert default_observed(pt_plugin.load("fashion-mnist", device="cpu")) == 64
    assert default_observed(SimpleNamespace(meta={"training": {"samples_range": [4, None]}})) == 64
    assert default_observed(SimpleNamespace(meta={})) == 64
