"""Training precision: `auto | fp32 | bf16`, chosen at run time for the device at hand.

bf16 runs the transformer blocks under `torch.autocast` (3× the fp32 step rate on a CPU with
AVX512_BF16, measured by benchmarks/train_throughput.py); the model keeps its precision-sensitive
parts in float32 (export.model.full_precision): Fourier features, the value embedding, the output
head and its σ/offset transform, the mixture and the loss. Master weights and the optimizer state
stay float32, so a bf16-trained checkpoint exports like any other.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from export.errors import PrecisionError  # raised here, imported from here by callers

PRECISIONS = ("auto", "fp32", "bf16")
ATTENTION = ("auto", "folded", "fused")


def cpu_flags() -> dict[str, bool]:
    """The CPU's bf16-relevant features, from torch's own probe (or /proc/cpuinfo where torch has none)."""
    probe = getattr(getattr(torch._C, "_cpu", None), "_get_cpu_capability", None)
    if probe is not None:
        caps = probe()
        return {k: bool(caps.get(k, False)) for k in ("avx512_bf16", "amx_bf16")}
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        flags = []
    return {k: k in flags for k in ("avx512_bf16", "amx_bf16")}


def native_bf16(device: torch.device) -> tuple[bool, str]:
    """(does this device compute in bf16 natively, why): a CUDA GPU with bf16, or a CPU with AVX512_BF16 or
    AMX. Elsewhere bf16 is emulated (slower than fp32, and no more accurate)."""
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        name = torch.cuda.get_device_name(device)
        return ok, f"{name} {'supports' if ok else 'lacks'} bf16"
    flags = cpu_flags()
    have = [k for k, v in flags.items() if v]
    if have:
        return True, f"the CPU has {' and '.join(f.upper() for f in have)}"
    return False, "the CPU has neither AVX512_BF16 nor AMX_BF16"


def choose(requested: str, device: torch.device) -> tuple[str, str]:
    """(precision, reason) for `requested` in PRECISIONS on `device`; auto picks bf16 only where it is native."""
    if requested not in PRECISIONS:
        raise PrecisionError(f"precision must be one of {', '.join(PRECISIONS)}; got {requested!r}")
    if requested == "fp32":
        return "fp32", "asked for fp32"
    ok, why = native_bf16(device)
    if requested == "bf16":
        return "bf16", "asked for bf16" + ("" if ok else f" ({why}: emulated, expect it slower than fp32)")
    return ("bf16", f"auto: {why}") if ok else ("fp32", f"auto: {why}")


# From how many keys on the fused attention beats the folded one in a training step on a CPU
# (benchmarks/train_throughput.py, docs/benchmarks/train_throughput.md): fp32 0.86–1.03× at 4–64 keys,
# 1.08× at 181, 1.2–2.0× from 400; bf16 0.4–0.7× up to 400 keys, 1.03–1.2× from 800.
FUSE_FROM_CPU = {"fp32": 128, "bf16": 640}


def fused_attention(attention: str, precision: str, device: torch.device) -> int | None:
    """From how many keys on training runs attention through F.scaled_dot_product_attention (0: always, None:
    never; both forms give the same outputs). auto: always on CUDA; on a CPU from FUSE_FROM_CPU[precision]."""
    if attention not in ATTENTION:
        raise PrecisionError(f"attention must be one of {', '.join(ATTENTION)}; got {attention!r}")
    if attention != "auto":
        return 0 if attention == "fused" else None
    return 0 if device.type == "cuda" else FUSE_FROM_CPU[precision]


def describe_attention(fuse_from: int | None) -> str:
    """The log's words for fused_attention's answer."""
    if fuse_from is None:
        return "folded attention"
    return "fused attention" if fuse_from == 0 else f"folded attention below {fuse_from} keys, fused from there"


def autocast(precision: str, device: torch.device):
    """The context a training forward runs in: bf16 autocast, or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
