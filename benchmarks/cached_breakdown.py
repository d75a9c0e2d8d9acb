"""Where a cached exact sample's time goes, and what drawing one value costs it (issue 32).

The cached sampler draws every free position one at a time: per position one step.onnx call and one
`pt_plugin.distribution.draw_mixture`, and every cache.buffer_size positions one context.onnx call that encodes S
and the drawn values again. This times:
- the whole cached exact sample of the model's demo signal from --observed cells (`sample_grid`, every free cell
  drawn), one sample per call and --batch per call, split into its context.onnx calls, its step.onnx calls (the
  session's run, as pt_plugin's Graph.run calls it) and the rest (draws, cache writes, Python), per sample, over
  --repeats calls;
and, interleaved in one run:
- the draw alone, on one query's law of the model (its bins and value channels), per call: pt_plugin's
  draw_mixture against the textbook draw it replaced (normalise the log-probabilities, temper and
  normalise again, inverse CDF, take_along_axis), which takes the same random numbers;
- the whole cached exact sample of the model's demo signal from --observed cells (`sample_grid`, every free
  cell drawn, one sample), with each draw in the sampler.
Both draws give the same values (checked here on the sampled signal).
"""
from __future__ import annotations

import time

import numpy as np

import common


def textbook_draw(logits, offsets, log_sigma, centers, rng, temperature):
    """The draw as pt_plugin made it until 2026-12-05: log-softmax, tempered log-softmax, inverse CDF."""
    from pt_plugin.distribution import _logsumexp

    logits = np.asarray(logits, np.float64)
    log_probs = logits - _logsumexp(logits)[..., None]
    with np.errstate(over="ignore"):
        logq = (log_probs - log_probs.max(-1, keepdims=True)) / temperature
    cum = np.cumsum(np.exp(logq - _logsumexp(logq)[..., None]), -1)
    u = rng.random(logits.shape[:-1] + (1,))
    b = np.minimum((u > cum).sum(-1), cum.shape[-1] - 1)[..., None]
    mu = np.asarray(centers, np.float64)[b[..., 0]] + np.take_along_axis(np.asarray(offsets, np.float64),
                                                                         b[..., None], -2)[..., 0, :]
    sigma = np.exp(np.take_along_axis(np.asarray(log_sigma, np.float64), b, -1))
    with np.errstate(over="ignore"):
        return mu + temperature * sigma * rng.standard_normal(mu.shape)


