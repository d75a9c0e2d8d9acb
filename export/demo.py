"""A model's demo signal: `python -m export.demo CHECKPOINT --out weights/NAME [--image FILE]`.

Writes demo.npz next to the graphs: `truth` [*grid, val_dim] for gridded signals (a test image,
a test clip), or dense true points `positions` / `values` for continuous ones (a curve from the
evaluation seed stream). `pt-plugin sample --model NAME --demo` observes samples of it.

Shapes (`--data shapes`) ship both: `truth` [32, 32, 32, 1], the truncated SDF of the evaluation
shape test_shapes(1, seed)[0] at grid_positions(32, 32, 32) (array order [Z, Y, X], the picture's
ground truth), and SHAPE_POINTS dense points `positions` [N, 3] / `values` [N, 1] drawn by
Shape.positions from the evaluation stream (half near the surface, as in training), from which
`--observed K` picks S.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from pt_plugin.grids import grid_positions
from pt_plugin.images import read_image

from .checkpoint import load_checkpoint
from .curves import FAMILIES, family, seed_sequence
from .data import load_dataset
from .errors import reports_errors

CURVE_POINTS = 200
SHAPE_GRID = 32      # the shape demo's truth grid (each axis)
SHAPE_POINTS = 4096  # the shape demo's dense points that S is drawn from


def demo_arrays(ck: dict, image: str | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """The demo of a checkpoint's signal, from its training data's held-out part."""
    train = ck["config"]["train"]
    model = ck["config"]["model"]
    data = train.get("data", "")
    if data in FAMILIES:
        x = grid_positions(CURVE_POINTS)
        y = family(data).draw(x[:, 0][None].astype(np.float64), np.random.default_rng(seed_sequence("eval", 99, seed)))
        return {"positions": x, "values": y[0, :, None].astype(np.float32)}
    if data == "shapes":
        from .shapes import test_shapes

        shape = test_shapes(1, seed)[0]
        grid = (SHAPE_GRID,) * 3
        pos = shape.positions(SHAPE_POINTS, np.random.default_rng(seed_sequence("eval", 14, seed, 1)))
        return {"truth": shape.values(grid_positions(*grid)).reshape(*grid, 1),
                "positions": pos, "values": shape.values(pos)}
    if image is not None:
        return {"truth": read_image(image, model.get("val_dim", 1))}
    if data == "moving-fashion":
        from .video import test_clips

        return {"truth": test_clips(1, seed)[0]}
    images = load_dataset(data, train.get("data_dir", ""), "test")
    return {"truth": images[seed].astype(np.float32)}


def write_demo(out: Path, arrays: dict[str, np.ndarray]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "demo.npz"
    np.savez_compressed(path, **arrays)
    return path


@reports_errors
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.demo", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--out", required=True, help="the model folder, e.g. weights/gp-curves")
    p.add_argument("--image", help="an image file to use as the demo (images)")
    p.add_argument("--seed", type=int, default=0, help="which held-out signal")
    a = p.parse_args(argv)
    _, ck = load_checkpoint(a.checkpoint)
    path = write_demo(Path(a.out), demo_arrays(ck, a.image, a.seed))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
