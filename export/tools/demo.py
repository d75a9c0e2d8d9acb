"""A model's demo signal: `python -m export.tools.demo CHECKPOINT --out weights/NAME [--image FILE]`.

Writes demo.npz next to the graphs: what the checkpoint's data set gives as its demo
(export.datasets: `truth` [*grid, val_dim] for gridded signals such as a test image or clip, dense true
points `positions` / `values` for continuous ones such as a curve, both for shapes), or `--image FILE`
as the truth of an image model. `pt-plugin sample --model NAME --demo` observes samples of it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from export.checkpoint import load_checkpoint
from export.datasets import FASHION_DIR, dataset
from export.errors import reports_errors
from pt_plugin.images import read_image


def demo_arrays(ck: dict, image: str | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """The demo of a checkpoint's signal, from its data set's held-out part (or an image file)."""
    train, model = ck["config"]["train"], ck["config"]["model"]
    if image is not None:
        return {"truth": read_image(image, model.get("val_dim", 1))}
    spec = train.get("data", "")
    return dataset(spec).demo(spec, train.get("data_dir") or FASHION_DIR, seed)


def write_demo(out: Path, arrays: dict[str, np.ndarray]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "demo.npz"
    np.savez_compressed(path, **arrays)
    return path


@reports_errors
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.tools.demo", description=__doc__.splitlines()[0])
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
