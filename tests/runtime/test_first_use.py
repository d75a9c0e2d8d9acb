"""Issue 31: first use, second round. What a new user and a JavaScript client found: input files overwritten,
late output errors, a Context accepted by another model, a missing std panel, ignored CSV headers, the 3-D
size rule, long runs without an estimate or progress, misleading messages, and gaps in the graph contract.

Runs on the bundled models (no training): the command line in-process through click's CliRunner, and in a
subprocess where what a terminal user sees matters.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from io import StringIO
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import pt_plugin
from cli_helpers import cli, refused
from pt_plugin import InputError
from pt_plugin.cli import main
from pt_plugin.kinds import Observation, Outputs
from pt_plugin.kinds.curve import CurveKind
from pt_plugin.kinds.volume import VolumeKind
from pt_plugin.signal import Signal

ROOT = Path(__file__).resolve().parents[2]
EXE = shutil.which("pt-plugin")


@pytest.fixture(scope="module")
def models():
    """The bundled models this file uses, loaded once."""
    return {name: pt_plugin.load(name, device="cpu") for name in ("fashion-mnist", "emoji", "gp-curves")}


def garment(path: Path, size: int = 28) -> Path:
    img = np.zeros((size, size), np.uint8)
    img[size // 4:3 * size // 4, size // 3:2 * size // 3] = 200
    Image.fromarray(img).save(path)
    return path


def clip_gif(path: Path, frames: int = 8) -> Path:
    ims = [Image.fromarray(np.roll(np.eye(32, dtype=np.uint8) * 255, t, 1)) for t in range(frames)]
    ims[0].save(path, save_all=True, append_images=ims[1:], duration=100, loop=0)
    return path


# -- 1. a curve command never overwrites its input CSV --------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["sample", "--model", "gp-curves", "--points", "samples.csv"],
    ["sample", "--model", "gp-curves", "--points", "mypts.csv", "--out", "mypts.png"],
    ["mean", "--model", "gp-curves", "--points", "mean.csv"],
])
def test_a_curve_command_never_writes_over_its_input_csv(tmp_path, args):
    src = tmp_path / next(a for a in args if a.endswith(".csv"))
    src.write_text("x,y\n-0.5,0.3\n0.1,1.0\n")
    before = src.read_bytes()
    r = cli(*args, cwd=tmp_path)
    refused(r, f"would overwrite the --points {src.name}", "give --out another name")
    assert src.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [src.name]  # nothing else written either


def test_a_curve_command_with_another_out_keeps_the_input(tmp_path):
    src = tmp_path / "samples.csv"
    src.write_text("x,y\n-0.5,0.3\n0.1,1.0\n")
    r = cli("sample", "--model", "gp-curves", "--points", src, "-n", "2", "--out", tmp_path / "curve.png")
    assert r.exit_code == 0, r.output
    assert src.read_text() == "x,y\n-0.5,0.3\n0.1,1.0\n" and (tmp_path / "curve.csv").is_file()


# -- 2. --out equal to an input --------------------------------------------------------------------------------

def test_out_equal_to_the_input_is_refused(tmp_path):
    src = garment(tmp_path / "mine.png")
    clip = clip_gif(tmp_path / "clip.gif")
    before = src.read_bytes(), clip.read_bytes()
    refused(cli("sample", src, "--out", src), "would overwrite the INPUT")
    refused(cli("sample", "--model", "moving-fashion", clip, "-n", "1", "--out", clip), "would overwrite the INPUT")
    (tmp_path / "link.png").symlink_to(src)
    refused(cli("sample", src, "--out", tmp_path / "link.png"), "would overwrite the INPUT")
    mask = garment(tmp_path / "mask.png")
    refused(cli("mean", "--demo", "--mask", mask, "--out", mask), "would overwrite the --mask")
    assert (src.read_bytes(), clip.read_bytes()) == before


def test_a_derived_output_name_equal_to_an_input_is_refused(tmp_path):
    """The frame strip of a video (NAME_frames.png) and the --out-dir pictures are checked too."""
    frames = garment(tmp_path / "clip_frames.png", 32)
    clip = clip_gif(tmp_path / "x.gif")
    refused(cli("mean", "--model", "moving-fashion", clip, "--out", tmp_path / "clip.gif", "--mask", frames),
            "--mask is for images")
    src = garment(tmp_path / "mean.png")
    refused(cli("sample", src, "-n", "1", "--out", tmp_path / "s.png", "--out-dir", tmp_path),
            "--out-dir picture mean.png", "would overwrite the INPUT")
    refused(cli("sample", "--demo", "-n", "1", "--out", tmp_path / "each" / "mean.png", "--out-dir", tmp_path / "each"),
            "would both be written to")


# -- 3. output locations are checked before the model loads ----------------------------------------------------

@pytest.mark.parametrize("out, message", [
    ("/proc/x.png", "/proc does not take new files"),
    ("FILE/x.png", "is a file, not a folder"),
    ("FOLDER", "is a directory"),
])
def test_unwritable_out_is_refused_before_the_model_is_even_found(tmp_path, out, message):
    (tmp_path / "FILE").write_text("a file, not a folder")
    (tmp_path / "FOLDER.png").mkdir()
    out = out.replace("FOLDER", str(tmp_path / "FOLDER.png")).replace("FILE", str(tmp_path / "FILE"))
    r = cli("sample", "--demo", "--model", "no-such-model", "--out", out)  # the model name is checked later
    refused(r, message)
    assert "unknown model" not in r.output


def test_unwritable_out_dir_is_refused_before_anything_is_written(tmp_path):
    r = cli("sample", "--demo", "-n", "1", "--out", tmp_path / "s.png", "--out-dir", "/proc/foo")
    refused(r, "cannot write into --out-dir /proc/foo")
    assert not (tmp_path / "s.png").exists()


def test_a_read_only_folder_is_refused(tmp_path, monkeypatch):
    """A read-only mount or an immutable folder: the probe file cannot be made (simulated: root ignores modes)."""
    import errno
    import tempfile

    from pt_plugin import files

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(InputError, match="does not take new files .Read-only file system"):
        files.check_writable(tmp_path / "x.png")
    with pytest.raises(InputError, match="cannot write into --out-dir"):
        files.check_folder(tmp_path / "new")


def test_kind_specific_outputs_are_checked_before_the_graphs_load(tmp_path, monkeypatch):
    """The curve's CSV is known from model.json alone: refused before any session is made."""
    import pt_plugin.model

    def no_sessions(*args, **kwargs):
        raise AssertionError("the model was loaded before the outputs were checked")

    monkeypatch.setattr(pt_plugin.model.Model, "__init__", no_sessions)
    (tmp_path / "samples.csv").write_text("x,y\n0,0\n")
    refused(cli("sample", "--model", "gp-curves", "--points", "samples.csv", cwd=tmp_path), "would overwrite")
    (tmp_path / "p.csv").write_text("x,y\n0,0\n")
    refused(cli("mean", "--model", "gp-curves", "--points", tmp_path / "p.csv", "--out", tmp_path / "p.png"),
            "would overwrite the --points")


