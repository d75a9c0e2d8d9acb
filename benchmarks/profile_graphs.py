"""Graph profile: where encoder.onnx and decoder.onnx spend their kernel time, two exports side by side.

What runs: the bare onnxruntime sessions of pt-plugin (pt_plugin.sessions.make_session, the same
options Model uses) for each model folder (--before, and --after when given), fed identical inputs:
  encoder  batch --batch, |S| in --sizes (random pixels of Fashion-MNIST test images 0.., seed --seed);
  decoder  batch --batch, |S| = --decoder-samples, --queries query positions (memory from the
           --before encoder, the same for both folders).
Timing: plain sessions, the two folders' calls interleaved in rotating order (common.interleave),
--warmup discarded, the median of --repeats calls; speed-up = before ms / after ms (> 1: after is
faster).
Profile: a second session per folder and case with onnxruntime's profiler on (SessionOptions
.enable_profiling); after one discarded warm-up run, --profile-runs runs are traced and each
operator type's share of the summed kernel time (the trace's "Node" *_kernel_time events) is given.
"mask" is the share of the attention mask's work: element-wise ops (Where, Add, Not, Cast, ...)
on a 4-D tensor whose last axis is the sample axis, i.e. [batch, heads|1, queries|1, samples].
GFLOP/s = the matrix-product FLOPs of the call (common.encoder_flops / decoder_flops, from
model.json's architecture, times the batch) / the median seconds; the yardstick is a float32
--yardstick² numpy matrix product on the same cores (common.matmul_gflops).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import common
from common import fmt

MASK_OPS = {"Where", "Add", "Not", "Cast", "Mul", "Sub", "And", "Or", "Expand", "Equal"}
FOLDERS = ("before", "after")


@dataclass(frozen=True)
class Case:
    """One timed graph call: which graph, batch, set size and (decoder) queries."""
    graph: str
    batch: int
    samples: int
    queries: int = 0

    @property
    def name(self) -> str:
        q = f" Q={self.queries}" if self.graph == "decoder" else ""
        return f"{self.graph} B={self.batch} |S|={self.samples}{q}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = common.parser(__doc__)
    p.add_argument("--before", dest="model_path", type=Path, default=common.DEFAULT_MODEL_PATH,
                   help="the reference export folder (same as --model-path)")
    p.add_argument("--after", type=Path, help="the export folder to compare with --before")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--sizes", type=common.int_list, default=[64, 256, 784], help="encoder set sizes")
    p.add_argument("--decoder-samples", type=int, default=256, help="|S| of the decoder case (0: no decoder)")
    p.add_argument("--queries", type=int, default=784, help="query positions of the decoder case")
    p.add_argument("--repeats", type=int, default=15, help="timed calls per folder and case")
    p.add_argument("--warmup", type=int, default=3, help="discarded calls per folder and case")
    p.add_argument("--profile-runs", type=int, default=5, help="traced runs per folder and case")
    p.add_argument("--top", type=int, default=8, help="operator types listed per case (the rest: 'other')")
    p.add_argument("--yardstick", type=int, default=2048, help="n of the n x n numpy matrix product yardstick")
    return p.parse_args(argv)


def cases(args: argparse.Namespace) -> list[Case]:
    enc = [Case("encoder", args.batch, k) for k in args.sizes]
    return enc + ([Case("decoder", args.batch, args.decoder_samples, args.queries)] if args.decoder_samples else [])


def folders(args: argparse.Namespace) -> dict[str, Path]:
    return {"before": args.model_path, **({"after": args.after} if args.after else {})}


def encoder_feeds(batch: int, k: int, data_dir: Path, seed: int) -> dict[str, np.ndarray]:
    """k random pixels of each of `batch` test images as the encoder's inputs (no padding)."""
    sets = common.observed_sets(common.test_images(batch, data_dir), k, seed)
    return {"sample_positions": np.stack([s[0] for s in sets]).astype(np.float32),
            "sample_values": np.stack([s[1] for s in sets]).astype(np.float32),
            "sample_mask": np.ones((batch, k), bool)}


