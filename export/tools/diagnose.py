"""Does a checkpoint use its samples? `python -m export.tools.diagnose CHECKPOINT [CHECKPOINT ...]`.

A training diagnostic: the validation log-likelihood (nats per value) with S as given, against the
same batches with S's values shuffled across the batch (each set paired with another signal's values).
A model that learnt only p(value | position) scores the same on both (gain ≈ 0); fashion-mnist gains
2.4 nats. Also printed: the mean value's MSE at S's own positions, which a model that uses S keeps
near zero (it was handed those values), against its MSE at the queries; and, per head of the first
decoder block, the attention weight that a query placed at a sample's position gives that sample's key
(against 1/|S| for uniform attention): how local the model's reading of S is. The runs that gained nothing
are what made the `normalize_values`, `init_std` and `locality_init` model options necessary (CHANGELOG);
the isotropic video model that unlearnt its locality (0.05–0.09 on its own key against 0.022 uniform; with
`fourier_axis_scales [1, 1, 0.125]`, 0.30–0.41 in two heads) made that option.
"""
from __future__ import annotations

import argparse
import sys

import torch

from export.checkpoint import load_checkpoint
from export.config import Config
from export.errors import reports_errors
from export.model import Mixture, PixelTransformer, key_bias


@torch.no_grad()
def conditioning_gain(model: PixelTransformer, batches: list) -> dict[str, float]:
    """Mean log-likelihood of the query values with S, with S's values shuffled across each batch, and the gain;
    also the mean-value MSE at S's own positions (`copy_mse`: a model that uses S reproduces what it was
    given, fashion-mnist 0.0004 at |S| = 64) against the MSE at the queries (`query_mse`)."""
    model.eval()
    given = shuffled = copy = query = 0.0
    for spos, sval, mask, qpos, qval in batches:
        other = torch.roll(torch.arange(len(sval)), 1)  # set i gets set i-1's values: none keeps its own
        memory = model.encoder(spos, sval, mask)  # S encoded once, decoded at the queries and at S itself
        out = Mixture(*model.decoder(memory, mask, qpos), model.centers)
        given += out.log_prob(qval).mean().item()
        query += ((out.mean() - qval) ** 2).mean().item()
        shuffled += model(spos, sval[other], mask, qpos).log_prob(qval).mean().item()
        at_s = Mixture(*model.decoder(memory, mask, spos), model.centers)
        copy += ((at_s.mean() - sval) ** 2).mean(-1)[mask].mean().item()
    n = max(1, len(batches))
    return {"with_s": given / n, "shuffled_s": shuffled / n, "gain": (given - shuffled) / n,
            "copy_mse": copy / n, "query_mse": query / n}


@torch.no_grad()
def own_key_weight(model: PixelTransformer, batches: list) -> dict[str, list[float] | float]:
    """First decoder block, queries at S's own positions: the attention weight on the key of the sample at
    the query's position, averaged over real samples, per head; and what uniform attention would give."""
    model.eval()
    per_head, uniform, n = None, 0.0, 0
    for spos, sval, mask, _qpos, _qval in batches:
        memory = model.encoder(spos, sval, mask)
        block = model.decoder.blocks[0]
        q = model.decoder.tokens(spos)
        scores, _ = block.att.scores_and_values(block.ln1(q), memory, key_bias(mask, q.dtype))
        own = torch.diagonal(torch.softmax(scores, dim=-1), dim1=-2, dim2=-1)  # [B, H, K]
        heads = (own * mask[:, None]).sum((0, 2)) / mask.sum()
        per_head = heads if per_head is None else per_head + heads
        uniform += (mask.sum(1, keepdim=True).float().reciprocal() * mask).sum().item() / mask.sum().item()
        n += 1
    n = max(1, n)
    return {"own_key": [] if per_head is None else (per_head / n).tolist(), "uniform": uniform / n}


@reports_errors
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.tools.diagnose", description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--batches", type=int, default=4, help="validation batches to average over")
    a = p.parse_args(argv)
    from export.train import data_sources  # heavy: only when run

    for path in a.checkpoints:
        model, ck = load_checkpoint(path)
        _, val, _ = data_sources(Config.from_dict(ck["config"]), 0)
        r = conditioning_gain(model, val[:a.batches])
        w = own_key_weight(model, val[:a.batches])
        print(f"{path} (step {ck.get('step')}): val log-lik with S {r['with_s']:.3f}, with shuffled S "
              f"{r['shuffled_s']:.3f}, gain {r['gain']:.3f} nats/value; mean-value MSE at S's own positions "
              f"{r['copy_mse']:.4f}, at the queries {r['query_mse']:.4f}; first decoder block's weight on the "
              f"sample at the query's own position, per head {' '.join(f'{x:.3f}' for x in w['own_key'])} "
              f"(uniform {w['uniform']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
