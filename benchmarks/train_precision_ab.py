"""Training quality A/B: the same config, seed and data trained in several precisions side by side.

Each variant is one `python -m export.train` process, all started together with the same number of
threads each, so they share the machine's noise. Two protocols:

    --steps N      every variant trains N steps (its schedule ends at N): validation NLL at equal steps
    --minutes M    every variant trains M minutes (the cosine schedule ends on time): at equal wall-clock

The table lists, per variant, the steps reached, the final validation NLL (nats/value, the held-out
batches export.train validates on) and its difference from the first variant, plus the NLL at every
validation step all variants share (the learning curves, also in the JSON).

A variant is `PRECISION[+sdpa][@SEED]`: fp32 | bf16, +sdpa for F.scaled_dot_product_attention in training,
@SEED for another seed than --seed (`fp32 fp32@1 bf16` shows how far two fp32 runs differ by chance alone).

    python benchmarks/train_precision_ab.py --config configs/fashion-mnist.json --steps 1500 --out runs/ab-fm-steps
    python benchmarks/train_precision_ab.py --config configs/fashion-mnist.json --minutes 20 --out runs/ab-fm-time
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def variant_flags(variant: str, seed: int) -> list[str]:
    """export.train flags of a variant `PRECISION[+sdpa][@SEED]` (a different seed measures run-to-run noise)."""
    spec, _, seed_text = variant.partition("@")
    prec, _, extra = spec.partition("+")
    if prec not in ("fp32", "bf16") or extra not in ("", "sdpa") or not (seed_text or "0").isdigit():
        raise SystemExit(f"error: a variant is fp32 or bf16, optionally +sdpa, optionally @SEED; got {variant!r}")
    return ["--precision", prec, "--attention", "fused" if extra else "folded",
            "--seed", seed_text or str(seed)]


def launch(args: argparse.Namespace, variant: str) -> subprocess.Popen:
    out = args.out / variant
    out.mkdir(parents=True, exist_ok=True)
    # equal steps: no time limit, so the config's max_minutes neither stops a slower variant early nor bends its
    # learning-rate schedule to the clock (export.train.lr_at follows whichever of steps and minutes is further)
    limit = (["--steps", str(args.steps), "--max-minutes", "0"] if args.steps
             else ["--steps", "10000000", "--max-minutes", str(args.minutes)])
    cmd = [sys.executable, "-m", "export.train", "--config", str(args.config), "--out", str(out),
           "--threads", str(args.threads), "--val-every", str(args.val_every),
           *limit, *variant_flags(variant, args.seed), *args.extra]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    log = open(out / "train.log", "w")
    print(f"{variant}: {' '.join(cmd)}", flush=True)
    return subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)


def history(out: Path) -> list[dict]:
    """The run's validation history, ending with its final weights (validated here for a run that stopped on
    time before export.train validated final weights itself)."""
    import torch

    ck = torch.load(out / "model.pt", map_location="cpu", weights_only=False)
    hist = ck["history"]
    if hist[-1]["step"] != ck["step"]:
        hist = hist + [{**final_figures(ck), "step": ck["step"], "minutes": round(ck["minutes"], 2)}]
    return hist


def final_figures(ck: dict) -> dict:
    from export.config import Config
    from export.model import PixelTransformer
    from export.train import data_sources, evaluate

    cfg = Config.from_dict(ck["config"])
    model = PixelTransformer(cfg.model)
    model.load_state_dict(ck["model"])
    _, val, _ = data_sources(cfg, 0)
    return evaluate(model, val, cfg.model.alpha, "cpu")


def report(args: argparse.Namespace, variants: list[str]) -> dict:
    hist = {v: history(args.out / v) for v in variants}
    final = {v: h[-1] for v, h in hist.items()}
    common = sorted(set.intersection(*({e["step"] for e in h} for h in hist.values())))
    base = variants[0]
    lines = [f"# Precision A/B: {args.config} ({'%d steps' % args.steps if args.steps else '%g minutes' % args.minutes}"
             f" each, {args.threads} thread(s) each, seed {args.seed})", "",
             "| variant | steps | minutes | final val NLL | vs " + base + " |", "| --- | ---: | ---: | ---: | ---: |"]
    for v in variants:
        f = final[v]
        lines.append(f"| {v} | {f['step']} | {f['minutes']:.1f} | {f['val_nll']:.4f} | "
                     f"{f['val_nll'] - final[base]['val_nll']:+.4f} |")
    lines += ["", "Validation NLL at the steps every variant reached:", "",
              "| step | " + " | ".join(variants) + " |", "|---:|" + "---:|" * len(variants)]
    for s in common:
        row = [next(e["val_nll"] for e in hist[v] if e["step"] == s) for v in variants]
        lines.append(f"| {s} | " + " | ".join(f"{x:.4f}" for x in row) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    (args.out / "report.md").write_text(text)
    payload = {"config": str(args.config), "steps": args.steps, "minutes": args.minutes, "threads": args.threads,
               "seed": args.seed, "history": hist}
    (args.out / "report.json").write_text(json.dumps(payload, indent=1))
    return payload


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, required=True)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--steps", type=int, help="train every variant this many steps (equal steps)")
    g.add_argument("--minutes", type=float, help="train every variant this many minutes (equal wall-clock)")
    p.add_argument("--variants", nargs="+", default=["fp32", "bf16"])
    p.add_argument("--threads", type=int, default=1, help="threads per variant (all run at once)")
    p.add_argument("--val-every", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--report-only", action="store_true", help="only print the table of finished runs in --out")
    p.add_argument("extra", nargs="*", help="more export.train flags (after --)")
    args = p.parse_args(argv)
    for v in args.variants:
        variant_flags(v, args.seed)
    if not args.report_only:
        t0 = time.time()
        procs = {v: launch(args, v) for v in args.variants}
        failed = [v for v, pr in procs.items() if pr.wait() != 0]
        print(f"all done in {(time.time() - t0) / 60:.1f} minutes", flush=True)
        if failed:
            print(f"error: {', '.join(failed)} failed; see {args.out}/<variant>/train.log", file=sys.stderr)
            return 1
    report(args, args.variants)
    return 0


if __name__ == "__main__":
    sys.exit(main())
