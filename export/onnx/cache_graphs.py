"""The causal buffer's graphs: `python -m export.onnx.cache_graphs CHECKPOINT --into weights/NAME`.

Adds context.onnx and step.onnx (export.cache) beside an export's encoder.onnx and decoder.onnx, which stay as
they are, and, where the folder has an int8 variant, their int8 copies (export.quantize.cache_int8):
context.onnx encodes S once into per-layer keys and values and answers the first queries; step.onnx adds drawn
tokens over those caches and answers the next queries. Both are checked in onnxruntime against the torch
functions they were traced from (padded sets, several cache and token counts) and against the teacher-forced
causal forward, then recorded in model.json ("cache": files, layout, the step loop) with their sha256. The
checkpoint must be the one the folder's graphs came from (its parameter count and bins are compared).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from export.cache import cached_step, context_caches
from export.checkpoint import ExportError, load_checkpoint
from export.errors import UsageError, reports_errors
from export.model import PixelTransformer, frozen_for_export
from export.onnx.graphs import _attach_metadata, _export, example_inputs
from export.onnx.signal import ATTENTION_OPSET
from pt_plugin.metadata import sha256

CACHE_FILES = ("context.onnx", "step.onnx")
CACHES = ["enc_keys", "enc_values", "dec_keys", "dec_values"]
LAW = ["logits", "offsets", "log_sigma"]
CONTEXT_INPUTS = ["sample_positions", "sample_values", "sample_mask", "query_positions"]
STEP_OUTPUTS = [f"new_{c}" for c in CACHES] + LAW


def cache_inputs(enc_layers: int, dec_layers: int) -> list[str]:
    """step.onnx's cache inputs, one per layer: enc_keys_0.., enc_values_0.., dec_keys_0.., dec_values_0.."""
    return [f"{c}_{i}" for c, n in zip(CACHES, (enc_layers, enc_layers, dec_layers, dec_layers)) for i in range(n)]


def step_input_names(model: PixelTransformer) -> list[str]:
    cfg = model.cfg
    return ["token_positions", "token_values", *cache_inputs(cfg.enc_layers, cfg.dec_layers), "cache_mask",
            "query_positions"]


class _Context(torch.nn.Module):
    def __init__(self, m: PixelTransformer):
        super().__init__()
        self.m = m

    def forward(self, sample_positions, sample_values, sample_mask, query_positions):
        return context_caches(self.m, sample_positions, sample_values, sample_mask, query_positions)


class _Step(torch.nn.Module):
    def __init__(self, m: PixelTransformer):
        super().__init__()
        self.m = m

    def forward(self, token_positions, token_values, caches, cache_mask, query_positions):
        return cached_step(self.m, token_positions, token_values, caches, cache_mask, query_positions)


def step_inputs(model: PixelTransformer, batch: int, k: int, n: int, q: int, seed: int = 0) -> tuple:
    """Step inputs over a context of k samples (the first set padded): caches from context_caches, one tensor per
    layer."""
    pos, val, mask, qpos = example_inputs(model.cfg, batch, k, q, seed)
    with torch.no_grad():
        stacked = context_caches(model, pos, val, mask, qpos)[:4]
    tpos, tval, _, _ = example_inputs(model.cfg, batch, n, q, seed + 1)
    return (tpos, tval, tuple(layer for c in stacked for layer in c), mask, qpos)


def flat(inputs: tuple) -> list:
    """step_inputs as the graph's flat list of tensors."""
    return [*inputs[:2], *inputs[2], *inputs[3:]]


