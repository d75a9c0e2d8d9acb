"""Sampling speed: the exact one-position-per-pass sampler against the scheduled (step_fraction) modes.

What runs: Model.sample_images for ONE full 28x28 image of the Fashion-MNIST test set (index
--image, default 0) observed at |S| = 64 random pixels (pt_plugin.observe_random, --seed); the
720 free pixels are drawn autoregressively (--autoregressive, default 2048 = all of them; any left
over take the mean given the grown set, one more pass).
  exact:   step_fraction 0, the paper's algorithm: one position per encoder pass, re-encoding the
           grown set each time (720 passes).
  f=0.05:  step_fraction 0.05 etc.: ceil(f * |set|) positions per pass, drawn independently given
           the current set (fewer passes; what that costs in quality: benchmarks/sampling_quality.py).
Each mode runs with num_samples=1 and with num_samples=--batch (16 images in one call, one batch).

Every timed call runs in a freshly spawned process (model loaded and warmed with one mean-image
query first); calls of all (mode, batch) pairs are interleaved in rotating order, --repeats times
each (--exact-repeats for the slow exact mode), and the table gives medians.

Columns: passes = encoder passes per call (len(pt_plugin.sampling.step_sizes(|S|, N', f)), +1 when
N' < 720 leaves pixels to the mean pass); s/image = seconds per call / images per call; speed-up =
exact s/image / this mode's s/image at the same batch, or against exact at batch 1 when the
exact batch is not timed (without --exact-batch); samples/s =
images per second; batch gain = samples/s at this batch / samples/s of the same mode with
num_samples=1; peak MiB = growth of the peak RSS during the call (common.peak_growth);
GFLOP/s = the multiply-adds of the call's matrix products (counted from model.json's architecture
and the set size of every pass, x2; layer norms, softmax and the numpy side left out) / its
seconds: how hard the call keeps the cores busy, so whether a batch can still gain anything. The
header gives, as a yardstick, the GFLOP/s of a plain float32 1024 x 1024 numpy matrix product.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import common
from common import Measured, fmt

Set = tuple[np.ndarray, np.ndarray]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = common.parser(__doc__)
    p.add_argument("--image", type=int, default=0, help="test image index")
    p.add_argument("--observed", type=int, default=64, help="|S|: observed pixels")
    p.add_argument("--fractions", type=common.float_list, default=[0.02, 0.05, 0.1, 0.2],
                   help="step_fraction values compared with the exact mode (0)")
    p.add_argument("--batch", type=int, default=16, help="num_samples of the batched calls (<= 1: skip them)")
    p.add_argument("--autoregressive", type=int, default=2048, help="positions drawn autoregressively")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per fast mode and batch")
    p.add_argument("--exact-repeats", type=int, default=1, help="timed calls of the exact mode per batch")
    p.add_argument("--exact-batch", action="store_true",
                   help="also time the exact mode at --batch (slow on a CPU: 720 passes over 16 sets)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: --autoregressive <= 100, --batch <= 4, one call each")
    args = p.parse_args(argv)
    if args.quick:
        args.autoregressive, args.batch = min(args.autoregressive, 100), min(args.batch, 4)
        args.repeats = args.exact_repeats = 1
    return args


def sample_task(model_path: Path, threads: int, s: Set, num_samples: int, seed: int, autoregressive: int,
                step_fraction: float, device: str = "cpu") -> Measured:
    """One sample_images call in this (fresh) process: seconds and peak RSS growth."""
    model = common.load_model(model_path, threads, device=device)
    model.mean_image(*s)  # first-run initialisation of both sessions stays out of the measurement
    return common.peak_growth(lambda: model.sample_images(*s, num_samples=num_samples, seed=seed,
                                                          autoregressive=autoregressive, step_fraction=step_fraction))


def passes(k: int, n_free: int, autoregressive: int, f: float) -> list[tuple[int, int]]:
    """(set size, queries) of every encoder pass of one sample_images call, the final mean pass included."""
    from pt_plugin.sampling import step_sizes

    n_ar = min(autoregressive, n_free)
    out, size = [], k
    for m in step_sizes(k, n_ar, f):
        out.append((size, m))
        size += m
    return out + ([(size, n_free - n_ar)] if n_ar < n_free else [])


def encoder_passes(k: int, n_free: int, autoregressive: int, f: float) -> int:
    return len(passes(k, n_free, autoregressive, f))


def pass_flops(arch: dict, k: int, m: int) -> float:
    """Approximate FLOPs of one encoder pass over k samples and one decoder call for m queries (batch 1)."""
    return common.encoder_flops(arch, k) + common.decoder_flops(arch, k, m)


def call_flops(arch: dict, k: int, n_free: int, autoregressive: int, f: float, batch: int) -> float:
    """FLOPs of one sample_images call: every scheduled pass (and the mean pass), times the batch."""
    return batch * sum(pass_flops(arch, size, m) for size, m in passes(k, n_free, autoregressive, f))


def mode_name(f: float) -> str:
    return "exact" if f == 0 else f"f={f:g}"


def run(args: argparse.Namespace, s: Set) -> dict[tuple[float, int], list[Measured]]:
    """Interleaved fresh-process calls of every (mode, batch); Measured per call."""
    modes = [0.0] + [f for f in args.fractions if f != 0]
    batches = [1] + ([args.batch] if args.batch > 1 else [])
    keys = [(f, b) for f in modes for b in batches if f != 0 or b == 1 or args.exact_batch]
    variants = {k: (lambda k=k: common.isolated(sample_task, args.model_path, args.threads, s, k[1], args.seed,
                                                args.autoregressive, k[0], args.device)) for k in keys}
    repeats = {k: args.exact_repeats if k[0] == 0 else args.repeats for k in keys}
    named = common.interleave({f"{mode_name(f)} batch={b}": v for (f, b), v in variants.items()},
                              {f"{mode_name(f)} batch={b}": n for (f, b), n in repeats.items()}, progress=True)
    return dict(zip(keys, named.values()))


def rows_of(results: dict[tuple[float, int], list[Measured]], k: int, n_free: int, autoregressive: int,
            arch: dict) -> list[dict]:
    rows = []
    for (f, b), ms in results.items():
        sec = common.median([m.seconds for m in ms])
        flops = call_flops(arch, k, n_free, autoregressive, f, b)
        rows.append({"mode": mode_name(f), "step_fraction": f, "batch": b, "gflop": flops / 1e9,
                     "gflop_per_s": flops / 1e9 / sec,
                     "passes": encoder_passes(k, n_free, autoregressive, f), "seconds": [m.seconds for m in ms],
                     "peak_mib": [m.peak_mib for m in ms], "s_per_image": sec / b, "samples_per_s": b / sec,
                     "median_peak_mib": common.median([m.peak_mib for m in ms])})
    per_image = {(r["step_fraction"], r["batch"]): r["s_per_image"] for r in rows}
    for r in rows:
        f, b = r["step_fraction"], r["batch"]
        r["speedup_vs_exact"] = per_image.get((0.0, b), per_image[(0.0, 1)]) / r["s_per_image"]
        r["batch_gain"] = per_image[(f, 1)] / r["s_per_image"]
    return rows


def render(rows: list[dict]) -> str:
    headers = ["mode", "batch", "passes", "s/image", "speed-up vs exact", "samples/s", "batch gain", "GFLOP/s",
               "peak MiB"]
    body = [[r["mode"], r["batch"], r["passes"], fmt(r["s_per_image"]), fmt(r["speedup_vs_exact"]),
             fmt(r["samples_per_s"]), fmt(r["batch_gain"]), fmt(r["gflop_per_s"]), fmt(r["median_peak_mib"])]
            for r in sorted(rows, key=lambda r: (r["batch"], r["step_fraction"]))]
    return common.table(headers, body)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    machine = common.machine_line(args.threads)
    image = common.test_images(1, args.data_dir, start=args.image)
    s = common.observed_sets(image, args.observed, args.seed)[0]
    h, w = image.shape[1:3]
    n_free = int(common.free_pixels(s[0], h, w).sum())
    arch = json.loads((args.model_path / "model.json").read_text())["architecture"]
    rows = rows_of(run(args, s), len(s[0]), n_free, args.autoregressive, arch)
    peak = common.matmul_gflops()
    print(f"# Sampling one {h}x{w} image from |S|={len(s[0])} (test image {args.image}): exact vs step_fraction\n")
    print(f"{machine}; model {args.model_path}; {min(args.autoregressive, n_free)} of {n_free} free pixels "
          f"drawn autoregressively; medians of {args.repeats} calls ({args.exact_repeats} for exact), "
          f"each in a fresh process, interleaved; a numpy float32 1024x1024 matrix product runs at {peak:.0f} "
          "GFLOP/s here\n")
    print(render(rows))
    common.save_json(args.json, {"benchmark": "sampling", "machine": machine, "args": vars(args),
                                 "free_pixels": n_free, "matmul_gflop_per_s": peak, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