def test_a_late_failure_leaves_nothing_half_written(tmp_path, monkeypatch):
    """The plot is written, then the table fails (a full disk): one line, and neither file nor a temporary."""
    import pt_plugin.kinds.curve as curve

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(curve.csv, "writer", full_disk)
    (tmp_path / "p.csv").write_text("x,y\n0,0\n")
    r = cli("sample", "--model", "gp-curves", "--points", tmp_path / "p.csv", "-n", "1", "--out",
            tmp_path / "out" / "c.png")
    refused(r, "No space left on device", "nothing was written")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.csv"]  # not even the folder made for it


@settings(max_examples=40, deadline=None, database=None)
@given(outs=st.lists(st.sampled_from(["a.png", "b.png", "c.csv", "sub/a.png", "./b.png"]), min_size=1, max_size=4),
       ins=st.lists(st.sampled_from(["a.png", "c.csv", "d.png"]), max_size=3, unique=True))
def test_check_outputs_property(tmp_path_factory, outs, ins):
    """Property: outputs are refused exactly when one names an input or two name one file; inputs stay as they were."""
    from pt_plugin.files import check_outputs

    folder = tmp_path_factory.mktemp("io")
    for name in ins:
        (folder / name).write_text("input")
    names = [os.path.normpath(n) for n in outs]
    clash = bool(set(names) & set(ins)) or len(set(names)) < len(names)
    try:
        check_outputs({f"output {i}": folder / n for i, n in enumerate(outs)},
                      {f"input {i}": folder / n for i, n in enumerate(ins)})
    except InputError as e:
        assert clash and "would" in str(e)
    else:
        assert not clash
    assert all((folder / n).read_text() == "input" for n in ins)
    assert sorted(p.name for p in folder.iterdir()) == sorted(ins)  # the probe file is gone


