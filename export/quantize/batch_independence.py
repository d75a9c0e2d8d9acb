"""The batch-independence check: a set's outputs must not depend on the batch, padding or query chunks it runs in.

One set alone vs. in a padded batch with other sets, its queries split over other decoder calls; every output
within INDEPENDENCE_TOLERANCE (float16: FP16_INDEPENDENCE_TOLERANCE). pt_plugin batches and chunks freely, so a
variant that fails this would give a user other figures than the ones recorded.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from export.onnx.graphs import DECODER_OUTPUTS
from export.quantize.graphs import session
from export.quantize.sources import random_draw

# A set's outputs alone vs. batched: the largest |Δ| allowed (float32 rounding: exp/log of log_sigma differ
# by 1 ulp with the row's place in the batch, 4.8e-7 on the shipped model; quantization noise is 1e-2..1).
INDEPENDENCE_TOLERANCE = 1e-6  # float32 and int8 (fixed scales): a set's outputs do not depend on its batch
# float16: onnxruntime's float16 kernels and conversions round per block, so a value can move by an ulp
# (2^-10 at magnitude 1, 2^-9 up to 4) with the shape of the batch it runs in
FP16_INDEPENDENCE_TOLERANCE = 4e-3


def independence_tolerance(precision: str) -> float:
    """The largest |Δ| a precision may show between a set alone and batched."""
    return FP16_INDEPENDENCE_TOLERANCE if precision == "fp16" else INDEPENDENCE_TOLERANCE


def independence_ok(diffs: dict[str, float], precision: str = "int8") -> bool:
    """Every figure of `independence` within the precision's tolerance (rounding, not quantization)."""
    return all(v <= independence_tolerance(precision) for v in diffs.values())


def _run(sessions, pos: np.ndarray, val: np.ndarray, mask: np.ndarray, query_chunks: list[np.ndarray]):
    """Memory and decoder outputs of both graphs; the decoder is called once per query chunk [B, Qc, pos_dim]."""
    enc, dec = sessions
    (memory,) = enc.run(None, {"sample_positions": pos, "sample_values": val, "sample_mask": mask})
    parts = [dec.run(None, {"memory": memory, "sample_mask": mask, "query_positions": q}) for q in query_chunks]
    return memory, [np.concatenate(p, axis=1) for p in zip(*parts)]


def independence(encoder: Path, decoder: Path, meta: dict[str, Any], seed: int = 0) -> dict[str, float]:
    """Largest difference of one set's outputs alone vs. in padded batches and other query chunks.

    The set (37 samples, 300 queries) runs alone in one call, then as row 1 of a batch of 3 padded
    to 200 samples (the other sets random, padding random) with its queries split over two decoder
    calls, the first led by 50 queries of the other rows' own. Figures: max |Δ| of memory on its
    real rows, of logits, offsets, log_sigma, and of the mean value (a fraction of the value range).
    """
    from pt_plugin.distribution import Distribution

    rng = np.random.default_rng(seed)
    sessions = (session(encoder), session(decoder))
    k, width, nq = 37, 200, 300
    pos, val = random_draw(meta, 3, width, rng)
    mask = np.arange(width)[None, :] < np.array([[5], [k], [width]])
    qpos = rng.uniform(-1, 1, (3, nq + 50, meta["pos_dim"])).astype(np.float32)
    mem1, out1 = _run(sessions, pos[1:2, :k], val[1:2, :k], mask[1:2, :k], [qpos[1:2, 50:]])
    memb, outb = _run(sessions, pos, val, mask, [qpos[:, :150], qpos[:, 150:]])
    outb = [o[1:2, 50:] for o in outb]
    diffs = {"memory": float(np.abs(mem1[0] - memb[1, :k]).max())}
    diffs.update({n: float(np.abs(a - b).max()) for n, a, b in zip(DECODER_OUTPUTS, out1, outb)})
    centers = np.asarray(meta["bin_centers"], np.float64)
    span = float(meta["value_range"][1] - meta["value_range"][0]) or 1.0
    diffs["mean_value"] = float(np.abs(Distribution(*out1, centers).mean() - Distribution(*outb, centers).mean()).max()
                                / span)
    return diffs
