"""Procedural SDF shapes (export/datasets/shapes.py) and their evaluation (export/evaluate/volume.py), issue 14."""
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pt_plugin.grids import grid_positions

pytest.importorskip("skimage")
pytest.importorskip("scipy")

from export.datasets.curves import seed_sequence
from export.datasets.shapes import (
    EXTENT,
    NEAR_BAND,
    SOLID_WEIGHTS,
    TRAINING_KIND_WEIGHTS,
    TRUNCATION,
    Primitive,
    ShapeSampler,
    box,
    cylinder,
    random_rotation,
    shapes,
)
from export.errors import UsageError
from export.evaluate import volume
from export.evaluate.__main__ import parser
from export.evaluate.protocol import Shipped, load_shipped
from export.evaluate.volume import ShapeBank, chamfer, gauss_mix_nll, iou, mesh_vertices

SHAPES = Path(__file__).resolve().parents[2] / "weights" / "shapes"


def brute_box_sdf(p, center, half):
    """Distance to an axis-aligned box by dense sampling of its surface (outside) / faces (inside)."""
    q = np.abs(p - center) - half
    return np.linalg.norm(np.maximum(q, 0), axis=-1) + np.minimum(q.max(-1), 0)


def test_primitive_sdfs_are_exact():
    rng = np.random.default_rng(0)
    p = rng.uniform(-1, 1, (500, 3))
    b = box((0.1, -0.2, 0.3), (0.2, 0.1, 0.3))
    assert np.allclose(b.sdf(p), brute_box_sdf(p, b.center, b.half))
    c = cylinder((0.0, 0.0, 0.0), 0.2, 0.5)
    # on the axis above the cap, inside at the centre, beside the side wall
    pts = np.array([[0, 0.8, 0], [0, 0, 0], [0.5, 0, 0]])
    assert np.allclose(c.sdf(pts), [0.3, -0.2, 0.3])
    # a rotated box equals the unrotated one at the rotated points
    angle = 0.4
    r = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    rb = Primitive("box", np.zeros(3), np.array([0.2, 0.3, 0.1]), r)
    assert np.allclose(rb.sdf(p @ r.T), brute_box_sdf(p, np.zeros(3), rb.half))


def test_spheres_and_turned_cylinders_are_exact():
    rng = np.random.default_rng(2)
    p = rng.uniform(-1, 1, (300, 3))
    sphere = Primitive("sphere", np.array([0.1, -0.2, 0.0]), np.array([0.4, 0.0]), np.eye(3))
    np.testing.assert_allclose(sphere.sdf(p), np.linalg.norm(p - sphere.center, axis=1) - 0.4)
    assert np.abs(sphere.corners() - sphere.center).max() == pytest.approx(0.4)
    r = random_rotation(rng)
    assert np.allclose(r @ r.T, np.eye(3)) and np.linalg.det(r) == pytest.approx(1.0)
    turned = Primitive("cylinder", np.zeros(3), np.array([0.2, 0.5]), r)
    np.testing.assert_allclose(turned.sdf(p @ r.T), cylinder((0, 0, 0), 0.2, 0.5).sdf(p), atol=1e-12)


def test_solids_stay_in_the_cube_and_join_the_training_mixture_only():
    """Solids keep their own size (a sphere is not blown up to the cube) and never leave [-EXTENT, EXTENT]³; the
    evaluation and validation streams stay furniture, the same shapes as before solids existed."""
    g = grid_positions(24, 24, 24)
    solids = shapes(60, "eval", 0, SOLID_WEIGHTS)
    forms = set()
    for s in solids:
        (part,) = s.parts
        forms.add(part.kind)
        assert np.abs(part.corners()).max() <= EXTENT + 1e-9 and (s.sdf(g) < 0).any()
    assert forms == {"sphere", "box", "cylinder"}
    radii = [s.parts[0].half[0] for s in solids if s.parts[0].kind == "sphere"]
    assert min(radii) < 0.5 < max(radii)
    kinds = [s.kind for s in shapes(400, "train", 0, TRAINING_KIND_WEIGHTS)]
    assert 0.15 < kinds.count("solid") / len(kinds) < 0.35
    assert "solid" not in {s.kind for s in shapes(200, "eval") + shapes(200, "val")}