def test_staged_files_move_into_place_together(tmp_path):
    from pt_plugin.files import atomic, staged
    from pt_plugin.kinds.pictures import save_picture

    with staged():
        save_picture(tmp_path / "a.png", np.zeros((4, 4)))
        assert not (tmp_path / "a.png").exists()  # not before the end of the block
        with atomic(tmp_path / "b.txt") as tmp:
            tmp.write_text("b")
    assert (tmp_path / "a.png").is_file() and (tmp_path / "b.txt").read_text() == "b"
    with pytest.raises(RuntimeError):
        with staged():
            save_picture(tmp_path / "a.png", np.ones((4, 4)))
            raise RuntimeError("late")
    assert np.asarray(Image.open(tmp_path / "a.png")).max() == 0  # the old file stays, untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.txt"]


def test_batch_never_writes_over_its_inputs(tmp_path):
    """pt-plugin batch / complete_folder: an output named like an input (a_mean.png) is refused before Ray starts."""
    from pt_plugin.batch import complete_folder

    garment(tmp_path / "a.png")
    garment(tmp_path / "a_mean.png")
    before = (tmp_path / "a_mean.png").read_bytes()
    with pytest.raises(InputError, match="would overwrite the input a_mean.png"):
        complete_folder("fashion-mnist", tmp_path, tmp_path, num_samples=1)
    assert (tmp_path / "a_mean.png").read_bytes() == before


# -- 4. a Context belongs to its model ------------------------------------------------------------------------

def test_a_context_is_refused_by_another_model(models):
    fashion, emoji, curves = models["fashion-mnist"], models["emoji"], models["gp-curves"]
    pos, val = pt_plugin.observe_random(np.full((28, 28), 0.5), 40, seed=0)
    ctx = fashion.encode(pos, val)
    q = pt_plugin.grid_positions(32, 32)
    with pytest.raises(InputError, match=r"encoded by another model \(fashion-mnist \(fp32\)\); this is emoji"):
        emoji.mean(ctx, q)
    with pytest.raises(InputError, match="encoded by another model"):
        curves.query(ctx, np.zeros((3, 1), np.float32))
    assert pt_plugin.load("fashion-mnist", device="cpu").mean(ctx, q).shape == (1024, 1)  # the same graphs: fine
    int8 = pt_plugin.load("fashion-mnist", device="cpu", precision="int8")
    with pytest.raises(InputError, match=r"this is fashion-mnist \(int8\)"):
        int8.mean(ctx, q)
    assert fashion.identity != int8.identity != emoji.identity


def test_sample_takes_arrays_not_a_context(models):
    fashion = models["fashion-mnist"]
    pos, val = pt_plugin.observe_random(np.full((28, 28), 0.5), 10, seed=0)
    with pytest.raises(InputError, match="not a Context"):
        fashion.sample(fashion.encode(pos, val), val, pos)


# -- 5. the video mean has its std panel ----------------------------------------------------------------------

