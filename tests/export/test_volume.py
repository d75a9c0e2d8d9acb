"""The volume kind (issue 14): meshes of SDF grids, PLY / OBJ files, the renderer, --points CSV files,
SDF grid inputs, writing a figure with and without surfaces, the `mesh` extra, the shapes demo.

No model is needed here (the kind is driven with a stand-in model); tests/runtime/test_kinds.py trains a tiny
volume model and runs it through export, the runtime and the command line.
"""
from __future__ import annotations

import builtins
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pt_plugin import InputError, grid_positions
from pt_plugin.kinds import Observation, Outputs, check_out_name
from pt_plugin.kinds.extras import MissingExtraError
from pt_plugin.kinds.meshes import Mesh, extract_mesh, write_mesh, write_obj, write_ply
from pt_plugin.kinds.render import BACKGROUND, render, sdf_colors
from pt_plugin.kinds.volume import VolumeKind, mesh_path

TRUNC = 0.3
MODEL = SimpleNamespace(value_range=(-TRUNC, TRUNC), grid=(16, 16, 16), meta={"name": "stand-in"}, pos_dim=3,
                        val_dim=1, path="/nonexistent")


def sphere_grid(shape, centre=(0.0, 0.0, 0.0), radius=0.5, truncate=None) -> np.ndarray:
    """The SDF of a sphere on a grid in array order [Z, Y, X] (centre in positions (x, y, z))."""
    d = np.linalg.norm(grid_positions(*shape) - np.asarray(centre), axis=1) - radius
    if truncate:
        d = np.clip(d, -truncate, truncate)
    return d.reshape(shape).astype(np.float32)