def test_shapes_fit_the_cube_and_streams_are_disjoint():
    train, test = shapes(20, "train"), shapes(20, "eval")
    g = grid_positions(24, 24, 24)
    for s in train + test:
        corners = np.concatenate([p.corners() for p in s.parts])
        assert np.abs(corners).max() == pytest.approx(EXTENT, abs=1e-9) or np.abs(corners).max() < EXTENT
        assert (s.sdf(g) < 0).any(), f"a {s.kind} with no inside"
    same = [np.allclose(a.sdf(g), b.sdf(g)) for a, b in zip(train, test)]
    assert not any(same)
    again = shapes(20, "eval")
    assert all(np.allclose(a.sdf(g), b.sdf(g)) for a, b in zip(test, again))
    assert {s.kind for s in train + test} == {"chair", "stool", "table"}


def test_sampler_positions_and_values():
    b = ShapeSampler(8, 64, 512, 4, seed_sequence("train", 0)).batch()
    spos, sval, mask, qpos, qval = b
    assert spos.shape[0] == 4 and qpos.shape == (4, 512, 3) and qval.shape == (4, 512, 1)
    assert float(spos.abs().max()) <= 1 and float(qval.abs().max()) <= TRUNCATION + 1e-6
    near = float((qval.abs() < NEAR_BAND).float().mean())
    assert 0.45 < near < 0.8  # half drawn from the shell, plus uniform draws that land in it


def sphere_grid(n, centre, radius):
    return (np.linalg.norm(grid_positions(n, n, n) - np.asarray(centre), axis=1) - radius).reshape(n, n, n)


def test_mesh_vertices_are_in_position_order():
    """A sphere off-centre along x must come back off-centre along x (array order is [Z, Y, X])."""
    v = mesh_vertices(sphere_grid(32, (0.5, 0.0, -0.2), 0.3))
    assert np.allclose(v.mean(0), [0.5, 0.0, -0.2], atol=0.02)
    assert np.allclose(np.linalg.norm(v - [0.5, 0.0, -0.2], axis=1), 0.3, atol=2 / 32)
    assert mesh_vertices(np.ones((8, 8, 8))) is None


def test_iou_and_chamfer():
    a = sphere_grid(16, (0, 0, 0), 0.5)
    assert iou(a, a) == 1.0
    assert iou(a, sphere_grid(16, (0.9, 0.9, 0.9), 0.05)) == 0.0
    v = mesh_vertices(sphere_grid(32, (0, 0, 0), 0.4))
    assert chamfer(v, v) == 0.0
    bigger = mesh_vertices(sphere_grid(32, (0, 0, 0), 0.5))
    assert chamfer(bigger, v) == pytest.approx(0.1 + 0.1, abs=0.02)  # concentric: 0.1 apart everywhere
    assert chamfer(None, v) == pytest.approx(0.4 + 0.4, abs=0.02)  # the origin, 0.4 from every surface point


def test_gauss_mix_nll_matches_a_direct_sum():
    v = np.array([0.0, 0.1])
    centres = np.array([[0.0, 0.0], [0.2, 0.2]])
    w = np.array([0.25, 0.75])
    sigma = 0.05
    pdf = lambda x, m: np.exp(-0.5 * ((x - m) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))  # noqa: E731
    want = -np.log(w[0] * pdf(v, centres[0]) + w[1] * pdf(v, centres[1]))
    assert np.allclose(gauss_mix_nll(v, centres, w, sigma), want)


def test_shape_bank_finds_the_shape_it_was_given():
    bank = shapes(30, "train", 5)
    knn = ShapeBank(bank)
    rng = np.random.default_rng(1)
    p = bank[17].positions(64, rng)
    top, w = knn.weights(p, bank[17].values(p), tau=0.001)
    assert top[0] == 17 and w[0] > 0.999