def test_video_panels_end_with_the_std_without_samples():
    from pt_plugin.kinds.video import VideoKind

    truth = np.random.default_rng(0).random((3, 4, 5, 1)).astype(np.float32)
    std = np.linspace(0, 0.2, truth.size, dtype=np.float32).reshape(truth.shape)
    obs = Observation(np.zeros((0, 3), np.float32), np.zeros((0, 1), np.float32), (3, 4, 5), truth=truth)
    rows = VideoKind().panels(obs, Outputs(truth, std, np.zeros((0,) + truth.shape, np.float32)))
    assert len(rows) == 3 and all(len(r) == 4 for r in rows)
    np.testing.assert_allclose(rows[2][3], std[2] / 0.2, rtol=1e-6)
    assert VideoKind().caption(obs, 0).endswith("| mean | std")


def test_video_mean_writes_truth_observed_mean_and_std(tmp_path):
    r = cli("mean", "--model", "moving-fashion", "--demo", "--out", tmp_path / "m.gif")
    assert r.exit_code == 0, r.output
    assert "truth | 64 observed samples | mean | std" in r.output
    with Image.open(tmp_path / "m.gif") as im:  # 4 panels of 32x32 at scale 4, 2-pixel gaps
        assert im.size == (4 * 128 + 5 * 2, 128 + 4) and im.n_frames == 8
    with Image.open(tmp_path / "m_frames.png") as im:  # 4 rows (truth, S, mean, std) of 8 frames at scale 2
        assert im.size == (8 * 64 + 9 * 2, 4 * 64 + 5 * 2)


# -- 6. CSV headers -------------------------------------------------------------------------------------------

CURVE = SimpleNamespace(signal=Signal("curve", ("x",), None, ("y",), "", (-5.0, 5.0)), value_range=(-5.0, 5.0),
                        grid=None)
SHAPE = SimpleNamespace(signal=Signal("volume", ("x", "y", "z"), (16, 16, 16), ("sdf",), "", (-0.3, 0.3)),
                        value_range=(-0.3, 0.3), grid=(16, 16, 16), meta={"name": "stand-in"})


def test_a_csv_header_names_the_columns(tmp_path):
    (tmp_path / "yx.csv").write_text("y,x\n0.3,-0.5\n1.0,0.1\n")
    obs = CurveKind().read(CURVE, tmp_path / "yx.csv", resize=False)
    np.testing.assert_allclose(obs.positions[:, 0], [-0.5, 0.1]) and np.testing.assert_allclose(obs.values[:, 0],
                                                                                                 [0.3, 1.0])
    (tmp_path / "v.csv").write_text(" SDF , z, x ,y\n0.1,0.3,0.1,0.2\n")
    obs = VolumeKind().read(SHAPE, tmp_path / "v.csv", resize=False)
    np.testing.assert_allclose(obs.positions, [[0.1, 0.2, 0.3]]) and np.testing.assert_allclose(obs.values, [[0.1]])


@pytest.mark.parametrize("header, message", [
    ("a,b", "unknown column 'a' in the header; expected the columns x, y"),
    ("x,x", "named twice"),
    ("x", "the header lacks y"),
    ("x,y,z", "unknown column 'z'"),
])
def test_an_unknown_csv_header_is_refused(tmp_path, header, message):
    (tmp_path / "p.csv").write_text(f"{header}\n0.1,0.2\n")
    with pytest.raises(InputError, match=message):
        CurveKind().read(CURVE, tmp_path / "p.csv", resize=False)


@settings(max_examples=30, deadline=None, database=None)
@given(order=st.permutations(["x", "y", "z", "sdf"]), rows=st.lists(st.tuples(
    st.floats(-1, 1), st.floats(-1, 1), st.floats(-1, 1), st.floats(-0.3, 0.3)), min_size=1, max_size=5))
def test_any_column_order_with_a_header_reads_the_same_samples(tmp_path_factory, order, rows):
    """Property: a CSV with its columns in any order under a header gives the samples of the canonical file."""
    folder = tmp_path_factory.mktemp("csv")
    canonical = ["x", "y", "z", "sdf"]
    (folder / "a.csv").write_text("\n".join(",".join(repr(v) for v in r) for r in rows) + "\n")
    (folder / "b.csv").write_text(",".join(order) + "\n" + "\n".join(
        ",".join(repr(r[canonical.index(c)]) for c in order) for r in rows) + "\n")
    a, b = (VolumeKind().read(SHAPE, folder / n, resize=False) for n in ("a.csv", "b.csv"))
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a.values, b.values)


