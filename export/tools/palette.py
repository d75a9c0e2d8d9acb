"""How well a colour palette fits held-out pixels: `python -m export.tools.palette --data SPEC --test SPEC --k 256,512`.

Prints, for each palette size k, the quantization error of the test pixels and the fit time
(export.datasets.palette fits the palette; export.train does so with `--palette K`).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from export.datasets.images import load_dataset
from export.datasets.palette import fit_palette, quantization_stats
from export.errors import int_list, reports_errors


@reports_errors
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.tools.palette", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="training images, e.g. folder:/work/data/emoji/train")
    p.add_argument("--test", required=True, help="held-out images, e.g. folder:/work/data/emoji/test")
    p.add_argument("--k", default="256,512", help="comma-separated palette sizes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-pixels", type=int, default=200_000)
    args = p.parse_args(argv)
    train, test = load_dataset(args.data, ""), load_dataset(args.test, "")
    print(f"train {train.shape}, test {test.shape}; tolerance 2/255 per channel")
    for k in int_list(args.k, "--k"):
        t0 = time.time()
        centres = fit_palette(train, k, args.seed, args.max_pixels)
        sec = time.time() - t0
        s = quantization_stats(test, centres)
        print(f"k={k}: test MSE {s['mse']:.3e} (RMSE {np.sqrt(s['mse']) * 255:.2f}/255), "
              f"within 2/255 {100 * s['within']:.1f}%, fit {sec:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