def cache_block(model: PixelTransformer) -> dict[str, Any]:
    """model.json's "cache": the graphs, the cache layout and the step loop, for any client."""
    cfg = model.cfg
    shape = "[layers, batch, heads, T, head_dim]"
    return {
        "files": list(CACHE_FILES),
        "layout": {"enc_keys": f"float32 {shape}, layers = {cfg.enc_layers} encoder layers",
                   "enc_values": "as enc_keys",
                   "dec_keys": f"float32 {shape}, layers = {cfg.dec_layers} decoder layers",
                   "dec_values": "as dec_keys", "heads": cfg.n_heads, "head_dim": cfg.d_model // cfg.n_heads,
                   "step_inputs": "step.onnx takes each layer's [batch, heads, T, head_dim] slice as its own input "
                                  "(enc_keys_0, ..., dec_values_{Ld-1}): a client keeps [layers, ...] arrays with room "
                                  "for every token it will add and feeds the slices without copying",
                   "cache_mask": "bool [batch, T]: true = a real token (sample or drawn), false = padding or a "
                                 "slot not filled yet"},
        "context": {"inputs": CONTEXT_INPUTS, "outputs": CACHES + LAW,
                    "does": "encodes S (as encoder.onnx) into every layer's keys and values; the law at "
                            "query_positions given S, as decoder.onnx gives it"},
        "step": {"inputs": step_input_names(model), "outputs": STEP_OUTPUTS,
                 "does": "n new tokens (drawn positions and values, in drawing order; each attends to the cached "
                         "tokens, to the new tokens before it and to itself) over caches of T tokens: their keys "
                         "and values (append them along T), and the law at query_positions given every cached "
                         "and new token"},
        "loop": ["context: caches, mask = S's mask, law at the first position(s) to draw",
                 "draw their values from the law (graph_io.distribution.sample)",
                 "step with those tokens and the next position(s) to draw as query_positions; or, when the buffer "
                 "(tokens added since the last context call) would then hold more than buffer_size tokens, call "
                 "context again on S plus every token drawn so far (one set per sample) as the new caches, the "
                 "buffer empty",
                 "write new_* into the caches after the filled part along T and set cache_mask there; repeat until "
                 "every position is drawn",
                 "the last step's query_positions may be any position: its law is ignored"],
        "exact": "one token per step draws from p(signal | S) in the buffer's order exactly; several per step draw "
                 "them independently given the tokens before the step",
    }


def export_cache(model: PixelTransformer, out: Path, opset: int = 20) -> dict[str, str]:
    """Write context.onnx and step.onnx into `out` at `opset` (the folder's: from 23, context.onnx's attentions
    are standard Attention nodes; step.onnx keeps MatMul, Softmax, MatMul, which reads the caches without joining
    them to the new tokens); returns their sha256 entries."""
    ctx_dims = {"sample_positions": {0: "batch", 1: "num_samples"}, "sample_values": {0: "batch", 1: "num_samples"},
                "sample_mask": {0: "batch", 1: "num_samples"}, "query_positions": {0: "batch", 1: "num_queries"}}
    names = {"batch": torch.export.Dim("batch"), "num_samples": torch.export.Dim("num_samples"),
             "num_queries": torch.export.Dim("num_queries"), "tokens": torch.export.Dim("tokens"),
             "cache": torch.export.Dim("cache")}
    dims = lambda spec: {a: names[n] for a, n in spec.items()}  # noqa: E731
    cfg = model.cfg
    step_dims = {"token_positions": dims({0: "batch", 1: "tokens"}), "token_values": dims({0: "batch", 1: "tokens"}),
                 "caches": tuple(dims({0: "batch", 2: "cache"}) for _ in cache_inputs(cfg.enc_layers, cfg.dec_layers)),
                 "cache_mask": dims({0: "batch", 1: "cache"}), "query_positions": dims({0: "batch", 1: "num_queries"})}
    with frozen_for_export(model, attention_op=opset >= ATTENTION_OPSET):
        _export(_Context(model).eval(), example_inputs(cfg, 2, 5, 3), out / "context.onnx", CONTEXT_INPUTS,
                CACHES + LAW, {k: dims(v) for k, v in ctx_dims.items()}, opset)
        _export(_Step(model).eval(), step_inputs(model, 2, 5, 2, 3), out / "step.onnx", step_input_names(model),
                STEP_OUTPUTS, step_dims, opset)
    for f in CACHE_FILES:
        _attach_metadata(out / f, {"graph": f, "cache": cache_block(model)})
    return {f: f"sha256:{sha256(out / f)}" for f in CACHE_FILES}