# -- 7. sizes: --mask --resize --------------------------------------------------------------------------------

def test_a_mask_of_another_size_is_resized_with_resize(tmp_path):
    mask = np.zeros((40, 40), np.uint8)
    mask[:20] = 255
    Image.fromarray(mask).save(tmp_path / "mask40.png")
    refused(cli("mean", "--demo", "--mask", tmp_path / "mask40.png", "--out", tmp_path / "m.png"),
            "mask", "40x40", "pass --resize")
    r = cli("mean", "--demo", "--mask", tmp_path / "mask40.png", "--resize", "--out", tmp_path / "m.png")
    assert r.exit_code == 0, r.output
    assert "392 observed samples" in r.output  # the top half of 28x28


# -- 8. long runs: an estimate up front, progress on a terminal, a scale that fits ---------------------------

def test_work_past_the_bound_is_refused_unless_yes(tmp_path):
    env = {"PT_PLUGIN_MAX_MINUTES": "1e-9"}
    r = cli("sample", "--demo", "-n", "1", "--out", tmp_path / "s.png", env=env)
    refused(r, "is estimated to take about", "pass --yes")
    assert not (tmp_path / "s.png").exists()
    r = cli("sample", "--demo", "-n", "1", "--out", tmp_path / "s.png", "--yes", env=env)
    assert r.exit_code == 0, r.output
    refused(cli("mean", "--demo", env={"PT_PLUGIN_MAX_MINUTES": "soon"}), "PT_PLUGIN_MAX_MINUTES='soon'")


@pytest.mark.parametrize("args", [
    ["sample", "--demo", "--shape", "4096x4096", "-n", "16"],      # hours anywhere (the issue's 4096^2, 16 times)
    ["sample", "--model", "moving-fashion", "--demo", "-n", "1000"],  # -n 1000 on video
])
def test_hours_of_work_are_refused_at_the_default_bound(tmp_path, args):
    r = cli(*args, "--out", tmp_path / "x.gif" if "moving-fashion" in args else tmp_path / "x.png")
    refused(r, "is estimated to take about", "--yes")


def test_cost_follows_the_sampler_schedule():
    from pt_plugin import cost
    from pt_plugin.sampling import step_sizes

    a = cost.Architecture(d_model=128, enc_layers=4, dec_layers=4, ffn=256, bins=64, val_dim=1)
    exact = cost.sample_flops(a, 64, 784, 1, 2048, 0.0)
    fast = cost.sample_flops(a, 64, 784, 1, 2048, 0.1)
    assert exact > 10 * fast > 0
    assert cost.sample_flops(a, 64, 784, 3, 2048, 0.1) == pytest.approx(3 * fast)
    assert len(step_sizes(64, 720, 0.0)) == 720
    assert cost.mean_flops(a, 64, 2000) == pytest.approx(cost.encoder_flops(a, 64) + cost.decoder_flops(a, 64, 2000))
    assert cost.decoder_flops(a, 64, 2000) > cost.decoder_flops(a, 64, 1000)


