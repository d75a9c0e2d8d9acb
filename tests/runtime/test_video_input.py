"""Video input (pt_plugin.kinds.video) on the bundled moving-fashion model: an animated GIF, a folder of frames,
and clips of another size or length, refused or resampled with --resize; through the kinds API and the CLI."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image, ImageSequence

import pt_plugin
from pt_plugin import InputError
from pt_plugin.images import resize_image, write_png
from pt_plugin.kinds.video import VideoKind

EXE = shutil.which("pt-plugin")
EIGHT_BITS = 0.5 / 255 + 1e-6  # frames are stored to the nearest 1/255
needs_cli = pytest.mark.skipif(EXE is None, reason="pt-plugin is not installed (pip install -e .)")


@pytest.fixture(scope="module")
def model():
    return pt_plugin.load("moving-fashion", device="cpu", threads=1)


@pytest.fixture(scope="module")
def clip(model) -> np.ndarray:
    """The model's demo clip, [8, 32, 32, 1] in [0, 1], its frames made distinct by a corner pixel (a GIF
    writer merges identical consecutive frames into one)."""
    with np.load(model.path / "demo.npz") as d:
        frames = d["truth"].copy()
    frames[:, 0, 0, 0] = np.arange(8) / 255
    return frames


def write_gif(path, frames: np.ndarray):
    """An animated gray GIF of frames [T, H, W, 1]."""
    pics = [Image.fromarray((f[..., 0] * 255 + 0.5).astype(np.uint8), "L") for f in frames]
    pics[0].save(path, save_all=True, append_images=pics[1:], duration=100, loop=0)
    return path


def write_frames(folder, frames: np.ndarray):
    """frame_00.png, frame_01.png, ... and a note that is not a frame."""
    for t, f in enumerate(frames):
        write_png(folder / f"frame_{t:02d}.png", f)
    (folder / "notes.txt").write_text("not a frame")
    return folder


def test_a_gif_is_read_frame_by_frame(model, clip, tmp_path):
    obs = VideoKind().read(model, write_gif(tmp_path / "clip.gif", clip), resize=False)
    assert obs.shape == (8, 32, 32) and obs.truth.shape == (8, 32, 32, 1) and len(obs.positions) == 0
    np.testing.assert_allclose(obs.truth, clip, atol=EIGHT_BITS)


def test_identical_consecutive_frames_read_back_as_written(model, tmp_path):
    """A GIF writer merges identical consecutive frames into one shown longer; reading counts it again."""
    with np.load(model.path / "demo.npz") as d:
        frames = d["truth"].copy()
    frames[2] = frames[3] = frames[4] = frames[1]  # a still stretch of four frames
    path = write_gif(tmp_path / "still.gif", frames)
    with Image.open(path) as im:
        assert sum(1 for _ in ImageSequence.Iterator(im)) < 8  # the writer did merge them
    obs = VideoKind().read(model, path, resize=False)
    assert obs.truth.shape == (8, 32, 32, 1)
    np.testing.assert_allclose(obs.truth, frames, atol=EIGHT_BITS)


def test_a_frame_folder_is_read_in_name_order(model, clip, tmp_path):
    obs = VideoKind().read(model, write_frames(tmp_path / "frames", clip[::-1]), resize=False)
    np.testing.assert_allclose(obs.truth, clip[::-1], atol=EIGHT_BITS)


def test_another_size_is_refused_without_resize(model, tmp_path):
    frames = np.random.default_rng(0).random((16, 40, 48, 1)).astype(np.float32)
    for source in (write_gif(tmp_path / "big.gif", frames), write_frames(tmp_path / "big", frames)):
        with pytest.raises(InputError, match=r"16 frames of 48x40 but model moving-fashion works on 8 frames of "
                                             r"32x32; pass --resize"):
            VideoKind().read(model, source, resize=False)


def test_resize_picks_evenly_spread_frames_and_resizes_them(model, tmp_path):
    frames = np.round(np.random.default_rng(1).random((16, 40, 48, 1)) * 255).astype(np.float32) / 255
    obs = VideoKind().read(model, write_frames(tmp_path / "big", frames), resize=True)
    assert obs.truth.shape == (8, 32, 32, 1)
    for t in range(8):  # frame t of 8 is frame 2t + 1 of 16: the one at the same time, (t + 0.5) / 8
        np.testing.assert_allclose(obs.truth[t], resize_image(frames[2 * t + 1], 32, 32), atol=1e-6)


@pytest.mark.parametrize("make, message", [
    (lambda p: p.mkdir(), "no frames"),
    (lambda p: p.write_text("GIF89a but not really"), "is not a readable animation"),
    (lambda p: None, "clip not found"),
])
def test_unreadable_clips_are_refused(model, tmp_path, make, message):
    source = tmp_path / "clip.gif"
    make(source)
    with pytest.raises(InputError, match=message):
        VideoKind().read(model, source, resize=False)


@needs_cli
def test_cli_mean_of_a_gif_and_of_a_frame_folder(clip, tmp_path):
    """The same clip as a GIF and as frames gives the same animation of the mean."""
    gif, folder = write_gif(tmp_path / "clip.gif", clip), write_frames(tmp_path / "frames", clip)
    outs = []
    for source in (gif, folder):
        out = tmp_path / f"{source.stem}_mean.gif"
        r = subprocess.run([EXE, "mean", str(source), "--model", "moving-fashion", "--observed", "200", "--out",
                            str(out)], capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        assert "200 observed samples" in r.stdout and "8x32x32 grid" in r.stdout
        with Image.open(out) as im:
            assert im.n_frames == 8
            outs.append([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)])
    assert all(np.array_equal(a, b) for a, b in zip(*outs))


@needs_cli
def test_cli_resize(tmp_path):
    frames = np.random.default_rng(2).random((16, 40, 48, 1)).astype(np.float32)
    folder = write_frames(tmp_path / "big", frames)
    cmd = [EXE, "mean", str(folder), "--model", "moving-fashion", "--observed", "100", "--out"]
    r = subprocess.run(cmd + [str(tmp_path / "refused.gif")], capture_output=True, text=True, timeout=600)
    assert r.returncode != 0 and "pass --resize" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "refused.gif").exists()
    r = subprocess.run(cmd + [str(tmp_path / "m.gif"), "--resize"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    with Image.open(tmp_path / "m.gif") as im:
        assert im.n_frames == 8
