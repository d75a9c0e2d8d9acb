"""`pt-plugin acquire` (issue 30): the plan picture and table per signal kind, equal to Model.acquire on the same
observation; output safety; refusals in one line. In-process through click's CliRunner, and in a subprocess
where what a terminal user sees matters."""
from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pt_plugin
from cli_helpers import cli, refused
from pt_plugin import cost
from pt_plugin.kinds import kind_for

EXE = shutil.which("pt-plugin")


def table(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return list(rows[0]), rows


def demo_observation(model, observed: int, seed: int):
    """The observation `--demo --observed N --seed S` makes, and the grid the command acquires on."""
    kind = kind_for(model.signal)
    obs = kind.observe(kind.demo(model), observed, seed)
    return obs.positions, obs.values, tuple(obs.shape)


def test_acquire_on_the_tiny_model_matches_the_api(tiny_export, tmp_path):
    r = cli("acquire", "--demo", "--model", tiny_export, "--observed", "16", "--picks", "5", "--out",
            tmp_path / "plan.png")
    assert r.exit_code == 0, r.output
    assert "5 picks (variance) among 768 free cells of the 28x28 grid" in r.output
    header, rows = table(tmp_path / "plan.csv")
    assert header == ["rank", "x", "y", "index", "y_cell", "x_cell", "score"]
    model = pt_plugin.load(model_path=tiny_export, device="cpu")
    pos, val, shape = demo_observation(model, 16, 0)
    ref = model.acquire(pos, val, k=5, seed=0, shape=shape)
    assert [int(r["index"]) for r in rows] == ref.indices.tolist()
    assert [int(r["rank"]) for r in rows] == [1, 2, 3, 4, 5]
    np.testing.assert_allclose([[float(r["x"]), float(r["y"])] for r in rows], ref.positions, atol=1e-5)
    np.testing.assert_allclose([float(r["score"]) for r in rows], ref.scores, rtol=1e-5)
    assert [(int(r["y_cell"]), int(r["x_cell"])) for r in rows] == [tuple(c) for c in ref.cells()]
    im = Image.open(tmp_path / "plan.png")
    assert im.format == "PNG" and im.width > 4 * 28 * 4  # truth | S | mean | std, each enlarged


def test_random_picks_follow_the_seed(tiny_export, tmp_path):
    args = ("acquire", "--demo", "--model", tiny_export, "--observed", "16", "-n", "6", "--criterion", "random")
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        assert cli(*args, "--seed", seed, "--out", tmp_path / f"{name}.png").exit_code == 0
    a, b, c = ((tmp_path / f"{n}.csv").read_text() for n in "abc")
    assert a == b and a != c


def test_acquire_on_a_curve_writes_a_plot_and_its_table(tmp_path):
    pytest.importorskip("matplotlib", reason="curve plots need pip install 'pt-plugin[plot]'")
    (tmp_path / "p.csv").write_text("x,y\n-0.5,0.3\n0.1,1.0\n0.6,-0.2\n")
    r = cli("acquire", "--model", "gp-curves", "--points", tmp_path / "p.csv", "--picks", "4", "--out",
            tmp_path / "c.png")
    assert r.exit_code == 0, r.output
    assert "among 256 free cells of the 256-point grid given 3 observed samples" in r.output
    header, rows = table(tmp_path / "c.csv")
    assert header == ["rank", "x", "index", "x_cell", "score"]
    curves = pt_plugin.load("gp-curves", device="cpu")
    ref = curves.acquire([[-0.5], [0.1], [0.6]], [[0.3], [1.0], [-0.2]], k=4, shape=(256,))
    assert [int(r["index"]) for r in rows] == ref.indices.tolist()
    assert Image.open(tmp_path / "c.png").format == "PNG"
    assert (tmp_path / "p.csv").read_text() == "x,y\n-0.5,0.3\n0.1,1.0\n0.6,-0.2\n"  # the input untouched


@pytest.mark.parametrize("name, observed, cells", [("moving-fashion", 64, ["t_cell", "y_cell", "x_cell"]),
                                                    ("shapes", 32, ["z_cell", "y_cell", "x_cell"])])
def test_acquire_on_a_video_and_a_volume_draws_the_slices_with_picks(name, observed, cells, tmp_path):
    r = cli("acquire", "--model", name, "--demo", "--observed", observed, "--picks", "3", "--out", tmp_path / "p.png")
    assert r.exit_code == 0, r.output
    header, rows = table(tmp_path / "p.csv")
    assert header[-5:] == ["index", *cells, "score"] and len(rows) == 3
    model = pt_plugin.load(name, device="cpu")
    pos, val, shape = demo_observation(model, observed, 0)
    ref = model.acquire(pos, val, k=3, seed=0, shape=shape)
    assert [int(r["index"]) for r in rows] == ref.indices.tolist()
    slices = len({int(r[cells[0]]) for r in rows})
    im = Image.open(tmp_path / "p.png")
    assert im.width >= slices * 32 * 12  # one panel of 32 cells enlarged 12 times per slice or frame with a pick


# -- output safety and refusals --------------------------------------------------------------------------------

def test_out_equal_to_an_input_is_refused_before_anything_is_written(tiny_export, tmp_path):
    src = tmp_path / "img.png"
    Image.fromarray(np.full((28, 28), 90, np.uint8)).save(src)
    before = src.read_bytes()
    refused(cli("acquire", src, "--model", tiny_export, "--out", src), "would overwrite the INPUT")
    (tmp_path / "p.csv").write_text("x,y\n0.1,0.2\n")
    refused(cli("acquire", "--model", "gp-curves", "--points", tmp_path / "p.csv", "--out", tmp_path / "p.png"),
            "the table", "would overwrite the --points")
    assert src.read_bytes() == before and (tmp_path / "p.csv").read_text() == "x,y\n0.1,0.2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.png", "p.csv"]


