"""Mean-image inference: pt-plugin's onnxruntime path against torch eager, same weights, same threads.

What runs: for a sample set S of |S| = 16, 256, 2048 samples (Fashion-MNIST test images observed at
random pixels; for |S| larger than the 784 pixels, random continuous positions with random values
in [0, 1], a pure speed test) the mean value at all 784 pixel centres, for 1 set and for a batch
of 16 sets.
  ort:   Model.mean((pos, val), grid) for one set; Model.mean(Model.encode_batch(sets), grid) for a
         batch. Includes pt-plugin's input checks and the float64 numpy mixture mean.
  torch: the checkpoint's PixelTransformer under torch.no_grad(): model(spos, sval, mask, qpos).mean()
         on tensors made from the same numpy arrays (torch.from_numpy, no copy).
Both use --threads intra-op threads (torch.set_num_threads; onnxruntime intra_op_num_threads).

Timing: after warm-up calls, ort and torch alternate (rotating order, 50 ms apart so one's
spinning worker threads do not steal the cores of the other) for --repeats rounds; the
table gives medians in ms. torch/ort > 1 means the onnxruntime path is faster. "max abs diff" is
the largest |ort - torch| difference of the two means (a check that both run the same weights).

Peak memory (MiB): growth of the peak RSS during one call in a freshly spawned process that has
already loaded the model and built its inputs (common.peak_growth; first call, so it includes
onnxruntime's arena / torch's allocations for that shape).

Bounded-memory check (second table): peak RSS growth of one Model.mean call for 1e4, 1e5, 1e6
random query positions with the default chunk, next to the same queries answered chunk by chunk
(Model.mean on DEFAULT_CHUNK-query slices, means concatenated). If Model.mean keeps memory
bounded, its column stays flat as the queries grow; "result MiB" is the size of the returned
means, the least any implementation must hold. 1e6 queries may need several GiB.

Precisions (third table, with --precisions fp32,int8[,fp16]): the same ort mean computation with the
graphs of each precision (`python -m export.quantize MODEL_PATH` makes them), interleaved like the
first table, medians in ms; "time / fp32" < 1 means faster than fp32; an entry PRECISION@FOLDER takes that
precision's graphs from another export folder (e.g. int8@weights/fashion-mnist next to a re-quantized copy);
"max abs diff" is the largest
|mean - fp32 mean| over the grid (784 pixels) of all sets. fp16 is for GPUs: on the CPU provider it is slow.
With --precisions-only any kind of model works: the queries are its own grid (a 32x32 image, a 32^3
volume, an 8x32x32 clip) and the sets are random cells of its demo signal (Fashion-MNIST test images for
a model trained on them; random positions and values when |S| exceeds the grid).
"""
from __future__ import annotations

import argparse
import functools
import math
import sys
from pathlib import Path
from typing import Callable

import numpy as np

import common
from common import Measured, fmt

Set = tuple[np.ndarray, np.ndarray]
PAUSE = 0.05  # s between calls: spinning worker threads of the previous variant go idle


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = common.parser(__doc__, checkpoint=True)
    p.add_argument("--sizes", type=common.int_list, default=[16, 256, 2048], help="|S| values")
    p.add_argument("--batches", type=common.int_list, default=[1, 16], help="sets per call")
    p.add_argument("--repeats", type=int, default=9, help="timed calls per variant (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls per variant first")
    p.add_argument("--bounded-queries", type=common.int_list, default=[10_000, 100_000, 1_000_000],
                   help="query counts for the bounded-memory check ('' skips it)")
    p.add_argument("--bounded-set", type=int, default=64, help="|S| for the bounded-memory check")
    p.add_argument("--no-memory", action="store_true", help="skip all peak-memory measurements")
    p.add_argument("--precisions-only", action="store_true", help="only the precisions table (no torch, no memory)")
    p.add_argument("--precisions", type=lambda t: [x.strip() for x in t.split(",") if x.strip()], default=[],
                   help="also time the ort path per precision, e.g. fp32,int8 (needs the graphs python -m "
                        "export.quantize makes); PRECISION@FOLDER takes them from another export folder")
    return p.parse_args(argv)