def read_mesh(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices and faces back from an ASCII PLY or an OBJ file (a reader independent of the writer)."""
    lines = Path(path).read_text().splitlines()
    if path.suffix == ".obj":
        v = [list(map(float, ln.split()[1:])) for ln in lines if ln.startswith("v ")]
        f = [[int(i) - 1 for i in ln.split()[1:]] for ln in lines if ln.startswith("f ")]
        return np.array(v).reshape(-1, 3), np.array(f, int).reshape(-1, 3)
    assert lines[0] == "ply" and lines[1] == "format ascii 1.0"
    nv = int(next(ln for ln in lines if ln.startswith("element vertex")).split()[-1])
    nf = int(next(ln for ln in lines if ln.startswith("element face")).split()[-1])
    body = lines[lines.index("end_header") + 1:]
    assert len(body) == nv + nf
    v = np.array([list(map(float, ln.split())) for ln in body[:nv]]).reshape(-1, 3)
    f = np.array([list(map(int, ln.split())) for ln in body[nv:]], int).reshape(-1, 4)
    assert (f[:, 0] == 3).all()
    return v, f[:, 1:]


def signed_volume(v: np.ndarray, f: np.ndarray) -> float:
    return float(np.einsum("ij,ij->i", v[f[:, 0]], np.cross(v[f[:, 1]], v[f[:, 2]])).sum() / 6)


# -- meshes ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".ply", ".obj"])
def test_mesh_files_round_trip(tmp_path, suffix):
    mesh = Mesh(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32) - 0.25,
                np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], np.int64))
    path = write_mesh(tmp_path / f"tet{suffix}", mesh, comment="a tetrahedron\nsecond line")
    v, f = read_mesh(path)
    np.testing.assert_allclose(v, mesh.vertices, atol=1e-6)
    np.testing.assert_array_equal(f, mesh.faces)
    big = extract_mesh(sphere_grid((20, 20, 20)), outside=1.0)
    v, f = read_mesh((write_ply if suffix == ".ply" else write_obj)(tmp_path / f"s{suffix}", big))
    assert v.shape == big.vertices.shape and f.shape == big.faces.shape
    np.testing.assert_allclose(v, big.vertices, atol=1e-5)
    with pytest.raises(InputError, match=r"\.ply or \.obj"):
        write_mesh(tmp_path / "mesh.stl", mesh)


def test_marching_cubes_of_a_sphere():
    """Vertices lie on the sphere within half a cell, the faces wind outward and enclose its volume."""
    n, r = 24, 0.6
    mesh = extract_mesh(sphere_grid((n, n, n), radius=r, truncate=TRUNC)[..., None], outside=TRUNC)
    radius = np.linalg.norm(mesh.vertices, axis=1)
    assert np.abs(radius - r).max() < 0.5 * 2 / n
    assert signed_volume(mesh.vertices, mesh.faces) == pytest.approx(4 / 3 * np.pi * r ** 3, rel=0.05)


@pytest.mark.parametrize("centre", [(0.5, 0.0, 0.0), (0.1, -0.3, 0.4)])
def test_mesh_vertices_are_in_the_position_frame(centre):
    """A sphere centred at `centre` in positions on a non-cubic [Z, Y, X] grid gets a mesh centred there
    (array order or axis flips would move it)."""
    shape = (20, 26, 32)
    mesh = extract_mesh(sphere_grid(shape, centre, 0.35), outside=1.0)
    np.testing.assert_allclose(mesh.vertices.mean(0), centre, atol=0.02)
    np.testing.assert_allclose(mesh.vertices.max(0) - mesh.vertices.min(0), 0.7, atol=2 / min(shape))


def test_a_surface_cut_by_the_border_is_closed():
    """A ball bulging out of the grid is closed at the border by the padding, and open without it."""
    grid = sphere_grid((16, 16, 16), (0.9, 0.0, 0.0), 0.5)
    closed, cut = extract_mesh(grid, outside=1.0), extract_mesh(grid)

    def edge_uses(mesh):  # how many faces share each edge: 2 everywhere on a closed surface
        edges = np.sort(np.concatenate([mesh.faces[:, [0, 1]], mesh.faces[:, [1, 2]], mesh.faces[:, [2, 0]]]), 1)
        return np.unique(edges, axis=0, return_counts=True)[1]

    assert (edge_uses(closed) == 2).all() and (edge_uses(cut) == 1).any()
    last = 1 - 1 / 16  # the last cell centre along x
    assert cut.vertices[:, 0].max() <= last + 1e-6 < closed.vertices[:, 0].max() <= 1 + 1 / 16


def test_no_zero_crossing_gives_no_mesh():
    assert extract_mesh(np.full((8, 8, 8), 0.2, np.float32), outside=TRUNC) is None
    assert extract_mesh(np.full((8, 8, 8), -0.2, np.float32), outside=TRUNC) is None
    with pytest.raises(InputError, match=r"\[Z, Y, X\]"):
        extract_mesh(np.zeros((8, 8), np.float32))
    with pytest.raises(InputError, match="NaN"):
        extract_mesh(np.full((4, 4, 4), np.nan, np.float32))


# -- rendering ------------------------------------------------------------------------------------------

def test_render_shows_the_object_where_it_is():
    """The mesh covers pixels; +x is drawn to the right of the centre and +y above it (y is up)."""
    size = 96
    empty = render(size)
    assert empty.shape == (size, size, 3) and empty.dtype == np.float32
    assert 0 <= empty.min() and empty.max() <= 1

    def drawn(img):
        return np.abs(img - empty).max(-1) > 0.05

    for centre, axis, sign in [((0.6, 0, 0), 1, +1), ((-0.6, 0, 0), 1, -1), ((0, 0.6, 0), 0, -1)]:
        mesh = extract_mesh(sphere_grid((24, 24, 24), centre, 0.3), outside=1.0)
        img = render(size, mesh.vertices, mesh.faces)
        on = drawn(img)
        assert on.sum() > 0.02 * size * size
        where = np.argwhere(on).mean(0)[axis] - size / 2
        assert where * sign > size / 10, (centre, where)
        shades = img[on].mean(-1)
        assert shades.max() - shades.min() > 0.2  # shaded, not a flat silhouette
    assert np.allclose(empty[0, 0], BACKGROUND)


def test_points_are_coloured_by_sdf():
    colors = sdf_colors(np.array([-0.3, -0.01, 0.01, 0.3]), TRUNC)
    assert colors[1, 2] > colors[1, 0] and colors[2, 0] > colors[2, 2]  # blue inside, red outside
    assert np.abs(colors[1] - colors[2]).sum() > np.abs(colors[0] - colors[3]).sum()  # paler far from the surface
    img = render(64, points=np.zeros((1, 3)), point_colors=colors[:1] * 0 + [[0, 0, 1]])
    assert (img[..., 2] - img[..., 0] > 0.5).sum() >= 4


# -- reading ----------------------------------------------------------------------------------------------

row = st.tuples(st.floats(-1, 1), st.floats(-1, 1), st.floats(-1, 1), st.floats(-TRUNC, TRUNC))


@settings(max_examples=30, deadline=None, database=None)
@given(rows=st.lists(row, min_size=1, max_size=12), header=st.booleans(), blank=st.booleans())
def test_points_csv_is_read(tmp_path_factory, rows, header, blank):
    path = tmp_path_factory.mktemp("csv") / "pts.csv"
    text = ("x, y, z, sdf\n" if header else "") + "".join(f"{a!r},{b!r}, {c!r} ,{d!r}\n" + ("\n" if blank else "")
                                                         for a, b, c, d in rows)
    path.write_text(text)
    obs = VolumeKind().read(MODEL, path, resize=False)
    want = np.array(rows, np.float32)
    np.testing.assert_array_equal(obs.positions, want[:, :3])
    np.testing.assert_array_equal(obs.values, want[:, 3:])
    assert obs.shape == MODEL.grid and obs.truth is None


BAD = {
    "x,y,z,sdf\n0.1,0.2,0.3\n": "line 2 has 3 values; expected 4",
    "0.1,0.2,0.3,0.1,0.5\n": "line 1 has 5 values; expected 4",
    "0,0,0,0\n0.1,zero,0.3,0.1\n": "line 2: .* is not 4 numbers",
    "0,0,0,nan\n": "line 1: .*NaN",
    "0,0,0,inf\n": "line 1: .*NaN or an infinite",
    "0,0,0,1e60\n": "too large",
    "0,0,0,0\n0.1,1.5,0,0\n": r"line 2: position \(0.1, 1.5, 0\) lies outside \[-1, 1\]",
    "x,y,z,sdf\n\n0,0,-1.01,0.1\n": "line 3: position",
    "0,0,0,0.5\n": r"line 1: sdf = 0.5 lies outside the model's value range \[-0.3, 0.3\]",
    "x,y,z,sdf\n": "holds no points",
    "": "holds no points",
}


@pytest.mark.parametrize("text", list(BAD))
def test_points_csv_rejections_name_the_line(tmp_path, text):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=BAD[text]):
        VolumeKind().read(MODEL, path, resize=False)


def test_points_csv_rejections_of_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        VolumeKind().read(MODEL, tmp_path / "missing.csv", resize=False)
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00\x81" * 10)
    with pytest.raises(InputError):
        VolumeKind().read(MODEL, tmp_path / "bin.csv", resize=False)


@settings(max_examples=40, deadline=None, database=None)
@given(text=st.text(alphabet="0123456789.,-+e \nxyzsdfna", max_size=60))
def test_any_csv_text_is_read_or_refused_with_a_message(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("csv") / "any.csv"
    path.write_text(text)
    try:
        obs = VolumeKind().read(MODEL, path, resize=False)
    except InputError as e:
        assert str(e).strip()
    else:
        assert obs.positions.shape[1] == 3 and len(obs.positions) == len(obs.values) >= 1
        assert np.abs(obs.positions).max() <= 1 + 1e-5 and np.abs(obs.values).max() <= TRUNC * 1.002


def test_sdf_grid_input_is_observed_on_its_cells(tmp_path):
    """An .npy grid [Z, Y, X] of the model's size is the truth (truncated); --observed picks its cells with their
    values. Another size is refused unless resize (issue 31.7), which resamples it trilinearly to the model's grid."""
    grid = sphere_grid((16, 16, 16), (0.2, 0.0, -0.1), 0.5)
    np.save(tmp_path / "g.npy", grid)
    np.savez(tmp_path / "g.npz", sdf=grid[..., None])
    kind = VolumeKind()
    for name in ("g.npy", "g.npz"):
        obs = kind.read(MODEL, tmp_path / name, resize=False)
        assert obs.truth.shape == (16, 16, 16, 1) and obs.truth.max() <= TRUNC and obs.shape == MODEL.grid
        obs = kind.observe(obs, 50, seed=0)
        d = np.linalg.norm(obs.positions - [0.2, 0.0, -0.1], axis=1) - 0.5
        np.testing.assert_allclose(obs.values[:, 0], np.clip(d, -TRUNC, TRUNC), atol=1e-5)
    np.save(tmp_path / "small.npy", sphere_grid((10, 12, 14), (0.2, 0.0, -0.1), 0.5))
    with pytest.raises(InputError, match=r"a 10x12x14 \(Z x Y x X\) grid but model stand-in works on a 16x16x16 "
                                         r".*pass --resize"):
        kind.read(MODEL, tmp_path / "small.npy", resize=False)
    obs = kind.observe(kind.read(MODEL, tmp_path / "small.npy", resize=True), 50, seed=0)
    assert obs.truth.shape == (16, 16, 16, 1)
    d = np.linalg.norm(obs.positions - [0.2, 0.0, -0.1], axis=1) - 0.5
    np.testing.assert_allclose(obs.values[:, 0], np.clip(d, -TRUNC, TRUNC), atol=0.03)
    np.save(tmp_path / "flat.npy", np.zeros((4, 4)))
    np.savez(tmp_path / "two.npz", a=grid, b=grid)
    for name, match in (("flat.npy", r"\[Z, Y, X\]"), ("two.npz", "name the SDF grid")):
        with pytest.raises(InputError, match=match):
            kind.read(MODEL, tmp_path / name, resize=False)


def test_resample_grid_is_trilinear_at_cell_centres():
    """A linear field stays linear (exact inside the old grid's centres); the same size is unchanged."""
    from pt_plugin.kinds.volume import resample_grid

    def field(shape):
        return (grid_positions(*shape) @ np.array([0.3, -0.2, 0.1])).reshape(*shape, 1)

    src = field((8, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(resample_grid(src, (8, 8, 8)), src)
    out = resample_grid(src, (4, 4, 4))
    np.testing.assert_allclose(out, field((4, 4, 4)), atol=1e-6)


def test_out_names():
    for ok in ("a.png", "a.ply", "b.OBJ", "c.jpg"):
        check_out_name(Path(ok))
    with pytest.raises(InputError, match="suffix"):
        check_out_name(Path("a.stl"))
    VolumeKind().check_out(Path("m.obj"))
    from pt_plugin.kinds.image import ImageKind
    with pytest.raises(InputError):
        ImageKind().check_out(Path("m.obj"))
    pic = Path("out/samples.png")
    assert mesh_path(pic, None, "mean", ".ply") == Path("out/samples_mean.ply")
    assert mesh_path(pic, None, "sample_01", ".obj") == Path("out/samples_sample_01.obj")
    assert mesh_path(Path("mean.png"), None, "mean", ".ply", alone=True) == Path("mean.ply")
    # issue 31: `pt-plugin mean --out mean_shapes.png` writes mean_shapes.ply, not mean_shapes_mean.ply
    assert mesh_path(Path("mean_shapes.png"), None, "mean", ".ply", alone=True) == Path("mean_shapes.ply")
    assert mesh_path(pic, Path("meshes"), "sample_00", ".ply") == Path("meshes/sample_00.ply")


# -- writing ----------------------------------------------------------------------------------------------

def test_write_meshes_and_picture(tmp_path, capsys):
    """Mean and samples with a surface get a mesh (in the position frame); a grid without one gets a note."""
    shape = (12, 12, 12)
    truth = sphere_grid((16, 16, 16), (0.3, 0, 0), 0.4, TRUNC)[..., None]
    mean = sphere_grid(shape, (0.3, 0, 0), 0.4, TRUNC)[..., None]
    samples = np.stack([sphere_grid(shape, (-0.3, 0.2, 0), 0.3, TRUNC)[..., None], np.full_like(mean, 0.2)])
    pos = np.array([[0.3, 0, 0], [0.9, 0.9, 0.9]], np.float32)
    obs = Observation(pos, np.array([[-0.3], [0.3]], np.float32), shape, truth=truth)
    res = Outputs(mean, np.full_like(mean, 0.05), samples)
    written = VolumeKind().write(tmp_path / "fig.obj", obs, res, MODEL, scale=1)
    assert [p.name for p in written] == ["fig.png", "fig_mean.obj", "fig_sample_00.obj"]
    assert "sample 01 has no zero crossing" in capsys.readouterr().err
    with Image.open(tmp_path / "fig.png") as im:
        assert im.size[1] == 48 + 6 and im.size[0] == 5 * 48 + 6 * 3
    v, _ = read_mesh(tmp_path / "fig_mean.obj")
    np.testing.assert_allclose(v.mean(0), [0.3, 0, 0], atol=0.03)
    v, _ = read_mesh(tmp_path / "fig_sample_00.obj")
    np.testing.assert_allclose(v.mean(0), [-0.3, 0.2, 0], atol=0.03)
    # the mean command: no samples, the last panel is the mean coloured by σ; out_dir takes the meshes
    written = VolumeKind().write(tmp_path / "mean.png", obs, Outputs(mean, res.std, samples[:0]), MODEL, scale=1,
                                 out_dir=tmp_path / "meshes")
    assert [p.relative_to(tmp_path).as_posix() for p in written] == ["mean.png", "meshes/mean.ply"]


# -- the extra, the demo ---------------------------------------------------------------------------------

def test_missing_scikit_image_is_named(monkeypatch):
    real_import = builtins.__import__

    def no_skimage(name, *args, **kwargs):
        if name.split(".")[0] == "skimage":
            raise ImportError("no skimage here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_skimage)
    for mod in [m for m in sys.modules if m == "skimage" or m.startswith("skimage.")]:
        monkeypatch.delitem(sys.modules, mod)
    with pytest.raises(MissingExtraError, match=r"pip install 'pt-plugin\[mesh\]'"):
        VolumeKind().check_writer()
    with pytest.raises(MissingExtraError, match="extracting meshes"):
        extract_mesh(sphere_grid((8, 8, 8)))


def test_shapes_demo_arrays():
    """export.tools.demo's shapes branch: the truncated SDF in array order [Z, Y, X] and dense points, half
    near the surface."""
    from export.datasets.shapes import NEAR_BAND, evaluation_shapes
    from export.tools.demo import demo_arrays

    a = demo_arrays({"config": {"train": {"data": "shapes"}, "model": {"pos_dim": 3, "val_dim": 1}}}, seed=3)
    shape = evaluation_shapes(1, 3)[0]
    assert a["truth"].shape == (32, 32, 32, 1) and a["positions"].shape == (4096, 3) and a["values"].shape == (4096, 1)
    k, j, i = 5, 20, 27
    p = np.array([[(i + 0.5) / 16 - 1, (j + 0.5) / 16 - 1, (k + 0.5) / 16 - 1]])
    assert a["truth"][k, j, i, 0] == pytest.approx(shape.values(p)[0, 0], abs=1e-6)
    np.testing.assert_allclose(a["values"], shape.values(a["positions"]), atol=1e-6)
    near = np.mean(np.abs(shape.sdf(a["positions"])) < NEAR_BAND)
    assert 0.45 < near < 0.65
    assert np.abs(a["truth"]).max() <= TRUNC + 1e-6 and a["truth"].min() < 0 < a["truth"].max()