def test_progress_bar_only_on_a_terminal(monkeypatch):
    from pt_plugin.cli import progress

    class Terminal(StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", StringIO())
    with progress("work") as bar:
        assert bar is None
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    with progress("work") as bar:
        for done in (10, 50, 100):
            bar(done, 100)
    assert "work" in term.getvalue() and "100%" in term.getvalue()


def test_mean_and_sample_report_progress(models):
    fashion = models["fashion-mnist"]
    pos, val = pt_plugin.observe_random(np.full((28, 28), 0.5), 20, seed=0)
    seen = []
    fashion.mean_grid(pos, val, (40, 40), chunk=500, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (1600, 1600) and [d for d, _ in seen] == sorted(d for d, _ in seen) and len(seen) == 4
    seen = []
    fashion.sample(pos, val, pt_plugin.grid_positions(20, 20), autoregressive=50, seed=0,
                   progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (400, 400) and any(d == 50 for d, _ in seen)  # the drawn 50, then the mean-filled rest
    with pytest.raises(InputError, match="progress must be None or a callable"):
        fashion.mean((pos, val), pos, progress=3)


def test_the_default_scale_shrinks_for_large_grids(tmp_path):
    from pt_plugin.kinds.image import fit_scale

    assert (fit_scale(28, 28), fit_scale(112, 112), fit_scale(256, 256), fit_scale(2000, 2000)) == (4, 4, 2, 1)
    r = cli("mean", "--demo", "--shape", "300x300", "--out", tmp_path / "m.png")
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "m.png").size == (4 * 300 + 5 * 2, 300 + 4)


# -- messages and small things ---------------------------------------------------------------------------------

def test_misleading_errors_say_what_the_model_reads(tmp_path):
    (tmp_path / "x.csv").write_text("x,y\n0,0\n")
    refused(cli("sample", "--points", tmp_path / "x.csv"),
            "--points is for curve and volume models", "model fashion-mnist is an image model and reads an image file")
    refused(cli("sample", tmp_path / "x.csv"), "x.csv is not an image", "image model")
    garment(tmp_path / "g.png")
    refused(cli("sample", "--model", "shapes", tmp_path / "g.png"), "neither an SDF grid (.npy, .npz)")
    (tmp_path / "adir").mkdir()
    refused(cli("sample", tmp_path / "adir"), "adir is a folder", "reads an image file")
    refused(cli("sample", "--model", "gp-curves", "--demo", "--out-dir", tmp_path / "each"),
            "--out-dir is for image and volume models", "curve model")
    refused(cli("sample", "--model", "moving-fashion", "--demo", "--out-dir", tmp_path / "each"),
            "--out-dir is for image and volume models", "a video model")
    assert not (tmp_path / "each").exists()


def test_plurals_and_numbers_in_messages(tmp_path, models):
    (tmp_path / "one.csv").write_text("x,y\n0.1\n")
    refused(cli("sample", "--model", "gp-curves", "--points", tmp_path / "one.csv"), "line 2 has 1 value;")
    clip_gif(tmp_path / "one.gif", frames=1)
    refused(cli("sample", "--model", "moving-fashion", tmp_path / "one.gif"), "is 1 frame of 32x32")
    with pytest.raises(InputError, match=r"max \|x\| = 1.0001\)"):
        models["fashion-mnist"].mean(([[1.0001, 0.0]], [[0.5]]), [[0.0, 0.0]])
    from pt_plugin.inputs import check_memory

    os.environ["PT_PLUGIN_MAX_MEMORY_GB"] = "0.001"
    try:
        with pytest.raises(InputError, match=r"about 0.00195 GiB of memory, more than the 0.001 GiB limit"):
            check_memory(2 * 2**20, "this", "less")
    finally:
        del os.environ["PT_PLUGIN_MAX_MEMORY_GB"]


def test_captions_say_what_the_picture_holds(tmp_path):
    (tmp_path / "p.csv").write_text("x,y\n-0.5,0.3\n0.1,1.0\n")
    r = cli("sample", "--model", "gp-curves", "--points", tmp_path / "p.csv", "-n", "2", "--out", tmp_path / "c.png")
    assert r.exit_code == 0 and "truth" not in r.output and "2 observed samples" in r.output
    r = cli("sample", "--model", "gp-curves", "--demo", "-n", "2", "--out", tmp_path / "d.png")
    assert "the true curve" in r.output
    obs = Observation(np.zeros((3, 3), np.float32), np.zeros((3, 1), np.float32), (4, 4, 4))
    assert VolumeKind().caption(obs, 2) == "truth unknown | 3 observed samples | mean | 2 samples"


def test_readme_curve_demo_matches_the_default_sample_count():
    default = next(p.default for p in main.commands["sample"].params if p.name == "num_samples")
    line = next(ln for ln in (ROOT / "README.md").read_text().splitlines()
                if ln.startswith("pt-plugin sample --model gp-curves --demo  "))
    assert f"{default} samples" in line


def test_transparency_is_composited_on_the_chosen_background(tmp_path):
    from pt_plugin.images import read_image

    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[:2, :, :3], rgba[:2, :, 3] = 200, 255  # the top half an opaque garment, the rest transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    assert read_image(tmp_path / "t.png", 1)[3, 0, 0] == 1.0
    assert read_image(tmp_path / "t.png", 1, background="black")[3, 0, 0] == 0.0
    assert read_image(tmp_path / "t.png", 1, background="black")[0, 0, 0] == pytest.approx(200 / 255)
    with pytest.raises(InputError, match="background must be one of white, black"):
        read_image(tmp_path / "t.png", 1, background="grey")
    refused(cli("sample", "--model", "gp-curves", "--demo", "--background", "black"), "--background is for images")


def test_float_tiff_is_read_as_it_is(tmp_path):
    from pt_plugin.images import read_image

    Image.fromarray(np.full((5, 6), 0.5, np.float32), "F").save(tmp_path / "f.tif")
    np.testing.assert_allclose(read_image(tmp_path / "f.tif", 1), 0.5)
    assert read_image(tmp_path / "f.tif", 3).shape == (5, 6, 3)
    Image.fromarray(np.full((5, 6), 200.0, np.float32), "F").save(tmp_path / "big.tif")
    with pytest.raises(InputError, match=r"values from 200 to 200; expected \[0, 1\]"):
        read_image(tmp_path / "big.tif", 1)


@pytest.mark.parametrize("value", ["-3", "-1", "1025", "two", "1.5"])
def test_one_rule_for_threads(monkeypatch, value):
    from pt_plugin.sessions import thread_count

    monkeypatch.setenv("PT_PLUGIN_THREADS", value)
    with pytest.raises(InputError, match="from 0 to 1024"):
        thread_count(None)
    monkeypatch.delenv("PT_PLUGIN_THREADS")
    with pytest.raises(InputError, match="threads must be an integer from 0 to 1024"):
        pt_plugin.load("gp-curves", device="cpu", threads=-1)
    refused(cli("mean", "--model", "gp-curves", "--demo", "--threads", "-1"), "--threads")


@settings(max_examples=60, deadline=None, database=None)
@given(n=st.one_of(st.none(), st.booleans(), st.integers(-5, 2000), st.floats(), st.text(max_size=2),
                   st.sampled_from([np.int64(2), np.int32(-1), np.float64(2.0), np.bool_(True)])))
def test_threads_argument_property(n):
    """Property: threads is accepted exactly when it is None or an integer 0..1024 (not a bool)."""
    from pt_plugin.inputs import threads

    ok = n is None or (isinstance(n, (int, np.integer)) and not isinstance(n, (bool, np.bool_)) and 0 <= n <= 1024)
    try:
        out = threads(n)
    except InputError as e:
        assert not ok and "from 0 to 1024" in str(e)
    else:
        assert ok and (out is None or out == int(n))


def test_the_mean_mesh_of_the_mean_command_is_named_after_out(tmp_path):
    pytest.importorskip("skimage")
    r = cli("mean", "--model", "shapes", "--demo", "--out", tmp_path / "mean_shapes.png")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "mean_shapes.ply").is_file() != ("no zero crossing" in r.output)
    assert not (tmp_path / "mean_shapes_mean.ply").exists()


def test_commands_quoted_in_the_issue_give_no_traceback_in_a_terminal_like_subprocess(tmp_path):
    """The installed console script, as a user runs it: one line, no traceback, the input unchanged."""
    if EXE is None:
        pytest.skip("pt-plugin is not installed (pip install -e .)")
    src = tmp_path / "samples.csv"
    src.write_text("x,y\n0,0\n")
    for args in (["sample", "--model", "gp-curves", "--points", "samples.csv"], ["sample", "--out", "/proc/x.png",
                                                                                "--demo"]):
        r = subprocess.run([EXE, *args], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert r.returncode != 0 and "Traceback" not in r.stderr and r.stderr.count("\n") <= 1, r.stderr
    assert src.read_text() == "x,y\n0,0\n"


# -- the graph contract ---------------------------------------------------------------------------------------

def contract_section() -> str:
    text = (ROOT / "README.md").read_text()
    return text[text.index("## Using the graphs from another language"):text.index("## Train and export")]


@pytest.mark.parametrize("needle", [
    "`truth`", "`positions`", "`values`", "**unclipped** mean", "is not clipped", "grid: null", "(i + 0.5)/n",
    "must agree", "`bin_centers`", "`alpha`", "`architecture`", "fourier_axis_scales", "float64",
    "at least one real sample", "onnxruntime 1.18", "wasm", "examples/node",
])
def test_the_contract_is_documented(needle):
    assert needle in contract_section()


def test_shipped_graphs_are_within_the_documented_runtime():
    """IR version 10 and the opset model.json names, with the onnxruntime it asks for: 1.18 for opset 20, 1.23 for
    opset 23 (its Attention nodes); what the README promises for the fp32 graphs, cache graphs included."""
    onnx = pytest.importorskip("onnx")
    from pt_plugin.weights import bundled_root

    needs = {20: "1.18", 23: "1.23"}
    for name in pt_plugin.known_models():
        meta = json.loads((bundled_root() / name / "model.json").read_text())
        opset = meta.get("opset", 20)
        assert meta.get("requires_onnxruntime", "1.18") == needs[opset], name
        for graph in ("encoder.onnx", "decoder.onnx", *meta.get("cache", {}).get("files", [])):
            model = onnx.load(str(bundled_root() / name / graph), load_external_data=False)
            assert model.ir_version <= 10, (name, graph)
            assert all(o.version <= opset for o in model.opset_import if o.domain in ("", "ai.onnx")), (name, graph)


def test_shipped_demos_hold_the_documented_arrays():
    from pt_plugin.weights import bundled_root

    for name in pt_plugin.known_models():
        meta = json.loads((bundled_root() / name / "model.json").read_text())
        with np.load(bundled_root() / name / "demo.npz") as d:
            assert set(d.files) <= {"truth", "positions", "values"} and d.files, name
            if "truth" in d.files:
                assert d["truth"].shape == tuple(meta["grid"]) + (meta["val_dim"],) and d["truth"].dtype == np.float32
            if "positions" in d.files:
                assert d["positions"].shape[1] == meta["pos_dim"] and d["values"].shape == (len(d["positions"]),
                                                                                          meta["val_dim"])


def test_a_too_old_onnxruntime_is_named(tmp_path, monkeypatch):
    """An onnxruntime that cannot read the graphs' IR version: an InputError saying to upgrade, not a damaged file."""
    import pt_plugin.model as model_module

    Fail = type("Fail", (Exception,), {"__module__": "onnxruntime.capi.onnxruntime_pybind11_state"})

    def old_runtime(*args, **kwargs):
        raise Fail("[ONNXRuntimeError] : 1 : FAIL : Load model failed: Unsupported model IR version: 10, max "
                   "supported IR version: 9")

    monkeypatch.setattr(model_module, "make_session", old_runtime)
    with pytest.raises(InputError, match=r"needs a newer onnxruntime .* onnxruntime >= 1.18"):
        pt_plugin.load("gp-curves", device="cpu")


def test_cached_cost_follows_the_buffer():
    """Over cached keys and values exact sampling is priced far below re-encoding; a smaller buffer (more
    re-encodings) costs more, and re-encoding at every step costs about what the re-encoding sampler does."""
    from pt_plugin import cost

    a = cost.Architecture(d_model=128, enc_layers=4, dec_layers=4, ffn=256, bins=64, val_dim=1)
    reencode = cost.sample_flops(a, 64, 720, 1, 720, 0.0)
    never, b64, b8 = (cost.cached_sample_flops(a, 64, 720, 1, 720, 0.0, b) for b in (None, 64, 8))
    assert reencode > 5 * never > 0
    assert never < b64 < b8 < reencode
    assert cost.cached_sample_flops(a, 64, 720, 1, 720, 0.0, 0) == pytest.approx(reencode, rel=0.05)