# -- inputs and the two implementations --------------------------------------------------------
def make_sets(images: np.ndarray, k: int, batch: int, seed: int) -> list[Set]:
    """`batch` sets of k samples: observed test-image pixels, or random ones when k > H*W."""
    h, w = images.shape[1:3]
    if k <= h * w:
        return common.observed_sets(images[:batch], k, seed)
    rng = np.random.default_rng(seed)
    return [(rng.uniform(-1, 1, (k, 2)).astype(np.float32), rng.uniform(0, 1, (k, 1)).astype(np.float32))
            for _ in range(batch)]


def set_maker(model, shape: tuple[int, ...], data_dir: Path, batch: int) -> Callable[[int, int, int], list[Set]]:
    """make_sets on Fashion-MNIST test images for a model trained on them; for any other model, k random
    cells of its demo signal (common.demo_observation; random positions and values when k > its cells)."""
    if model.meta.get("training", {}).get("data") == "fashion-mnist":
        images = common.test_images(batch, data_dir)
        return lambda k, b, seed: make_sets(images, k, b, seed)
    cells = math.prod(shape)

    def demo_sets(k: int, b: int, seed: int) -> list[Set]:
        if k <= cells:
            return [common.demo_observation(model, shape, k, seed + i) for i in range(b)]
        rng = np.random.default_rng(seed)
        return [(rng.uniform(-1, 1, (k, model.pos_dim)).astype(np.float32),
                 rng.uniform(*model.value_range, (k, model.val_dim)).astype(np.float32)) for _ in range(b)]
    return demo_sets


def load_torch(checkpoint: Path, threads: int):
    import torch

    from export.onnx.graphs import load_checkpoint

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)  # onnxruntime runs with inter_op_num_threads = 1
    except RuntimeError:  # already fixed in this process
        pass
    net, _ = load_checkpoint(checkpoint)
    return net


def ort_runner(model, sets: list[Set], grid: np.ndarray) -> Callable[[], np.ndarray]:
    """Model.mean for one set, or encode_batch + batched query for several."""
    if len(sets) == 1:
        return lambda: model.mean(sets[0], grid)
    return lambda: model.mean(model.encode_batch(sets), grid)


def torch_runner(net, sets: list[Set], grid: np.ndarray) -> Callable[[], np.ndarray]:
    """model(...).mean() on batched tensors; all sets have the same size, so the mask is all True."""
    import torch

    pos = torch.from_numpy(np.stack([p for p, _ in sets]))
    val = torch.from_numpy(np.stack([v for _, v in sets]))
    mask = torch.ones(pos.shape[:2], dtype=torch.bool)
    qpos = torch.from_numpy(grid).expand(len(sets), -1, -1)

    def run() -> np.ndarray:
        with torch.no_grad():
            return net(pos, val, mask, qpos).mean().numpy()
    return run


# -- measurements in fresh processes (module level, for spawn) ---------------------------------
def ort_peak(model_path: Path, threads: int, sets: list[Set], grid: np.ndarray, device: str = "cpu") -> float:
    model = common.load_model(model_path, threads, device=device)
    return common.peak_growth(ort_runner(model, sets, grid)).peak_mib


def torch_peak(checkpoint: Path, threads: int, sets: list[Set], grid: np.ndarray) -> float:
    net = load_torch(checkpoint, threads)
    return common.peak_growth(torch_runner(net, sets, grid)).peak_mib


