"""Every kind of signal through one runtime (issue 11): tiny models of a 1-D curve, an RGB image, a 3-D
video and a 3-D shape (signed distances, issue 14) are trained here, exported, loaded, queried on grids and
sampled from the command line."""
import json
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

import pt_plugin
from conftest import FASHION, require_fashion
from pt_plugin.kinds import Observation, Outputs, kind_for
from pt_plugin.kinds.meshes import has_surface

EXE = shutil.which("pt-plugin")
TINY = {"d_model": 32, "n_heads": 2, "enc_layers": 1, "dec_layers": 1, "ffn": 64}
STEPS = {"steps": 40, "lr": 2e-3, "warmup": 5, "log_every": 20, "val_every": 40, "ckpt_every": 40, "threads": 1,
         "batch_size": 8, "num_queries": 32}
PALETTE = [[r, g, b] for r in (0.0, 0.5, 1.0) for g in (0.0, 0.5, 1.0) for b in (0.0, 0.5, 1.0)]


def rgb_folder(root):
    """Eight 16x16 colour images (tinted garments) written as PNG files."""
    from export.datasets.images import load_idx_images

    root.mkdir(parents=True, exist_ok=True)
    garments = load_idx_images(FASHION, "test")[:8, 6:22, 6:22]
    tints = np.random.default_rng(0).uniform(0.2, 1, (8, 1, 1, 3))
    for i, (g, t) in enumerate(zip(garments, tints)):
        Image.fromarray((g * t * 255).astype(np.uint8)).save(root / f"im{i}.png")
    return root


KINDS = {
    "curve": ({"pos_dim": 1, "num_bins": 1, "value_range": [-5.0, 5.0]},
              {"data": "gp-curves", "min_samples": 1, "max_samples": 16}, None),
    "image": ({"pos_dim": 2, "val_dim": 3, "bin_centers": PALETTE},
              {"data": "folder:{tmp}/rgb", "val_images": 2, "min_samples": 4, "max_samples": 64}, "16,16"),
    "video": ({"pos_dim": 3, "num_bins": 16},
              {"data": "moving-fashion", "limit": 300, "val_images": 50, "min_samples": 16, "max_samples": 256},
              "8,32,32"),
    "volume": ({"pos_dim": 3, "num_bins": 16, "value_range": [-0.3, 0.3], "normalize_values": True},
               {"data": "shapes", "min_samples": 4, "max_samples": 128}, "16,16,16"),
}
FROM_FASHION = {"image", "video"}  # trained on Fashion-MNIST garments: skipped without the data set (conftest)


@pytest.fixture(scope="module", params=[pytest.param(k, marks=[pytest.mark.fashion] if k in FROM_FASHION else [])
                                        for k in KINDS])
def kind_export(request, tmp_path_factory):
    """(kind, export folder) of a tiny model trained and exported for real, with its demo."""
    from export.onnx.graphs import main as export
    from export.tools.demo import main as demo
    from export.train import main as train

    kind = request.param
    if kind in FROM_FASHION:
        require_fashion()
    model, data, grid = KINDS[kind]
    tmp = tmp_path_factory.mktemp(kind)
    if kind == "image":
        rgb_folder(tmp / "rgb")
    data = {**data, "data": data["data"].format(tmp=tmp), "data_dir": str(FASHION)}
    cfg = {"model": {**TINY, **model}, "train": {**STEPS, **data, "out": str(tmp / "run")}}
    (tmp / "cfg.json").write_text(json.dumps(cfg))
    assert train(["--config", str(tmp / "cfg.json")]) == 0
    out = tmp / f"tiny-{kind}"
    args = [str(tmp / "run" / "model.pt"), "--out", str(out), "--sizes", "1,7,64"]
    assert export(args + (["--grid", grid] if grid else [])) == 0
    assert demo([str(tmp / "run" / "model.pt"), "--out", str(out)]
                + (["--image", str(tmp / "rgb" / "im0.png")] if kind == "image" else [])) == 0
    return kind, out