@pytest.mark.parametrize("args, message", [
    (["--picks", "0"], "'--picks' / '-n'"),
    (["-n", "two"], "'--picks' / '-n'"),
    (["--picks", "900"], "--picks 900 is more than the 768 cells of the 28x28 grid not yet observed"),
    (["--out", "plan.ply"], "names no picture format"),
    (["--shape", "4x4", "--picks", "17"], "--picks 17 is more than the 16 cells of the 4x4 grid"),
    (["--criterion", "varience"], "unknown criterion 'varience'; expected one of 'variance', 'entropy'"),
])
def test_bad_arguments_are_refused(tiny_export, tmp_path, args, message):
    refused(cli("acquire", "--demo", "--model", tiny_export, "--observed", "16", *args, cwd=tmp_path), message)
    assert not list(tmp_path.iterdir())


def test_nothing_left_to_acquire_is_refused(tmp_path):
    refused(cli("acquire", "--demo", "--observed", "784", "-n", "1", cwd=tmp_path),
            "--picks 1 is more than the 0 cells of the 28x28 grid", "observe fewer (--observed)")
    assert not list(tmp_path.iterdir())


def test_improvement_on_rgb_values_is_refused(tmp_path):
    refused(cli("acquire", "--model", "emoji", "--demo", "--criterion", "improvement", cwd=tmp_path),
            "needs scalar values", "val_dim 3")
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(EXE is None, reason="pt-plugin is not installed (pip install -e .)")
def test_unknown_criterion_is_one_line_on_stderr(tmp_path):
    r = subprocess.run([EXE, "acquire", "--demo", "--criterion", "best"], capture_output=True, text=True,
                       cwd=tmp_path, timeout=300)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == ["Error: unknown criterion 'best'; expected one of 'variance', "
                                             "'entropy', 'improvement', 'random'"]
    assert not list(tmp_path.iterdir())


def test_work_past_the_bound_is_refused_unless_yes(tmp_path):
    env = {"PT_PLUGIN_MAX_MINUTES": "1e-9"}
    args = ("acquire", "--demo", "--observed", "16", "-n", "2", "--out", tmp_path / "p.png")
    refused(cli(*args, env=env), "acquiring 2 positions among 768 cells is estimated", "pass --yes", "fewer --picks")
    assert not (tmp_path / "p.png").exists()
    assert cli(*args, "--yes", env=env).exit_code == 0


def test_the_estimate_counts_every_pick():
    a = cost.Architecture.of(pt_plugin.load("fashion-mnist", device="cpu").meta)
    one, many = cost.acquire_flops(a, 16, 768, 1, "variance"), cost.acquire_flops(a, 16, 768, 16, "variance")
    assert one == cost.mean_flops(a, 16, 768) and many > one * 2
    assert cost.acquire_flops(a, 16, 768, 16, "entropy") > many and cost.acquire_flops(a, 16, 768, 16, "random") == 0
