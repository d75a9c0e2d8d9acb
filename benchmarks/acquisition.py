"""Acquisition speed: acquiring k positions against one mean pass of the same image (issue 30's target: k = 16 on
a 28x28 model at most 8 mean passes).

What runs, per Fashion-MNIST test image (--images of them from --image on; |S| = --observed random pixels):
  mean pass:      model.mean_grid(pos, val), the whole 28x28 mean given S (one encode, one 784-query decode).
  <criterion>:    pt_plugin.acquisition.acquire(model, pos, val, k=--k, criterion=...), lazy greedy (the default).
  <c>, lazy=False: the reference loop: every candidate scored again after every pick (one encode and one
                  query pass over all ~768 candidates per pick).
All variants of one image are timed in one process, interleaved in rotating order (common.interleave),
--repeats times each after one warm-up; the table gives per-image medians, then the median over images of
the ratio acquire time / mean-pass time (each image's ratio from its own medians), and
how many of the lazy picks are the reference loop's picks (same position at the same step).
"""
from __future__ import annotations

import sys

import numpy as np

import common
from common import fmt

VARIANTS = ("variance", "entropy", "improvement")


def parse_args(argv):
    p = common.parser(__doc__)
    p.add_argument("--image", type=int, default=0, help="first test image index")
    p.add_argument("--images", type=int, default=4, help="test images")
    p.add_argument("--observed", type=int, default=16, help="|S|: observed random pixels")
    p.add_argument("-k", type=int, default=16, help="positions acquired per call")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per variant and image")
    p.add_argument("--criteria", default=",".join(VARIANTS), help="criteria to time, comma-separated")
    return p.parse_args(argv)


def variants(model, s, k: int, criteria) -> dict:
    """name -> a call to time (each returns its Acquisition, or the mean image for the mean pass)."""
    from pt_plugin.acquisition import acquire

    out = {"mean pass": lambda: model.mean_grid(*s)}
    for c in criteria:
        out[c] = lambda c=c: acquire(model, *s, k=k, criterion=c)
        out[f"{c}, lazy=False"] = lambda c=c: acquire(model, *s, k=k, criterion=c, lazy=False)
    return out


def measure(model, s, args, criteria) -> tuple[dict, dict]:
    """Median seconds per variant for one image, and the lazy picks that agree with the reference loop."""
    calls = variants(model, s, args.k, criteria)
    times = common.interleave({n: common.timer(f) for n, f in calls.items()}, args.repeats, warmup=1)
    agree = {c: float(np.mean(calls[c]().indices == calls[f"{c}, lazy=False"]().indices)) for c in criteria}
    return {n: common.median(t) for n, t in times.items()}, agree


def main(argv=None) -> int:
    args = parse_args(argv)
    criteria = [c for c in args.criteria.split(",") if c]
    model = common.load_model(args.model_path, args.threads, device=args.device)
    images = common.test_images(args.images, args.data_dir, start=args.image)
    sets = common.observed_sets(images, args.observed, args.seed)
    per_image = []
    for i, s in enumerate(sets):
        secs, agree = measure(model, s, args, criteria)
        per_image.append({"image": args.image + i, "seconds": secs, "agree": agree})
        common.log(f"image {args.image + i}: " + ", ".join(f"{n} {t * 1e3:.1f} ms" for n, t in secs.items()))
    rows = []
    for name in per_image[0]["seconds"]:
        ratios = [r["seconds"][name] / r["seconds"]["mean pass"] for r in per_image]
        agree = [r["agree"][name] for r in per_image] if name in criteria else None
        rows.append([name, fmt(common.median([r["seconds"][name] * 1e3 for r in per_image])),
                     fmt(common.median(ratios)), f"{fmt(min(ratios))}–{fmt(max(ratios))}",
                     "-" if agree is None else f"{np.mean(agree) * 100:.0f} %"])
    print(f"# Acquiring k={args.k} on {args.model_path.name} from |S|={args.observed}, against one mean pass\n")
    print(f"{common.machine_line(args.threads)}; {args.images} test images from {args.image}; medians of "
          f"{args.repeats} interleaved calls per image\n")
    print(common.table(["variant", "ms (median over images)", "× mean pass (median)", "× mean pass (range)",
                        "picks = lazy=False picks"], rows))
    common.save_json(args.json, {"benchmark": "acquisition", "machine": common.machine_line(args.threads),
                                 "args": vars(args), "images": per_image, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