def feeds_for(case: Case, args: argparse.Namespace) -> dict[str, np.ndarray]:
    """The inputs of one case, identical for both folders (decoder memory from the --before encoder)."""
    enc = encoder_feeds(case.batch, case.samples, args.data_dir, args.seed)
    if case.graph == "encoder":
        return enc
    session = session_for(args.model_path, "encoder", args)
    (memory,) = session.run(None, enc)
    queries = encoder_feeds(case.batch, case.queries, args.data_dir, args.seed + 1000)["sample_positions"]
    return {"memory": memory, "sample_mask": enc["sample_mask"], "query_positions": queries}


def session_for(folder: Path, graph: str, args: argparse.Namespace, profile_prefix: str | None = None):
    """pt-plugin's session for folder/graph.onnx, optionally with the profiler on."""
    from pt_plugin.sessions import make_session

    return make_session(folder / f"{graph}.onnx", device=args.device, threads=args.threads,
                        profile_prefix=profile_prefix)


def time_case(case: Case, feeds: dict, args: argparse.Namespace) -> dict[str, list[float]]:
    """Seconds of each timed call per folder, the folders interleaved."""
    sessions = {n: session_for(f, case.graph, args) for n, f in folders(args).items()}
    variants = {n: common.timer(lambda s=s: s.run(None, feeds)) for n, s in sessions.items()}
    return common.interleave(variants, args.repeats, warmup=args.warmup)


def is_mask_node(op: str, shapes: list[list[int]], samples: int) -> bool:
    """An element-wise op on [batch, heads|1, queries|1, samples]: the attention mask's work."""
    return op in MASK_OPS and any(len(s) == 4 and s[-1] == samples for s in shapes)


def output_shapes(event: dict) -> list[list[int]]:
    """Output shapes recorded by onnxruntime's profiler for one node event."""
    return [list(next(iter(o.values()))) for o in event.get("args", {}).get("output_type_shape", [])]


def trace_shares(trace: Path, samples: int) -> dict:
    """Kernel microseconds per run by operator type, and the mask's, from one profiler trace.

    The first model_run of the trace (the warm-up) is left out.
    """
    events = json.loads(trace.read_text())
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])
    start = runs[1]["ts"] if len(runs) > 1 else 0
    per_op: dict[str, float] = defaultdict(float)
    mask = 0.0
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time") or e["ts"] < start:
            continue
        op = e["args"].get("op_name", "?")
        per_op[op] += e["dur"]
        if is_mask_node(op, output_shapes(e), samples):
            mask += e["dur"]
    n = max(len(runs) - 1, 1)
    total = sum(per_op.values())
    return {"kernel_us_per_run": total / n, "op_us_per_run": {k: v / n for k, v in per_op.items()},
            "op_share": {k: v / total for k, v in sorted(per_op.items(), key=lambda kv: -kv[1])},
            "mask_share": mask / total if total else float("nan")}


