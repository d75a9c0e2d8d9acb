"""Depth growth: a trained checkpoint's weights in a deeper model that starts out computing the same function.

The blocks are pre-LN residual blocks (x + att(ln(x)), then + ff(ln(x))), so a block whose attention output
projection and second feed-forward layer are zero is the identity. The old blocks keep their order and are
spread evenly over the new stack; the new blocks in between start as identities and learn from there. This
lets a larger size be compared with the current one at equal minutes from the same trained start (issue 33)
instead of from scratch, where the larger size would need the hours the current one already had.
"""
from __future__ import annotations

import torch

from export.config import ModelConfig
from export.errors import ExportError

STACKS = ("encoder", "decoder")


def old_block_slots(old: int, new: int) -> list[int]:
    """Where each of `old` blocks goes in a stack of `new` (kept in order, spread evenly)."""
    return [i * new // old for i in range(old)]


def grow_state_dict(state: dict[str, torch.Tensor], old: ModelConfig, new: ModelConfig,
                    fresh: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state` (a model of config `old`) laid into a model of config `new`, whose own initial weights are
    `fresh`: every non-block weight and every old block copied, each new block taken from `fresh` with its
    residual outputs (att.proj, ff.2) zeroed so that the grown model's outputs equal the old model's."""
    same = {k: v for k, v in vars(old).items() if k not in ("enc_layers", "dec_layers")}
    differs = [k for k, v in same.items() if vars(new).get(k) != v]
    if differs:
        raise ExportError(f"only the depth can grow (enc_layers, dec_layers); these differ too: {', '.join(differs)}")
    layers = {"encoder": (old.enc_layers, new.enc_layers), "decoder": (old.dec_layers, new.dec_layers)}
    for stack, (o, n) in layers.items():
        if n < o:
            raise ExportError(f"{stack} would shrink from {o} to {n} blocks; only growth is supported")
    out = dict(fresh)
    for key, value in state.items():
        parts = key.split(".")
        if len(parts) > 2 and parts[0] in STACKS and parts[1] == "blocks":
            o, n = layers[parts[0]]
            parts[2] = str(old_block_slots(o, n)[int(parts[2])])
            key = ".".join(parts)
        if key not in out:
            raise ExportError(f"weight {key} of the checkpoint has no place in the grown model")
        out[key] = value
    for stack, (o, n) in layers.items():
        kept = set(old_block_slots(o, n))
        for i in range(n):
            if i not in kept:
                for name in ("att.proj.weight", "att.proj.bias", "ff.2.weight", "ff.2.bias"):
                    key = f"{stack}.blocks.{i}.{name}"
                    out[key] = torch.zeros_like(out[key])
    return out


def is_depth_growth(old: ModelConfig, new: ModelConfig) -> bool:
    """True when `new` has more encoder or decoder blocks than `old` (and grow_state_dict applies)."""
    return (new.enc_layers, new.dec_layers) != (old.enc_layers, old.dec_layers)
