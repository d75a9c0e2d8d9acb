"""Cached exact sampling (issue 32) against re-encoding, side by side in one run.

Setup: the bundled export (--model) with its cache graphs and default buffer_size; a model that does not ship
them is copied and gets them from its checkpoint (`python -m export.onnx.cache_graphs
weights/checkpoints/NAME.pt --into COPY`, no buffer bound). What the draws are worth is
benchmarks/sampling_quality.py's job.

What runs, on the model's training grid observed at --observed random cells of its demo signal:
  mean:            Model.mean_grid (one encoder pass, the grid decoded)
  cached exact:    sample_grid(cache=True): every free cell drawn one at a time over cached keys/values
  ... int8:        the same over the int8 cache graphs (--int8; export.quantize.cache_int8)
  ... scale fused: the same with step.onnx's sessions as before (--scale-fused): onnxruntime fuses the
                   attention scale into the one-row score products (pt_plugin.sessions)
  ... buffer N:    the same with buffer_size N instead of the model's default (--buffers)
  re-encode f=F:   sample_grid(cache=False, step_fraction=F, every cell drawn): today's default path
  re-encode exact: sample_grid(cache=False, step_fraction=0): the paper's algorithm (--exact; slow)
each with num_samples 1 and, where --batch is given, num_samples=B in one call. Every call runs in a
fresh process (model loaded and warmed first); calls are interleaved, --repeats each; medians.
Columns: s/signal = seconds per call / samples per call; x mean = s/signal over the mean's seconds;
vs cached = this mode's s/signal over cached exact's at the same batch; peak MiB = growth of the peak RSS.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import common

ROOT = Path(__file__).resolve().parents[1]


def with_cache_graphs(name: str, folder: Path, int8: bool = False) -> Path:
    """weights/NAME when it ships the cache graphs (and, with int8, their int8 copies), else a copy of it in
    `folder` with what is missing made: context.onnx and step.onnx from its checkpoint (which makes the int8 copies
    too where the model has an int8 variant), or only the int8 copies (export.quantize.cache_int8)."""
    from export.checkpoint import load_checkpoint
    from export.onnx.cache_graphs import add_to_folder
    from export.quantize.cache_int8 import add_int8_cache

    shipped = ROOT / "weights" / name
    if (shipped / "step.onnx").is_file() and (not int8 or (shipped / "step.int8.onnx").is_file()):
        return shipped
    out = folder / name
    shutil.copytree(shipped, out)
    if not (out / "step.onnx").is_file():
        model, _ = load_checkpoint(ROOT / "weights" / "checkpoints" / f"{name}.pt")
        add_to_folder(model, out)
    if int8 and not (out / "step.int8.onnx").is_file() and not add_int8_cache(out, force=True):
        raise SystemExit(f"{name}: the int8 cache graphs missed the parity gate; nothing to time")
    return out


def one_call(folder: str, threads: int, observed: int, seed: int, mode: str, batch: int) -> common.Measured:
    """One timed call of `mode` in this (fresh) process."""
    precision = "int8" if mode.endswith(" int8") else "fp32"
    if mode.endswith("scale fused"):  # step.onnx's sessions as before: the attention scale fused into the product
        import pt_plugin.model

        pt_plugin.model.ONE_QUERY_DISABLED_OPTIMIZERS = ()
        mode = "cached exact"
    buffer = {}
    if mode.startswith("cached exact, buffer "):  # another bound than the model's default
        buffer, mode = {"buffer_size": int(mode.rsplit(" ", 1)[1])}, "cached exact"
    model = common.load_model(Path(folder), threads, precision)
    shape = tuple(model.grid)
    pos, val = common.demo_observation(model, shape, observed, seed)
    model.mean_grid(pos, val, shape)  # warm up
    if mode == "mean":
        return common.peak_growth(lambda: model.mean_grid(pos, val, shape))
    cache, fraction = {"cached exact": (True, 0.0), "cached exact int8": (True, 0.0),
                       "re-encode exact": (False, 0.0)}.get(mode, (False, None))
    if fraction is None:  # "re-encode f=F"
        fraction = float(mode.split("=")[1])
    return common.peak_growth(lambda: model.sample_grid(pos, val, shape, batch, seed, cache=cache,
                                                        step_fraction=fraction, autoregressive=2**62, **buffer))


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__)
    p.add_argument("--model", default="fashion-mnist", help="a bundled model with a checkpoint in weights/checkpoints")
    p.add_argument("--observed", type=int, default=64)
    p.add_argument("--batch", type=int, default=16, help="samples per call of the batched runs (0: none)")
    p.add_argument("--fraction", type=float, default=0.1, help="step_fraction of the re-encoding sampler")
    p.add_argument("--exact", action="store_true", help="also time the exact re-encoding sampler (batch 1)")
    p.add_argument("--int8", action="store_true",
                   help="also time cached exact sampling over the int8 cache graphs (made in a copy when not shipped)")
    p.add_argument("--scale-fused", action="store_true",
                   help="also time cached exact with step.onnx's sessions as before pt_plugin.sessions."
                        "ONE_QUERY_DISABLED_OPTIMIZERS (the attention scale fused into the score product)")
    p.add_argument("--buffers", type=common.int_list, default=[],
                   help="also time cached exact with these buffer_size values (comma-separated)")
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = str(with_cache_graphs(a.model, Path(tmp), a.int8))
        cached = (["cached exact"] + (["cached exact int8"] if a.int8 else [])
                  + (["cached exact, scale fused"] if a.scale_fused else [])
                  + [f"cached exact, buffer {n}" for n in a.buffers])
        modes = [("mean", 1), *((m, 1) for m in cached), (f"re-encode f={a.fraction:g}", 1)]
        if a.batch:
            modes += [*((m, a.batch) for m in cached), (f"re-encode f={a.fraction:g}", a.batch)]
        if a.exact:
            modes.append(("re-encode exact", 1))
        calls = {f"{m} x{b}": (lambda m=m, b=b: common.isolated(one_call, folder, a.threads, a.observed, a.seed, m, b))
                 for m, b in modes}
        results = common.interleave(calls, {k: (1 if "re-encode exact" in k else a.repeats) for k in calls},
                                    progress=True)
    seconds = {k: common.median([r.seconds for r in v]) for k, v in results.items()}
    peaks = {k: max(r.peak_mib for r in v) for k, v in results.items()}
    mean_s = seconds["mean x1"]
    rows = []
    for (m, b), key in zip(modes, calls):
        per = seconds[key] / b
        cached = seconds.get(f"cached exact x{b}")
        rows.append([m, str(b), common.fmt(per, 3), common.fmt(per / mean_s, 1),
                     common.fmt(per / (cached / b), 2) if cached and m != "mean" else "–", common.fmt(peaks[key], 0)])
    print(common.machine_line(a.threads))
    print(f"{a.model}: grid {common.load_model(Path(ROOT / 'weights' / a.model), 1).grid}, |S| = {a.observed}, "
          f"medians of {a.repeats} calls (fresh processes, interleaved)\n")
    print(common.table(["mode", "samples/call", "s/signal", "x mean", "vs cached", "peak MiB"], rows))
    common.save_json(a.json, {"model": a.model, "observed": a.observed, "seconds": seconds, "peak_mib": peaks,
                              "threads": a.threads})
    return 0


if __name__ == "__main__":
    sys.exit(main())
