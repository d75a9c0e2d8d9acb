"""A model's demo signal: `python -m export.demo CHECKPOINT --out weights/NAME [--image FILE]`.

Writes demo.npz next to the graphs: `truth` [*grid, val_dim] for gridded signals (a test image,
a test clip), or dense true points `positions` / `values` for continuous ones (a curve from the
evaluation seed stream). `pt-plugin sample --model NAME --demo` observes samples of it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from pt_plugin.grids import grid_positions
from pt_plugin.images import read_image

from .checkpoint import ExportError, load_checkpoint
from .curves import FAMILIES, family, seed_sequence
from .data import DataError, load_dataset

CURVE_POINTS = 200


def demo_arrays(ck: dict, image: str | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """The demo of a checkpoint's signal, from its training data's held-out part."""
    train = ck["config"]["train"]
    model = ck["config"]["model"]
    data = train.get("data", "")
    if data in FAMILIES:
        x = grid_positions(CURVE_POINTS)
        y = family(data).draw(x[:, 0][None].astype(np.float64), np.random.default_rng(seed_sequence("eval", 99, seed)))
        return {"positions": x, "values": y[0, :, None].astype(np.float32)}
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.demo", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--out", required=True, help="the model folder, e.g. weights/gp-curves")
    p.add_argument("--image", help="an image file to use as the demo (images)")
    p.add_argument("--seed", type=int, default=0, help="which held-out signal")
    a = p.parse_args(argv)
    try:
        _, ck = load_checkpoint(a.checkpoint)
        path = write_demo(Path(a.out), demo_arrays(ck, a.image, a.seed))
    except (ExportError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
