"""Sampling cost on a model's own grid, for any kind of signal: seconds per signal and encoder passes.

What runs: Model.sample_grid on the model's training grid (or --shape) from |S| = --observed random
cells of one signal drawn from the model's demo (demo.npz) or, without one, uniform values, for each
(N' = --autoregressive, step_fraction = --fractions) setting; --samples signals per call, in one
batch. Calls of all settings are interleaved (common.interleave), --repeats each, medians reported.
Columns: passes = encoder passes (pt_plugin.sampling.step_sizes, + 1 mean pass when N' leaves cells);
s/signal = seconds per call / samples per call; ratio = s/signal against the first setting.
Written for the 8,192-cell clips of a video model (issue 15), where the exact sampler over every
cell is out of reach: it shows what the defaults (N' 2048, step_fraction 0.1) cost.
"""
from __future__ import annotations

import sys

import numpy as np

import common
from common import fmt


def main(argv=None) -> int:
    from pt_plugin.sampling import step_sizes

    p = common.parser(__doc__)
    p.add_argument("--shape", type=common.int_list, default=None, help="grid, e.g. 8,32,32 (default: the model's)")
    p.add_argument("--observed", type=int, default=256)
    p.add_argument("--autoregressive", type=common.int_list, default=[2048])
    p.add_argument("--fractions", type=common.float_list, default=[0.1, 0.2])
    p.add_argument("--samples", type=int, default=3, help="signals per call (one batch)")
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)
    model = common.load_model(a.model_path, a.threads, device=a.device)
    shape = tuple(a.shape) if a.shape else model.grid_shape(None)
    pos, val = common.demo_observation(model, shape, a.observed, a.seed)
    free = int(np.prod(shape)) - a.observed
    settings = [(n, f) for n in a.autoregressive for f in a.fractions]
    calls = {f"N'={n} f={f}": common.timer(lambda n=n, f=f: model.sample_grid(
        pos, val, shape, a.samples, seed=0, autoregressive=n, step_fraction=f)) for n, f in settings}
    common.log(f"{model.meta['name']}: grid {shape}, |S| = {a.observed}, {free} free cells, {a.samples} per call")
    times = common.interleave(calls, a.repeats, warmup=1)
    rows, first, out = [], None, {}
    for (n, f), name in zip(settings, calls):
        per = common.median(times[name]) / a.samples
        first = first or per
        passes = len(step_sizes(a.observed, min(n, free), f)) + (1 if n < free else 0)
        rows.append([str(n), fmt(f, 2), str(passes), fmt(per, 2), fmt(per / first, 2)])
        out[name] = {"autoregressive": n, "step_fraction": f, "passes": passes, "seconds_per_signal": per,
                     "times": times[name]}
    print(f"# Sampling cost on the grid of {model.meta['name']}\n\n{common.machine_line(a.threads)}; grid "
          f"{'x'.join(map(str, shape))}, |S| = {a.observed}, {a.samples} signals per call, median of {a.repeats}.\n")
    print(common.table(["N'", "step_fraction", "passes", "s / signal", "ratio"], rows))
    common.save_json(a.json, {"model": model.meta["name"], "shape": shape, "observed": a.observed,
                              "samples": a.samples, "settings": out})
    return 0


if __name__ == "__main__":
    sys.exit(main())
