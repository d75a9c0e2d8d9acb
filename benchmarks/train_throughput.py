"""Training throughput: steps/s and GFLOP/s of one training step, fp32 against bf16, per config.

For every config under configs/ (or those named), at two set sizes (the geometric middle and the top of
its |S| range, with the batch cut by its set-token budget exactly as its sampler does), one
forward + backward + AdamW step of the config's model is timed in these variants, interleaved
round-robin in one run so that the machine's noise falls on all of them alike:

    fp32        float32, the folded attention the graphs are exported with (training before issue 28)
    fp32+sdpa   float32 through F.scaled_dot_product_attention
    bf16        bf16 autocast with the float32 islands (export.precision), folded attention
    bf16+sdpa   bf16 autocast through scaled_dot_product_attention: what `--precision auto` trains with
    +compile    (with --compile) bf16 and bf16+sdpa under torch.compile(dynamic=True); the first step (the
                compile) is timed apart, in the JSON

GFLOP/s counts the matrix products of forward and backward (3× the forward's, benchmarks.common's
encoder_flops/decoder_flops). Synthetic batches (uniform positions and values) have the shapes of real
ones, which is all that the step time depends on.

    python benchmarks/train_throughput.py --threads 2 --out docs/benchmarks/train_throughput.md
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch

from common import (
    ROOT,
    decoder_flops,
    encoder_flops,
    interleave,
    log,
    machine_line,
    matmul_gflops,
    median,
    parser,
    save_json,
    table,
)
from export import precision
from export.config import Config
from export.model import PixelTransformer

VARIANTS = {  # name -> (precision, fused attention, compile)
    "fp32": ("fp32", False, False),
    "fp32+sdpa": ("fp32", True, False),
    "bf16": ("bf16", False, False),
    "bf16+sdpa": ("bf16", True, False),
    "bf16+compile": ("bf16", False, True),
    "bf16+sdpa+compile": ("bf16", True, True),
}


def set_sizes(cfg: Config) -> list[tuple[int, int]]:
    """(|S|, batch) pairs: the geometric middle and the top of the config's |S| range, batch cut by the budget."""
    tc = cfg.train
    ks = sorted({round(math.sqrt(tc.min_samples * tc.max_samples)), tc.max_samples})
    return [(k, min(tc.batch_size, max(1, tc.max_set_tokens // k)) if tc.max_set_tokens else tc.batch_size)
            for k in ks]


def synthetic_batch(cfg: Config, k: int, b: int, seed: int = 0):
    mc, nq = cfg.model, cfg.train.num_queries
    g = torch.Generator().manual_seed(seed)
    lo, hi = mc.value_range
    pos = lambda n: torch.rand(b, n, mc.pos_dim, generator=g) * 2 - 1  # noqa: E731
    val = lambda n: lo + (hi - lo) * torch.rand(b, n, mc.val_dim, generator=g)  # noqa: E731
    return pos(k), val(k), torch.ones(b, k, dtype=torch.bool), pos(nq), val(nq)


def step_fn(cfg: Config, batch, variant: str):
    """A closure running one training step of a fresh model (same init for every variant), and its setup seconds."""
    prec, fused, compiled = VARIANTS[variant]
    torch.manual_seed(0)
    model = PixelTransformer(cfg.model).fuse_attention(0 if fused else None)
    net = torch.compile(model, dynamic=True) if compiled else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    spos, sval, mask, qpos, qval = batch
    device = torch.device("cpu")

    def step() -> float:
        t0 = time.perf_counter()
        with precision.autocast(prec, device):
            mix = net(spos, sval, mask, qpos)
        loss = mix.loss(qval, cfg.model.alpha).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - t0

    t0 = time.perf_counter()
    step()  # the first step compiles (or warms the allocator)
    return step, time.perf_counter() - t0


def step_flops(cfg: Config, k: int, b: int) -> float:
    mc = cfg.model
    arch = {"d_model": mc.d_model, "ffn": mc.ffn, "enc_layers": mc.enc_layers, "dec_layers": mc.dec_layers}
    return 3 * b * (encoder_flops(arch, k) + decoder_flops(arch, k, cfg.train.num_queries))


def load_config(path: Path) -> Config:
    """The config, with a stand-in palette where training would fit one to the data (only its size matters here)."""
    cfg = Config.load(path)
    mc = cfg.model
    if cfg.train.palette and mc.bin_centers is None:
        lo, hi = mc.value_range
        g = torch.Generator().manual_seed(0)
        mc.bin_centers = (lo + (hi - lo) * torch.rand(cfg.train.palette, mc.val_dim, generator=g)).tolist()
    return cfg


def measure(cfg_path: Path, variants: list[str], repeats: int, sets: list[tuple[int, int]] | None = None) -> list[dict]:
    cfg = load_config(cfg_path)
    rows = []
    for k, b in sets or set_sizes(cfg):
        batch = synthetic_batch(cfg, k, b)
        fns, setup = {}, {}
        for v in variants:
            fns[v], setup[v] = step_fn(cfg, batch, v)
        times = interleave(fns, repeats, warmup=1)
        flops = step_flops(cfg, k, b)
        for v in variants:
            t = median(times[v])
            rows.append({"config": cfg_path.stem, "k": k, "batch": b, "variant": v, "step_s": t,
                         "steps_per_s": 1 / t, "gflops": flops / t / 1e9, "first_step_s": setup[v]})
        base = median(times["fp32"]) if "fp32" in times else None
        log(f"{cfg_path.stem} |S|={k} batch {b}: " + ", ".join(
            f"{v} {median(times[v]):.3f} s" + (f" ({base / median(times[v]):.2f}x)" if base else "") for v in variants))
    return rows


def render(rows: list[dict], variants: list[str], threads: int) -> str:
    headers = ["config", "|S|", "batch"] + [f"{v} s/step (GFLOP/s)" for v in variants] + \
              [f"{v} / fp32" for v in variants if v != "fp32"]
    out = []
    for (cfg, k, b) in dict.fromkeys((r["config"], r["k"], r["batch"]) for r in rows):
        by = {r["variant"]: r for r in rows if (r["config"], r["k"], r["batch"]) == (cfg, k, b)}
        cells = [cfg, str(k), str(b)] + [f"{by[v]['step_s']:.3f} ({by[v]['gflops']:.0f})" for v in variants]
        cells += [f"{by['fp32']['step_s'] / by[v]['step_s']:.2f}x" for v in variants if v != "fp32"]
        out.append(cells)
    caps = precision.cpu_flags()
    cpu = f"CPU: {torch._C._cpu._get_cpu_capability().get('cpu_name', '?')}; " + \
        ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in caps.items())
    return "\n".join([f"# Training throughput ({machine_line(threads)})", "", cpu + "; numpy fp32 1024² product "
                      f"{matmul_gflops():.0f} GFLOP/s", "", table(headers, out), ""])


def main(argv=None) -> int:
    p = parser(__doc__)
    p.add_argument("--configs", nargs="*", type=Path, default=sorted((ROOT / "configs").glob("*.json")))
    p.add_argument("--repeats", type=int, default=5, help="timed steps per variant and set size")
    p.add_argument("--compile", action="store_true", help="add the torch.compile variant (about a minute each)")
    p.add_argument("--sets", type=lambda t: [tuple(int(x) for x in kb.split("x")) for kb in t.split(",")],
                   help="|S|xBATCH pairs to time instead of each config's own, e.g. 400x16,800x16")
    p.add_argument("--out", type=Path, help="also write the Markdown table here")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    variants = [v for v in VARIANTS if a.compile or "compile" not in v]
    rows = [r for c in a.configs for r in measure(c, variants, a.repeats, a.sets)]
    text = render(rows, variants, a.threads)
    print(text)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text)
    save_json(a.json, {"rows": rows, "threads": a.threads, "cpu": precision.cpu_flags()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
