"""The emoji recipe (preparation, split, tarball extraction), the palette and an RGB training run; no network."""
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from export.config import ConfigError, ModelConfig
from export.datasets import emoji
from export.datasets.images import DataError, load_image_folder
from export.datasets.palette import fit_palette, quantization_stats

EMOJI = Path(__file__).resolve().parents[1] / "data" / "emoji"


def rgba_png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8), "RGBA").save(buf, format="PNG")
    return buf.getvalue()


def synthetic_emoji() -> np.ndarray:
    """64×64 RGBA: transparent top half, opaque red / transparent checkerboard bottom-left, half-alpha black
    bottom-right."""
    a = np.zeros((64, 64, 4), np.uint8)
    a[:32, :, :3] = 0  # transparent black: must come out white, not black
    yy, xx = np.mgrid[32:64, 0:32]
    a[32:, :32] = np.where(((yy + xx) % 2 == 0)[..., None], [255, 0, 0, 255], [0, 0, 0, 0])
    a[32:, 32:] = [0, 0, 0, 128]
    return a


def fake_package(path: Path, vendor: str, names: list[str]) -> Path:
    """A tiny npm-style .tgz with the package/img/<vendor>/64/ layout and some members to be skipped."""
    png = rgba_png(synthetic_emoji())
    members = {f"package/img/{vendor}/64/{n}": png for n in names}
    members.update({f"package/img/{vendor}/32/small.png": png, f"package/img/{vendor}/sheets/sheet.png": png,
                    "package/README.md": b"readme", f"package/img/{vendor}/64/notes.txt": b"x"})
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_prepare_composites_on_white_and_area_averages(tmp_path):
    (tmp_path / "e.png").write_bytes(rgba_png(synthetic_emoji()))
    out = emoji.prepare(tmp_path / "e.png", 32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert (out[:16] == 255).all()  # transparent -> white
    # each 2×2 block of the checkerboard holds two red and two white pixels: (255, 127.5, 127.5)
    assert (out[16:, :16, 0] == 255).all() and (np.abs(out[16:, :16, 1:].astype(int) - 127.5) <= 1).all()
    assert (np.abs(out[16:, 16:].astype(int) - 127) <= 1).all()  # half-transparent black on white


def test_split_is_stable_and_about_ten_percent():
    names = [f"{0x1f300 + i:x}.png" for i in range(3000)]
    share = np.mean([emoji.is_test(n) for n in names])
    assert 0.08 < share < 0.12
    # sha256, not Python's salted hash(): the same names land on the same side in every run
    assert sum(emoji.is_test(n) for n in names) == 286
    assert emoji.is_test("2764-fe0f.png") and not emoji.is_test("1f600.png")
    # all skin tones of one emoji on one side: no near-duplicate of a test image is trained on
    assert emoji.split_key("1f44b-1f3fd.png") == "1f44b.png"
    assert {emoji.is_test(f"1f91d-1f3f{t}.png") for t in "bcdef"} == {emoji.is_test("1f91d.png")}


def test_extract_takes_only_the_64px_pngs(tmp_path):
    tgz = fake_package(tmp_path / "p.tgz", "google", ["1f600.png", "0023-fe0f-20e3.png"])
    got = emoji.extract_pngs(tgz, "google", tmp_path / "x")
    assert [p.name for p in got] == ["0023-fe0f-20e3.png", "1f600.png"]
    with pytest.raises(DataError, match="holds no"):
        emoji.extract_pngs(tgz, "twitter", tmp_path / "y")
    (tmp_path / "bad.tgz").write_bytes(b"not a tarball")
    with pytest.raises(DataError, match="not a readable"):
        emoji.extract_pngs(tmp_path / "bad.tgz", "google", tmp_path / "z")


def test_build_from_packed_tarballs_writes_splits_licences_manifest(tmp_path, monkeypatch):
    def no_npm(*a):
        raise AssertionError("npm must not run when the tarballs are given")

    monkeypatch.setattr(emoji, "npm_pack", no_npm)
    names = [f"{0x1f600 + i:x}.png" for i in range(40)]
    pkgs = tmp_path / "pkgs"
    pkgs.mkdir()
    for vendor, (pkg, _, _) in emoji.PACKAGES.items():
        fake_package(pkgs / f"{pkg}-{emoji.VERSION}.tgz", vendor, names)
    out = tmp_path / "emoji"
    m = emoji.build(out, size=8, packages_dir=pkgs)
    n_test = sum(emoji.is_test(n) for n in names)
    assert 0 < n_test < 40
    assert m["counts"]["test"] == {"google": n_test, "twitter": n_test, "total": 2 * n_test}
    assert m["counts"]["train"]["total"] == 2 * (40 - n_test) and m["size"] == 8
    assert json.loads((out / "manifest.json").read_text()) == m
    assert (out / "train" / "twitter_1f600.png").is_file() and not (out / "test" / "twitter_1f600.png").exists()
    lic = (out / "LICENSES.md").read_text()
    assert "CC-BY 4.0" in lic and "Apache License 2.0" in lic and "Twemoji" in lic and "Noto" in lic
    assert load_image_folder(out / "train").shape == (2 * (40 - n_test), 8, 8, 3)


def test_missing_npm_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(emoji.shutil, "which", lambda name: None)
    with pytest.raises(DataError, match="apt-get install npm"):
        emoji.npm_pack("emoji-datasource-google", emoji.VERSION, tmp_path)


def test_bundled_emoji_load_as_rgb():
    imgs = load_image_folder(EMOJI)
    assert imgs.shape == (10, 32, 32, 3) and imgs.min() >= 0 and imgs.max() <= 1
    assert {p.name.split("_")[0] for p in EMOJI.glob("*.png")} == {"google", "twitter"}


def test_fit_palette_deterministic_in_range_and_better_than_random():
    imgs = load_image_folder(EMOJI)
    a, b = fit_palette(imgs, 16, seed=3, max_pixels=5000), fit_palette(imgs, 16, seed=3, max_pixels=5000)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (16, 3) and a.dtype == np.float32 and a.min() >= 0 and a.max() <= 1
    rand = np.random.default_rng(0).random((16, 3))
    assert quantization_stats(imgs, a)["mse"] < 0.5 * quantization_stats(imgs, rand)["mse"]
    with pytest.raises(ValueError):
        fit_palette(imgs[:1, :2, :2], 16)


def test_config_error_names_the_palette_flag():
    with pytest.raises(ConfigError, match="--palette K"):
        ModelConfig(val_dim=3).validate()


def test_tiny_rgb_training_carries_its_palette(tmp_path):
    from export.train import main

    args = ["--data", f"folder:{EMOJI}", "--val-dim", "3", "--palette", "16", "--d-model", "32", "--n-heads", "2",
            "--enc-layers", "1", "--dec-layers", "1", "--ffn", "64", "--val-images", "2", "--batch-size", "4",
            "--min-samples", "4", "--max-samples", "64", "--num-queries", "32", "--steps", "30", "--warmup", "5",
            "--lr", "2e-3", "--log-every", "10", "--val-every", "30", "--threads", "1", "--out", str(tmp_path)]
    assert main(args) == 0
    ck = torch.load(tmp_path / "model.pt", weights_only=False)
    centres = np.array(ck["config"]["model"]["bin_centers"])
    assert centres.shape == (16, 3) and centres.min() >= 0 and centres.max() <= 1
    np.testing.assert_allclose(ck["model"]["centers"].numpy(), centres, atol=1e-7)
    assert all(np.isfinite(h["val_nll"]) for h in ck["history"])