def demo_grids(folder, observed: int, num_samples: int, seed: int) -> dict[str, np.ndarray]:
    """The mean and samples that `pt-plugin sample --demo --observed K -n N --seed S` computes, in-process."""
    m = pt_plugin.load(model_path=folder, device="cpu")
    kind = kind_for(m.signal)
    obs = kind.observe(kind.demo(m), observed, seed)
    samples = m.sample_grid(obs.positions, obs.values, obs.shape, num_samples, seed)
    return {"mean": m.mean_grid(obs.positions, obs.values, obs.shape),
            **{f"sample_{i:02d}": s for i, s in enumerate(samples)}}


def test_volume_meshes_exactly_the_grids_that_cross_zero(tmp_path, capsys):
    """VolumeKind.write: a mesh of a sphere's SDF (vertices on the sphere), a note and no file for a grid
    that never crosses zero."""
    pytest.importorskip("skimage")
    from types import SimpleNamespace

    from pt_plugin.kinds.volume import VolumeKind

    shape = (12, 12, 12)
    grid = pt_plugin.grid_positions(*shape)
    sphere = (np.linalg.norm(grid, axis=1) - 0.5).reshape(*shape, 1).astype(np.float32)
    outside = np.full_like(sphere, 0.2)
    model = SimpleNamespace(value_range=(-0.3, 0.3), meta={"name": "synthetic"})
    obs = Observation(grid[:5], sphere.reshape(-1, 1)[:5], shape)
    res = Outputs(sphere, np.full_like(sphere, 0.01), np.stack([outside, sphere]))
    written = VolumeKind().write(tmp_path / "v.png", obs, res, model, scale=1)
    err = capsys.readouterr().err
    assert sorted(w.name for w in written) == ["v.png", "v_mean.ply", "v_sample_01.ply"]
    assert "the sample 00 has no zero crossing" in err and "mean SDF" not in err and "sample 01" not in err
    head, body = (tmp_path / "v_mean.ply").read_text().split("end_header\n")
    n = int(head.split("element vertex ")[1].split()[0])
    vertices = np.loadtxt(body.splitlines()[:n])
    assert n > 50 and np.allclose(np.linalg.norm(vertices, axis=1), 0.5, atol=0.03)


def test_signal_block_and_grid_outputs(kind_export):
    kind, folder = kind_export
    m = pt_plugin.load(model_path=folder, device="cpu")
    sig = m.signal
    assert sig.kind == kind and len(sig.axes) == m.pos_dim and len(sig.channels) == m.val_dim
    shape = {"curve": (50,), "image": (20, 12), "video": (4, 8, 8), "volume": (6, 8, 10)}[kind]  # not the training grid
    pos = pt_plugin.grid_positions(*shape)[::7]
    lo, hi = m.value_range
    val = np.random.default_rng(0).uniform(max(lo, 0), min(hi, 1), (len(pos), m.val_dim)).astype(np.float32)
    mean, std = m.mean_grid(pos, val, shape, return_std=True)
    assert mean.shape == std.shape == shape + (m.val_dim,) and np.isfinite(mean).all()
    samples = m.sample_grid(pos, val, shape, num_samples=2, seed=0)
    assert samples.shape == (2,) + shape + (m.val_dim,) and np.isfinite(samples).all()
    on_grid = np.zeros(int(np.prod(shape)), bool)
    on_grid[::7] = True
    np.testing.assert_allclose(samples[0].reshape(-1, m.val_dim)[on_grid], val, atol=1e-6)  # S is kept
    dist = m.query((pos, val), pt_plugin.grid_positions(*shape))
    assert dist.mean().shape == (int(np.prod(shape)), m.val_dim)


