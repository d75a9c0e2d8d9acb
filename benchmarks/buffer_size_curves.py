"""The causal buffer's size against the joint law of the draws, for a curve model (issue 32).

For each |S| in --sizes, --sets evaluation sets of the model's curve family (export.evaluate.curves, eval seed
stream) and --samples draws of the 64-point grid per set, cached exact sampling with each --buffers size (none: S
is encoded once and never again; N: S and every drawn point are encoded again before the buffer would exceed N;
0: at every point, the re-encoding sampler's draws). Prints the relative Frobenius error of the draws' covariance
against the oracle posterior's, mean over the sets, and the seconds each size took, side by side in one run.

    python benchmarks/buffer_size_curves.py --model-path weights/gp-curves [--buffers none,16,8,4,2,0]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import common

NEVER = 10 ** 9  # a buffer that never fills


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-path", type=Path, default=Path("weights/gp-curves"), help="a curve model with cache graphs")
    p.add_argument("--sizes", default="2,4,8", help="|S| values")
    p.add_argument("--buffers", default="none,16,8,4,2,0", help="buffer sizes ('none': never encode again)")
    p.add_argument("--sets", type=int, default=6)
    p.add_argument("--samples", type=int, default=300)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    from export.evaluate import curves

    model = common.load_model(a.model_path, a.threads)
    if not model.has_cache:
        raise SystemExit(f"{a.model_path} has no cache graphs (python -m export.onnx.cache_graphs)")
    fam = curves.family(model.meta["training"]["data"])
    xq = (np.arange(curves.JOINT_POINTS) + 0.5) / curves.JOINT_POINTS * 2 - 1
    buffers = [b.strip() for b in a.buffers.split(",")]
    print(f"# Joint covariance error by buffer size: {a.model_path}, {a.sets} sets x {a.samples} draws per |S|\n")
    print(f"{common.machine_line(a.threads)}\n")
    print("| |S| | " + " | ".join(f"buffer {b}" for b in buffers) + " |")
    print("| ---: |" + " ---: |" * len(buffers))
    for size in [int(s) for s in a.sizes.split(",")]:
        xs, ys, _, _ = curves.draw_eval_sets(fam, size, a.sets, 1, a.seed)
        cells = []
        for b in buffers:
            t0, errs = time.perf_counter(), []
            for i, (x, y) in enumerate(zip(xs, ys)):
                _, cov = curves.posterior(fam, x, y, xq, full=True)
                draws = model.sample(x[:, None], y[:, None], xq[:, None], a.samples, seed=100 + i, cache=True,
                                     buffer_size=NEVER if b == "none" else int(b))[..., 0]
                errs.append(curves.frobenius_error(draws, cov))
            cells.append(f"{np.mean(errs):.3f} ({time.perf_counter() - t0:.1f} s)")
        print(f"| {size} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
