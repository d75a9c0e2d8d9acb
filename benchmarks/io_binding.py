"""IOBinding against plain numpy I/O: the same model and calls, the encoder memory kept where it runs.

What runs, on --device (cpu or cuda), with two models loaded from the same graphs, one with
io_binding=False (every output comes back to numpy and goes in again) and one with io_binding=True
(the encoder's memory stays an OrtValue on the device and is bound straight into the decoder):
  mean:    Model.mean of all 784 pixel centres given a batch of --batch sets of |S| = --observed
           observed test pixels (encode_batch, then the batched query).
  sample:  Model.sample_images of one test image from |S| = --observed, step_fraction
           --step-fraction, num_samples 1 and --batch (every pass re-encodes the grown sets).
Calls alternate between the two models in rotating order after one warm-up each (common.interleave);
the table gives medians in ms. plain/bound > 1 means IOBinding is faster. "max abs diff" is the
largest difference of the two outputs (the same seed gives the same draws).
On the CPU, IOBinding only removes numpy round trips of the memory; on CUDA it also removes the
device-to-host and host-to-device copies of it at every step, which is what it is for.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

import common
from common import fmt
from pt_plugin import grid_positions


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = common.parser(__doc__)
    p.add_argument("--observed", type=int, default=64, help="|S|: observed pixels per set")
    p.add_argument("--batch", type=int, default=16, help="sets for the mean, samples for the batched sampling")
    p.add_argument("--step-fraction", type=float, default=0.05, help="sampling schedule (0 = exact, slow)")
    p.add_argument("--repeats", type=int, default=7, help="timed calls per variant (median reported)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    machine = common.machine_line(args.threads)
    images = common.test_images(args.batch, args.data_dir)
    sets = common.observed_sets(images, args.observed, args.seed)
    grid = grid_positions(28, 28)
    models = {name: common.load_model(args.model_path, args.threads, device=args.device, io_binding=flag)
              for name, flag in (("plain", False), ("bound", True))}
    work = {
        f"mean, {args.batch} sets": lambda m: m.mean(m.encode_batch(sets), grid),
        "sample, 1 image": lambda m: m.sample_images(*sets[0], num_samples=1, seed=args.seed,
                                                     step_fraction=args.step_fraction),
        f"sample, {args.batch} images": lambda m: m.sample_images(*sets[0], num_samples=args.batch, seed=args.seed,
                                                                  step_fraction=args.step_fraction),
    }
    rows = []
    for name, fn in work.items():
        common.log(f"{name}: timing")
        diff = float(np.abs(fn(models["plain"]) - fn(models["bound"])).max())
        times = common.interleave({k: common.timer(lambda m=m, fn=fn: fn(m)) for k, m in models.items()},
                                  args.repeats, warmup=1)
        plain, bound = common.median(times["plain"]) * 1e3, common.median(times["bound"]) * 1e3
        rows.append({"work": name, "plain_ms": plain, "bound_ms": bound, "plain_over_bound": plain / bound,
                     "max_abs_diff": diff, "plain_s": times["plain"], "bound_s": times["bound"]})
    providers = ", ".join(models["bound"].info.providers)
    print(f"# IOBinding vs plain numpy I/O on {args.device} ({providers})\n")
    print(f"{machine}; model {args.model_path}; |S|={args.observed}; step_fraction {args.step_fraction}; "
          f"median of {args.repeats} interleaved calls after 1 warm-up\n")
    print(common.table(["work", "plain ms", "io-binding ms", "plain/io-binding", "max abs diff"],
                       [[r["work"], fmt(r["plain_ms"]), fmt(r["bound_ms"]), fmt(r["plain_over_bound"]),
                         fmt(r["max_abs_diff"], 2)] for r in rows]))
    common.save_json(args.json, {"benchmark": "io_binding", "machine": machine, "providers": providers,
                                 "args": vars(args), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