@pytest.mark.skipif(EXE is None, reason="pt-plugin is not installed (pip install -e .)")
def test_cli_writes_the_kinds_file(kind_export, tmp_path):
    kind, folder = kind_export
    out = tmp_path / ("s.gif" if kind == "video" else "s.png")
    r = subprocess.run([EXE, "sample", "--model", str(folder), "--demo", "-n", "2", "--observed", "20", "--out",
                        str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert out.is_file() and Image.open(out).size[0] > 0
    if kind == "curve":
        table = out.with_suffix(".csv").read_text().splitlines()
        assert table[0] == "x,mean,std,sample_1,sample_2" and len(table) == 257
    if kind == "video":
        with Image.open(out) as im:
            assert im.n_frames == 8
        assert (tmp_path / "s_frames.png").is_file()
    if kind == "volume":  # a mesh of each grid that crosses zero, a note for each that does not
        grids = demo_grids(folder, observed=20, num_samples=2, seed=0)  # what the command computed
        for name, label in (("mean", "mean SDF"), ("sample_00", "sample 00"), ("sample_01", "sample 01")):
            mesh, surface = tmp_path / f"s_{name}.ply", has_surface(grids[name])
            assert mesh.is_file() == surface, (name, r.stderr)
            assert (f"the {label} has no zero crossing" in r.stderr) == (not surface), r.stderr
            if surface:
                head = mesh.read_text().split("end_header")[0]
                assert "element vertex" in head and "element face" in head and str(mesh) in r.stdout
        with Image.open(out) as im:
            assert im.size == (5 * 48 * 4 + 6 * 3, 48 * 4 + 6)  # truth | S | mean | 2 samples, 4x48-pixel panels


@pytest.mark.skipif(EXE is None, reason="pt-plugin is not installed (pip install -e .)")
def test_curve_points_from_csv(kind_export, tmp_path):
    kind, folder = kind_export
    if kind != "curve":
        pytest.skip("curves only")
    (tmp_path / "pts.csv").write_text("x,y\n-0.5,0.3\n0.0,1.0\n0.6,-0.4\n")
    r = subprocess.run([EXE, "sample", "--model", str(folder), "--points", str(tmp_path / "pts.csv"), "-n", "3",
                        "--out", str(tmp_path / "c.png")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "3 observed samples" in r.stdout
    (tmp_path / "bad.csv").write_text("x,y\n0.1\n")
    r = subprocess.run([EXE, "sample", "--model", str(folder), "--points", str(tmp_path / "bad.csv")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode != 0 and "expected 2 per row" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.skipif(EXE is None, reason="pt-plugin is not installed (pip install -e .)")
def test_volume_points_from_csv(kind_export, tmp_path):
    kind, folder = kind_export
    if kind != "volume":
        pytest.skip("volumes only")
    (tmp_path / "pts.csv").write_text("x,y,z,sdf\n0,0,0,-0.2\n0.5,0,0,0.1\n0,0.8,0,0.3\n-0.5,-0.5,0.5,0.25\n")
    r = subprocess.run([EXE, "mean", "--model", str(folder), "--points", str(tmp_path / "pts.csv"), "--shape",
                        "12x10x8", "--out", str(tmp_path / "m.obj")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "4 observed samples" in r.stdout and (tmp_path / "m.png").is_file()
    m = pt_plugin.load(model_path=folder, device="cpu")
    pos, val = m.check_set(*np.split(np.loadtxt(tmp_path / "pts.csv", delimiter=",", skiprows=1), [3], axis=1))
    surface = has_surface(m.mean_grid(pos, val, (12, 10, 8)))  # the mean the command computed
    assert (tmp_path / "m.obj").is_file() == surface, r.stderr  # the mean alone: NAME.obj (issue 31)
    assert ("no zero crossing" in r.stderr) == (not surface), r.stderr
    (tmp_path / "bad.csv").write_text("x,y,z,sdf\n0.1,0.2,0.3\n")
    (tmp_path / "far.csv").write_text("0,0,2,0.1\n")
    for name, message in (("bad.csv", "expected 4 per row"), ("far.csv", "lies outside [-1, 1]")):
        r = subprocess.run([EXE, "sample", "--model", str(folder), "--points", str(tmp_path / name)],
                           capture_output=True, text=True, timeout=600)
        assert r.returncode != 0 and message in r.stderr and "Traceback" not in r.stderr


def test_a_missing_extra_is_named(monkeypatch):
    """Plotting sits behind `pt-plugin[plot]`; without matplotlib the error names the extra to install."""
    import builtins

    from pt_plugin.kinds.curve import CurveKind
    from pt_plugin.kinds.extras import MissingExtraError

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.split(".")[0] == "matplotlib":
            raise ImportError("no matplotlib here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    monkeypatch.delitem(__import__("sys").modules, "matplotlib", raising=False)
    with pytest.raises(MissingExtraError, match=r"pip install 'pt-plugin\[plot\]'"):
        CurveKind().check_writer()