def _session(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def validate_cache(model: PixelTransformer, folder: Path, contexts=(1, 9, 300), tokens=(1, 4)) -> float:
    """Largest |onnxruntime − torch| over every output of both graphs (batches of 2 with a padded set)."""
    ctx, step = _session(folder / "context.onnx"), _session(folder / "step.onnx")
    worst = 0.0
    for k in contexts:
        pos, val, mask, qpos = example_inputs(model.cfg, 2, k, 7, seed=k)
        with torch.no_grad():
            want = context_caches(model, pos, val, mask, qpos)
        got = ctx.run(None, dict(zip(CONTEXT_INPUTS, (t.numpy() for t in (pos, val, mask, qpos)))))
        worst = max(worst, _worst(want, got, CACHES + LAW, mask))
        for n in tokens:
            inputs = step_inputs(model, 2, k, n, 7, seed=k + n)
            with torch.no_grad():
                want = cached_step(model, *inputs)
            got = step.run(None, dict(zip(step_input_names(model), (t.numpy() for t in flat(inputs)))))
            worst = max(worst, _worst(want, got, STEP_OUTPUTS, None))
        print(f"  cache parity |S| = {k:4d}: max |torch - onnxruntime| so far {worst:.2e}")
    return worst


def _worst(want, got, names, mask) -> float:
    """Largest difference; context caches compared at real tokens only (padding rows mean nothing)."""
    worst = 0.0
    for name, w, g in zip(names, want, got):
        w = w.numpy()
        if w.shape != g.shape:
            raise ExportError(f"{name}: onnxruntime shape {g.shape} != torch {w.shape}")
        if mask is not None and name in CACHES:
            real = mask.numpy()[None, :, None, :, None]
            w, g = np.where(real, w, 0), np.where(real, g, 0)
        worst = max(worst, float(np.abs(w - g).max()))
    return worst


def add_to_folder(model: PixelTransformer, folder: Path, tolerance: float = 1e-4,
                  buffer_size: int | None = None, autoregressive: int | None = None) -> dict[str, Any]:
    """Export, check and record the cache graphs in an export folder; nothing changes there unless they pass.
    buffer_size: the sampler's default bound on the buffer before it encodes the grown set again (None: no bound
    recorded); at most the buffer the weights were trained with (train.buffer_max), smaller where measured better.
    autoregressive: the cached sampler's default number of positions drawn, the rest the mean (None: every
    position; for signals of tens of thousands of positions)."""
    meta_path = folder / "model.json"
    meta = json.loads(meta_path.read_text())
    params = sum(p.numel() for p in model.parameters())
    if meta.get("parameters") != params or meta.get("bins") != model.cfg.bins:
        raise UsageError(f"{folder} holds a model of {meta.get('parameters')} parameters and {meta.get('bins')} "
                         f"bins; the checkpoint has {params} and {model.cfg.bins}: expected the checkpoint its "
                         "graphs were exported from")
    opset = int(meta.get("opset", 20))  # the folder's encoder and decoder opset (20 before model.json named it)
    with tempfile.TemporaryDirectory(prefix=".cache-", dir=folder) as staging:
        files = export_cache(model, Path(staging), opset)
        worst = validate_cache(model, Path(staging))
        if worst > tolerance:
            raise ExportError(f"cache graphs differ from torch by {worst:.2e} (tolerance {tolerance:.0e}); "
                              f"nothing written to {folder}")
        for f in CACHE_FILES:
            (Path(staging) / f).replace(folder / f)
    meta["cache"] = {**cache_block(model), "parity_max_abs_diff": worst, "opset": opset}
    if buffer_size:
        meta["cache"]["buffer_size"] = int(buffer_size)
        meta["cache"]["buffer"] = ("a sampler encodes S and every drawn value again as the new context "
                                   "(context.onnx) before the buffer (tokens stepped since the last context call) "
                                   "would hold more than buffer_size tokens; the draws' law drifts from the "
                                   "re-encoding sampler's as the buffer grows (model card)")
    if autoregressive:
        meta["cache"]["autoregressive"] = int(autoregressive)
    meta.setdefault("files", {}).update(files)
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    if "int8" in meta.get("variants", {}):  # its cache graphs are made again from the new ones (or dropped)
        from export.quantize.cache_int8 import add_int8_cache

        add_int8_cache(folder, force=True)
    return meta["cache"]


@reports_errors
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.onnx.cache_graphs", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--into", required=True, help="the export folder of this checkpoint, e.g. weights/fashion-mnist")
    p.add_argument("--tolerance", type=float, default=1e-4)
    p.add_argument("--buffer-size", type=int, default=None,
                   help="the sampler's default bound on the causal buffer, recorded in model.json (default: the "
                        "checkpoint's train.buffer_max; 0 = none recorded)")
    p.add_argument("--autoregressive", type=int, default=None, metavar="N",
                   help="the cached sampler's default number of positions drawn, the rest the mean, recorded in "
                        "model.json (default: none recorded, every position drawn)")
    a = p.parse_args(argv)
    if a.buffer_size is not None and a.buffer_size < 0:
        raise UsageError(f"--buffer-size must be >= 0, got {a.buffer_size}")
    if a.autoregressive is not None and a.autoregressive < 1:
        raise UsageError(f"--autoregressive must be >= 1, got {a.autoregressive}")
    folder = Path(a.into)
    if not (folder / "model.json").is_file():
        raise UsageError(f"{folder} holds no model.json; expected an export folder (python -m export.onnx)")
    model, ck = load_checkpoint(a.checkpoint)
    trained = (ck.get("config") or {}).get("train", {}).get("buffer_max") or None
    block = add_to_folder(model, folder, a.tolerance, trained if a.buffer_size is None else a.buffer_size,
                          a.autoregressive)
    print(f"wrote {folder}/context.onnx, step.onnx and model.json's cache block (parity "
          f"{block['parity_max_abs_diff']:.2e}); a bundled model needs python -m export.onnx.registry")
    return 0


if __name__ == "__main__":
    sys.exit(main())