def bounded_peak(model_path: Path, threads: int, s: Set, n_queries: int, per_chunk: bool, seed: int,
                 device: str = "cpu") -> Measured:
    """One Model.mean over n_queries random positions, whole or chunk by chunk."""
    from pt_plugin.model import DEFAULT_CHUNK

    model = common.load_model(model_path, threads, device=device)
    q = np.random.default_rng(seed).uniform(-1, 1, (n_queries, 2)).astype(np.float32)

    def whole() -> np.ndarray:
        return model.mean(s, q)

    def chunked() -> np.ndarray:
        ctx = model.encode(*s)
        return np.concatenate([model.mean(ctx, q[i:i + DEFAULT_CHUNK]) for i in range(0, n_queries, DEFAULT_CHUNK)])
    return common.peak_growth(chunked if per_chunk else whole)


# -- the two tables ----------------------------------------------------------------------------
def speed_rows(args: argparse.Namespace, model, net, images: np.ndarray, grid: np.ndarray) -> list[dict]:
    rows = []
    for k in args.sizes:
        for b in args.batches:
            sets = make_sets(images, k, b, args.seed)
            ort, tch = ort_runner(model, sets, grid), torch_runner(net, sets, grid)
            diff = float(np.abs(ort().reshape(-1) - tch().reshape(-1)).max())
            common.log(f"|S|={k} batch={b}: timing")
            times = common.interleave({"ort": common.timer(ort), "torch": common.timer(tch)},
                                      args.repeats, args.warmup, pause=PAUSE)
            row = {"set_size": k, "batch": b, "ort_s": times["ort"], "torch_s": times["torch"], "max_abs_diff": diff,
                   "ort_ms": 1e3 * common.median(times["ort"]), "torch_ms": 1e3 * common.median(times["torch"])}
            if not args.no_memory:
                common.log(f"|S|={k} batch={b}: peak memory")
                row["ort_peak_mib"] = common.isolated(ort_peak, args.model_path, args.threads, sets, grid, args.device)
                row["torch_peak_mib"] = common.isolated(torch_peak, args.checkpoint, args.threads, sets, grid)
            rows.append(row)
    return rows


def speed_table(rows: list[dict]) -> str:
    headers = ["set size", "batch", "ort ms", "torch ms", "torch/ort", "ort peak MiB", "torch peak MiB",
               "torch/ort mem", "max abs diff"]
    body = []
    for r in rows:
        mo, mt = r.get("ort_peak_mib"), r.get("torch_peak_mib")
        body.append([r["set_size"], r["batch"], fmt(r["ort_ms"]), fmt(r["torch_ms"]), fmt(r["torch_ms"] / r["ort_ms"]),
                     fmt(mo), fmt(mt), fmt(mt / mo if mo and mt is not None else None), fmt(r["max_abs_diff"], 2)])
    return common.table(headers, body)


def bounded_rows(args: argparse.Namespace, s: Set) -> list[dict]:
    rows = []
    for n in args.bounded_queries:
        common.log(f"bounded memory: {n} queries")
        whole = common.isolated(bounded_peak, args.model_path, args.threads, s, n, False, args.seed, args.device)
        chunked = common.isolated(bounded_peak, args.model_path, args.threads, s, n, True, args.seed, args.device)
        rows.append({"queries": n, "mean_peak_mib": whole.peak_mib, "mean_s": whole.seconds,
                     "per_chunk_peak_mib": chunked.peak_mib, "per_chunk_s": chunked.seconds,
                     "result_mib": n * 4 / 2**20})
    return rows


def bounded_table(rows: list[dict]) -> str:
    headers = ["queries", "Model.mean peak MiB", "per-chunk peak MiB", "Model.mean/per-chunk", "result MiB",
               "Model.mean s", "per-chunk s"]
    body = [[f"{r['queries']:.0e}".replace("e+0", "e"), fmt(r["mean_peak_mib"]), fmt(r["per_chunk_peak_mib"]),
             fmt(r["mean_peak_mib"] / r["per_chunk_peak_mib"] if r["per_chunk_peak_mib"] else None),
             fmt(r["result_mib"]), fmt(r["mean_s"]), fmt(r["per_chunk_s"])] for r in rows]
    return common.table(headers, body)