def breakdown(model, pos, val, shape, seed: int, repeats: int, samples: int = 1) -> dict:
    """Seconds per sample in context.onnx, in step.onnx and elsewhere, and the graph calls per call, over
    `repeats` calls of `samples` cached exact samples each (after one warm-up)."""
    from pt_plugin.sampling import ALL_POSITIONS

    spent, calls = {"context.onnx": 0.0, "step.onnx": 0.0}, {"context.onnx": 0, "step.onnx": 0}
    graphs = {"context.onnx": model.context_graph, "step.onnx": model.step_graph}

    def timed(name, run):
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return run(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - t
                calls[name] += 1
        return wrapper

    def sample(s: int):
        return model.sample_grid(pos, val, shape, samples, s, cache=True, step_fraction=0.0,
                                 autoregressive=ALL_POSITIONS)

    sample(seed)
    originals = {name: g.run for name, g in graphs.items()}
    for name, g in graphs.items():
        g.run = timed(name, g.run)
    try:
        t = time.perf_counter()
        for s in range(repeats):
            sample(seed + 1 + s)
        total = (time.perf_counter() - t) / repeats / samples
    finally:
        for name, g in graphs.items():
            g.run = originals[name]
    seconds = {k: v / repeats / samples for k, v in spent.items()}
    seconds["draws, cache writes, Python"] = total - sum(seconds.values())
    return {"samples_per_call": samples, "total": total, "seconds": seconds,
            "calls": {k: v / repeats for k, v in calls.items()}}


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--observed", type=int, default=64, help="observed cells of the demo signal")
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds (medians reported)")
    p.add_argument("--calls", type=int, default=2000, help="draws per timing of the draw alone")
    p.add_argument("--batch", type=int, default=16, help="also split calls of this many samples (0: only 1)")
    a = p.parse_args()

    import pt_plugin.cached_sampling as cached
    from pt_plugin.distribution import draw_mixture
    from pt_plugin.sampling import ALL_POSITIONS

    model = common.load_model(a.model_path, a.threads)
    shape = tuple(model.grid)
    pos, val = common.demo_observation(model, shape, a.observed, a.seed)
    free = int(np.prod(shape)) - len(pos)
    bins, vd = model.centers.shape
    rng = np.random.default_rng(a.seed)
    law = (rng.standard_normal((1, 1, bins)).astype(np.float32),
           (0.01 * rng.standard_normal((1, 1, bins, vd))).astype(np.float32),
           (rng.standard_normal((1, 1, bins)) - 3).astype(np.float32))
    draws = {"pt_plugin draw_mixture": draw_mixture, "textbook draw (before)": textbook_draw}

    def one_draw(fn):
        g = np.random.default_rng(0)
        return lambda: common.timer(lambda: [fn(*law, model.centers, g, 1.0) for _ in range(a.calls)])() / a.calls

    def whole(fn):
        def run() -> float:
            cached.draw_mixture = fn  # the name the cached sampler calls
            try:
                return common.timer(lambda: model.sample_grid(pos, val, shape, 1, a.seed, cache=True,
                                                              step_fraction=0.0, autoregressive=ALL_POSITIONS))()
            finally:
                cached.draw_mixture = draw_mixture
        return run

    splits = [breakdown(model, pos, val, shape, a.seed, a.repeats, b) for b in sorted({1, a.batch} - {0})]
    same = []
    for fn in draws.values():
        cached.draw_mixture = fn
        same.append(model.sample_grid(pos, val, shape, 1, a.seed, cache=True, step_fraction=0.0,
                                      autoregressive=ALL_POSITIONS))
    cached.draw_mixture = draw_mixture
    variants = {**{f"draw|{n}": one_draw(f) for n, f in draws.items()}, **{f"whole|{n}": whole(f)
                                                                          for n, f in draws.items()}}
    res = {k: common.median(v) for k, v in common.interleave(variants, a.repeats, warmup=1).items()}
    base = {"draw": res["draw|textbook draw (before)"], "whole": res["whole|textbook draw (before)"]}
    draw_rows = []
    for key, secs in res.items():
        part, name = key.split("|")
        unit = secs * 1e6 if part == "draw" else secs / free * 1e3
        draw_rows.append([("one draw, µs" if part == "draw" else "cached exact sample, ms per drawn position"), name,
                          common.fmt(unit, 3), common.fmt(base[part] / secs, 3)])
    print(common.machine_line(a.threads))
    print(f"model {a.model_path.name}: {bins} bins × {vd} value channels; {free} positions drawn from "
          f"|S| = {a.observed}")
    print(f"the two draws give the same sample: {bool(np.array_equal(same[0], same[1]))}")
    rows = []
    for split in splits:
        b, total = split["samples_per_call"], split["total"]
        rows += [[str(b), k, common.fmt(split["calls"].get(k), 4), common.fmt(v, 3), f"{v / total:.0%}"]
                 for k, v in split["seconds"].items()] + [[str(b), "all", "", common.fmt(total, 3), "100%"]]
    print(common.table(["samples per call", "part of a cached exact sample", "graph calls per call",
                        "seconds per sample", "share"], rows))
    print(common.table(["what", "draw", "time", "speed-up over the textbook draw"], draw_rows))
    common.save_json(a.json, {"settings": vars(a), "seconds": res, "free": free, "breakdown": splits, "same_sample":
                              bool(np.array_equal(same[0], same[1]))})


if __name__ == "__main__":
    main()