def profile_case(case: Case, feeds: dict, args: argparse.Namespace) -> dict[str, dict]:
    """Operator shares per folder: one warm-up and --profile-runs traced runs."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="pt-profile-") as tmp:
        for name, folder in folders(args).items():
            session = session_for(folder, case.graph, args, profile_prefix=str(Path(tmp) / name))
            for _ in range(1 + args.profile_runs):
                session.run(None, feeds)
            out[name] = trace_shares(Path(session.end_profiling()), case.samples)
    return out


def case_flops(case: Case, arch: dict) -> float:
    per_set = (common.encoder_flops(arch, case.samples) if case.graph == "encoder"
               else common.decoder_flops(arch, case.samples, case.queries))
    return case.batch * per_set


def measure(args: argparse.Namespace, arch: dict) -> list[dict]:
    """Timing and profile of every case, one row per case."""
    rows = []
    for case in cases(args):
        common.log(f"{case.name}: timing")
        feeds = feeds_for(case, args)
        seconds = time_case(case, feeds, args)
        common.log(f"{case.name}: profiling")
        profile = profile_case(case, feeds, args)
        flops = case_flops(case, arch)
        per = {n: {"seconds": s, "median_ms": 1e3 * common.median(s),
                   "gflop_per_s": flops / 1e9 / common.median(s), **profile[n]} for n, s in seconds.items()}
        row = {"case": case.name, "graph": case.graph, "batch": case.batch, "samples": case.samples,
               "queries": case.queries, "gflop": flops / 1e9, **per}
        if "after" in per:
            row["speedup"] = per["before"]["median_ms"] / per["after"]["median_ms"]
        rows.append(row)
    return rows


def speed_table(rows: list[dict], yardstick: float) -> str:
    names = [n for n in FOLDERS if n in rows[0]]
    headers = ["case"] + [f"{n} ms" for n in names] + (["speed-up"] if len(names) > 1 else [])
    headers += [f"{n} GFLOP/s" for n in names] + [f"{names[-1]} / yardstick"] + [f"{n} mask %" for n in names]
    body = []
    for r in rows:
        line = [r["case"]] + [fmt(r[n]["median_ms"]) for n in names]
        line += [fmt(r["speedup"])] if len(names) > 1 else []
        line += [fmt(r[n]["gflop_per_s"]) for n in names] + [fmt(r[names[-1]]["gflop_per_s"] / yardstick)]
        line += [fmt(100 * r[n]["mask_share"], 2) for n in names]
        body.append(line)
    return common.table(headers, body)


def share_table(row: dict, top: int) -> str:
    """Operator types by share of kernel time, before and after, the largest first."""
    names = [n for n in FOLDERS if n in row]
    ops = sorted({op for n in names for op in row[n]["op_share"]},
                 key=lambda op: -max(row[n]["op_share"].get(op, 0.0) for n in names))
    shown, rest = ops[:top], ops[top:]
    body = [[op] + [fmt(100 * row[n]["op_share"].get(op, 0.0), 2) for n in names]
            + [fmt(row[n]["op_us_per_run"].get(op, 0.0) / 1e3) for n in names] for op in shown]
    body.append(["other"] + [fmt(100 * sum(row[n]["op_share"].get(op, 0.0) for op in rest), 2) for n in names]
                + [fmt(sum(row[n]["op_us_per_run"].get(op, 0.0) for op in rest) / 1e3) for n in names])
    body.append(["kernel total"] + ["100" for _ in names] + [fmt(row[n]["kernel_us_per_run"] / 1e3) for n in names])
    return common.table(["op"] + [f"{n} %" for n in names] + [f"{n} ms/run" for n in names], body)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    machine = common.machine_line(args.threads)
    arch = json.loads((args.model_path / "model.json").read_text())["architecture"]
    yardstick = common.matmul_gflops(args.yardstick)
    rows = measure(args, arch)
    names = " vs ".join(f"{n} {f}" for n, f in folders(args).items())
    print("# Graph profile: operator shares and speed of encoder.onnx / decoder.onnx\n")
    print(f"{machine}; device {args.device}; {names}; median of {args.repeats} interleaved calls after "
          f"{args.warmup} warm-up; profiles over {args.profile_runs} runs; a numpy float32 "
          f"{args.yardstick}x{args.yardstick} matrix product (the yardstick) runs at {yardstick:.0f} GFLOP/s here\n")
    print(speed_table(rows, yardstick))
    for r in rows:
        print(f"\n## {r['case']}: share of kernel time by operator type\n")
        print(share_table(r, args.top))
    common.save_json(args.json, {"benchmark": "profile_graphs", "machine": machine, "args": vars(args),
                                 "matmul_gflop_per_s": yardstick, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