def load_precision(args: argparse.Namespace, spec: str):
    """The model for a --precisions entry: PRECISION from --model-path, or PRECISION@FOLDER from another export."""
    precision, _, folder = spec.partition("@")
    return common.load_model(Path(folder) if folder else args.model_path, args.threads, precision, args.device)


def precision_rows(args: argparse.Namespace, sets_of: Callable[[int, int, int], list[Set]],
                   grid: np.ndarray) -> list[dict]:
    names = list(dict.fromkeys(["fp32", *args.precisions]))
    models = {p: load_precision(args, p) for p in names}
    rows = []
    for k in args.sizes:
        for b in args.batches:
            sets = sets_of(k, b, args.seed)
            runners = {p: ort_runner(m, sets, grid) for p, m in models.items()}
            ref = runners["fp32"]().reshape(-1)
            diffs = {p: float(np.abs(r().reshape(-1) - ref).max()) for p, r in runners.items()}
            common.log(f"|S|={k} batch={b}: timing {', '.join(names)}")
            times = common.interleave({p: common.timer(r) for p, r in runners.items()}, args.repeats, args.warmup,
                                      pause=PAUSE)
            base = common.median(times["fp32"])
            rows += [{"set_size": k, "batch": b, "precision": p, "ort_s": times[p],
                      "ort_ms": 1e3 * common.median(times[p]), "ratio_to_fp32": common.median(times[p]) / base,
                      "max_abs_diff_vs_fp32": diffs[p]} for p in names]
    return rows


def precision_table(rows: list[dict]) -> str:
    headers = ["set size", "batch", "precision", "ort ms", "time / fp32", "max abs diff vs fp32"]
    return common.table(headers, [[r["set_size"], r["batch"], r["precision"], fmt(r["ort_ms"]), fmt(r["ratio_to_fp32"]),
                                   fmt(r["max_abs_diff_vs_fp32"], 2)] for r in rows])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import pt_plugin

    machine = common.machine_line(args.threads)
    model = common.load_model(args.model_path, args.threads, device=args.device)
    shape = model.grid_shape(None)
    grid = pt_plugin.grid_positions(*shape)
    only = args.precisions_only
    if only:  # any kind of model: its own grid, sets from its demo signal (or Fashion-MNIST images)
        sets_of = set_maker(model, shape, args.data_dir, max(args.batches))
        rows, bounded = [], []
    else:
        images = common.test_images(max(args.batches), args.data_dir)
        sets_of = functools.partial(make_sets, images)
        rows = speed_rows(args, model, load_torch(args.checkpoint, args.threads), images, grid)
        bounded = [] if args.no_memory else bounded_rows(args, common.observed_sets(images[:1], args.bounded_set,
                                                                                     args.seed)[0])
    precisions = precision_rows(args, sets_of, grid) if args.precisions else []
    print(f"# Mean inference, {'x'.join(map(str, shape))} queries: onnxruntime (pt-plugin) vs torch eager\n")
    torch_line = "" if only else f", checkpoint {args.checkpoint}"
    print(f"{machine}; model {args.model_path}{torch_line}; median of {args.repeats} "
          f"interleaved calls after {args.warmup} warm-up\n")
    if rows:
        print(speed_table(rows))
    if bounded:
        print(f"\nBounded memory: Model.mean, |S|={args.bounded_set}, random query positions, default chunk\n")
        print(bounded_table(bounded))
    if precisions:
        print(f"\nPrecisions: ort Model.mean per graph precision (CPU), median of {args.repeats} interleaved calls\n")
        print(precision_table(precisions))
    common.save_json(args.json, {"benchmark": "mean_inference", "machine": machine, "args": vars(args),
                                 "rows": rows, "bounded": bounded, "precisions": precisions})
    return 0


if __name__ == "__main__":
    sys.exit(main())