def test_evaluate_volumes_end_to_end(tmp_path):
    """`python -m export.evaluate weights/shapes` with tiny counts: every method scored, the report names its
    protocol and the graphs it measured, not a checkpoint."""
    args = parser().parse_args(["weights/shapes", "--out", str(tmp_path / "eval"), "--shapes", "2", "--bank", "12",
                                "--sizes", "16", "--threads", "1", "--solids", "2"])
    res = volume.evaluate(load_shipped(SHAPES, threads=1), args, log=lambda _: None)
    row = res["sizes"]["16"]
    for m in ("model", "knn", "rbf", "nearest"):
        assert 0 <= row[m]["iou"] <= 1 and row[m]["chamfer"] > 0 and row[m]["mse"] >= 0
        assert 0 <= res["solids"]["16"][m]["iou"] <= 1
    assert row["model"]["nll"] is not None and row["rbf"]["nll"] is None
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["sizes"]["16"]["targets"] == row["targets"]
    st = saved["settings"]
    assert st["protocol"] == "volume" and st["precision"] == "fp32" and st["kind"] == "volume"
    shipped = json.loads((SHAPES / "model.json").read_text())["training"]["total_steps"]
    assert st["step"] == shipped and "checkpoint" not in st  # the graphs' own training, from their model.json
    md = (tmp_path / "eval" / "metrics.md").read_text()
    assert md.count("| 16 | PixelTransformer |") == 2 and "Single solids" in md
    assert st["evaluation_solids"] == 2 and st["bank_mixture"] == TRAINING_KIND_WEIGHTS
    assert set(volume.card_blocks(res)) == {"evaluation"}


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_volume_protocol_measures_the_shipped_graphs(precision):
    """The model's figures are those of the graphs pt_plugin loads (fp32 or int8): its mean at the queries is
    Model.mean, its NLL the Distribution's, and the int8 graphs give other figures than the fp32 ones."""
    shipped = load_shipped(SHAPES, precision, threads=1)
    sets = volume.draw_sets(shapes(2, "eval"), 16, 32, seed=0)
    gpos = grid_positions(4, 4, 4)
    preds = volume.model_predictions(shipped.model, sets, gpos)
    spos, sval, qpos, qval = sets[1]
    np.testing.assert_allclose(preds[1][0], shipped.model.mean((spos, sval), qpos)[:, 0], atol=1e-6)
    np.testing.assert_allclose(preds[1][1], shipped.model.mean((spos, sval), gpos)[:, 0], atol=1e-6)
    np.testing.assert_allclose(preds[1][2], -shipped.model.query((spos, sval), qpos).log_prob(qval), rtol=1e-5)
    if precision == "int8":
        fp32 = volume.model_predictions(load_shipped(SHAPES, threads=1).model, sets, gpos)
        assert not np.allclose(preds[1][0], fp32[1][0], atol=1e-6)


def test_a_volume_protocol_refuses_other_data():
    """A volume model trained on other data than the procedural shapes is refused, not scored on them."""
    other = Shipped(SimpleNamespace(meta={"training": {"data": "gp-curves"}}), "other", "fp32")
    with pytest.raises(UsageError, match="trained on 'gp-curves'.*shapes"):
        volume.check_data(other)


def test_neighbour_queries_sit_next_to_samples():
    spos, _, _, qpos, qval = ShapeSampler(16, 16, 256, 2, seed_sequence("train", 3), neighbour_share=1.0).batch()
    d = torch.cdist(qpos, spos).min(-1).values  # distance of each query to its nearest sample
    assert float(d.max()) < 0.03 * 6 and float(d.mean()) < 0.03 * 2.5
    spos0, _, _, qpos0, _ = ShapeSampler(16, 16, 256, 2, seed_sequence("train", 3), neighbour_share=0.0).batch()
    assert float(torch.cdist(qpos0, spos0).min(-1).values.mean()) > 0.1
