"""ONNX export and validation: `python -m export.onnx CHECKPOINT --out weights/NAME [--force]`.

Writes encoder.onnx and decoder.onnx (self-contained, dynamic axes batch / num_samples /
num_queries, no per-node exporter metadata) and model.json (signal, graph_io, sha256 of the graphs)
into a staging folder, checks both graphs in onnxruntime against torch over several set sizes
(with padding) and batch sizes, and moves them into place only when they pass: a failed export
leaves no loadable folder behind. Export and validation live side by side, as in optimum's exporters.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from export.checkpoint import ExportError, load_checkpoint, total_steps  # also re-exported for callers
from export.errors import int_list, reports_errors
from export.model import PixelTransformer, frozen_for_export
from export.onnx.signal import ATTENTION_OPSET, graph_io, min_onnxruntime, signal_for
from pt_plugin.metadata import sha256

ENCODER_INPUTS = ["sample_positions", "sample_values", "sample_mask"]
ENCODER_OUTPUTS = ["memory"]
DECODER_INPUTS = ["memory", "sample_mask", "query_positions"]
DECODER_OUTPUTS = ["logits", "offsets", "log_sigma"]
OPSET = 23  # 20: GELU as one standard Gelu node (issue 18); 23: each attention one standard Attention node
OPSETS = (20, 23)
EXPORT_FILES = ("encoder.onnx", "decoder.onnx", "model.json")
FORMAT_VERSION = 2  # 2: signal, graph_io and files blocks


class _Encoder(torch.nn.Module):
    def __init__(self, m: PixelTransformer):
        super().__init__()
        self.enc = m.encoder

    def forward(self, sample_positions, sample_values, sample_mask):
        return self.enc(sample_positions, sample_values, sample_mask)


class _Decoder(torch.nn.Module):
    def __init__(self, m: PixelTransformer):
        super().__init__()
        self.dec = m.decoder

    def forward(self, memory, sample_mask, query_positions):
        return self.dec(memory, sample_mask, query_positions)


def example_inputs(cfg, batch: int = 2, k: int = 5, q: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lo, hi = cfg.value_range
    pos = torch.rand(batch, k, cfg.pos_dim, generator=g) * 2 - 1
    val = lo + (hi - lo) * torch.rand(batch, k, cfg.val_dim, generator=g)
    mask = torch.ones(batch, k, dtype=torch.bool)
    mask[0, k // 2 + 1:] = False  # padding in the first set
    qpos = torch.rand(batch, q, cfg.pos_dim, generator=g) * 2 - 1
    return pos, val, mask, qpos


def _export(module, args, path: Path, inputs, outputs, dynamic, opset: int = OPSET) -> None:
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # silences "torchvision is not installed"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(module, args, dynamo=True, input_names=inputs, output_names=outputs,
                                 dynamic_shapes=dynamic, opset_version=opset, optimize=True,
                                 verbose=False)
    prog.save(str(path), external_data=False)


def model_metadata(model: PixelTransformer, ck: dict[str, Any], name: str, version: str,
                   grid: list[int] | None, metrics: dict | None, kind: str | None = None,
                   opset: int = OPSET) -> dict[str, Any]:
    """Everything the runtime (or a client in another language) needs, also mirrored into the ONNX
    metadata_props; model.json adds the sha256 of the graph files under "files"."""
    cfg = model.cfg
    train = ck["config"].get("train", {})
    signal = signal_for(train.get("data"), cfg.pos_dim, cfg.val_dim, grid, cfg.value_range, kind)
    return {
        "format_version": FORMAT_VERSION,
        "name": name,
        "version": version,
        "signal": signal.to_json(),
        "graph_io": graph_io(opset),
        "opset": opset,
        "requires_onnxruntime": min_onnxruntime(opset),
        "pos_dim": cfg.pos_dim,
        "val_dim": cfg.val_dim,
        "grid": grid,
        "value_range": list(cfg.value_range),
        "bins": cfg.bins,
        "bin_centers": model.centers.tolist(),
        "alpha": cfg.alpha,
        "architecture": {k: getattr(cfg, k) for k in ("d_model", "n_heads", "enc_layers", "dec_layers", "ffn",
                                                      "fourier_scale")},
        "parameters": sum(p.numel() for p in model.parameters()),
        "training": {"data": train.get("data"), "steps": ck.get("step"),
                     "earlier_runs": [{k: v for k, v in r.items() if k != "history"} for r in ck.get("lineage", [])],
                     "total_steps": total_steps(ck),
                     "samples_range": [train.get("min_samples"), train.get("max_samples")],
                     "num_queries": train.get("num_queries"), "batch_size": train.get("batch_size"),
                     "precision": ck.get("precision", "fp32")},  # what the weights trained in; graphs are fp32
        "metrics": metrics or {},
        "inputs": {"encoder": ENCODER_INPUTS, "decoder": DECODER_INPUTS},
        "outputs": {"encoder": ENCODER_OUTPUTS, "decoder": DECODER_OUTPUTS},
    }


def strip_node_metadata(graph) -> None:
    """Drop the exporter's per-node records (Python stack traces with the build machine's paths, ~8% of a
    file) from a graph and its subgraphs; the computation is unchanged."""
    graph.doc_string = ""
    for node in graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
        for attr in node.attribute:
            if attr.g is not None and attr.HasField("g"):
                strip_node_metadata(attr.g)
            for g in attr.graphs:
                strip_node_metadata(g)


def _attach_metadata(path: Path, meta: dict[str, Any]) -> None:
    import onnx

    m = onnx.load(str(path))
    strip_node_metadata(m.graph)
    for fn in m.functions:
        for node in fn.node:
            del node.metadata_props[:]
            node.doc_string = ""
    del m.metadata_props[:]
    entry = m.metadata_props.add()
    entry.key, entry.value = "pt_plugin", json.dumps(meta)
    m.producer_name = "pt-plugin-export"
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


def export(model: PixelTransformer, ck: dict[str, Any], out: Path, name: str, version: str = "0.1.0",
           grid: list[int] | None = None, metrics: dict | None = None, force: bool = False,
           kind: str | None = None, opset: int = OPSET) -> dict[str, Any]:
    """Write encoder.onnx, decoder.onnx and model.json into `out` at `opset` (from 23 each attention is one
    standard Attention node); returns the metadata."""
    if opset not in OPSETS:
        raise ExportError(f"opset {opset} is not one this exporter writes; expected one of {OPSETS}")
    files = [out / "encoder.onnx", out / "decoder.onnx", out / "model.json"]
    existing = [str(f) for f in files if f.exists()]
    if existing and not force:
        raise ExportError(f"{out} already holds an export ({', '.join(existing)}); pass --force to replace it")
    out.mkdir(parents=True, exist_ok=True)
    pos, val, mask, qpos = example_inputs(model.cfg)
    batch, ns, nq = torch.export.Dim("batch"), torch.export.Dim("num_samples"), torch.export.Dim("num_queries")
    enc, dec = _Encoder(model).eval(), _Decoder(model).eval()
    with torch.no_grad():
        mem = enc(pos, val, mask)
    meta = model_metadata(model, ck, name, version, grid, metrics, kind, opset)
    tmp = [f.with_suffix(".onnx.tmp") for f in files[:2]]
    # the folded query projections as initializers (issue 18); from opset 23 one Attention node per attention
    with frozen_for_export(model, attention_op=opset >= ATTENTION_OPSET):
        _export(enc, (pos, val, mask), tmp[0], ENCODER_INPUTS, ENCODER_OUTPUTS,
                {"sample_positions": {0: batch, 1: ns}, "sample_values": {0: batch, 1: ns},
                 "sample_mask": {0: batch, 1: ns}}, opset)
        _export(dec, (mem, mask, qpos), tmp[1], DECODER_INPUTS, DECODER_OUTPUTS,
                {"memory": {0: batch, 1: ns}, "sample_mask": {0: batch, 1: ns},
                 "query_positions": {0: batch, 1: nq}}, opset)
    for t in tmp:
        _attach_metadata(t, meta)
    meta["files"] = {f.name: f"sha256:{sha256(t)}" for t, f in zip(tmp, files[:2])}
    for t, f in zip(tmp, files[:2]):
        t.replace(f)
    files[2].write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def validate(model: PixelTransformer, out: Path, sizes=(1, 7, 64, 2048), batches=(1, 3),
             num_queries: int = 50, seed: int = 0) -> float:
    """Run both graphs in onnxruntime against torch; returns the largest absolute difference.

    Each batch has sets of different sizes (the largest is `size`, others padded), so padding
    and masks are exercised. Raises ExportError on wrong names, shapes or values.
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    enc = ort.InferenceSession(str(out / "encoder.onnx"), so, providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(out / "decoder.onnx"), so, providers=["CPUExecutionProvider"])
    got = ([i.name for i in enc.get_inputs()], [o.name for o in enc.get_outputs()],
           [i.name for i in dec.get_inputs()], [o.name for o in dec.get_outputs()])
    want = (ENCODER_INPUTS, ENCODER_OUTPUTS, DECODER_INPUTS, DECODER_OUTPUTS)
    if got != want:
        raise ExportError(f"graph input/output names {got} differ from the contract {want}")
    cfg = model.cfg
    g = torch.Generator().manual_seed(seed)
    worst = 0.0
    for size in sizes:
        for b in batches:
            pos = torch.rand(b, size, cfg.pos_dim, generator=g) * 2 - 1
            lo, hi = cfg.value_range
            val = lo + (hi - lo) * torch.rand(b, size, cfg.val_dim, generator=g)
            lengths = torch.tensor([max(1, size - 3 * i) for i in range(b)])
            mask = torch.arange(size)[None, :] < lengths[:, None]
            qpos = torch.rand(b, num_queries, cfg.pos_dim, generator=g) * 2 - 1
            with torch.no_grad():
                mem_t = model.encoder(pos, val, mask)
                ref = model.decoder(mem_t, mask, qpos)
            (mem_o,) = enc.run(None, {"sample_positions": pos.numpy(), "sample_values": val.numpy(),
                                      "sample_mask": mask.numpy()})
            outs = dec.run(None, {"memory": mem_o, "sample_mask": mask.numpy(), "query_positions": qpos.numpy()})
            real = mask.numpy()[..., None]
            pairs = [("memory", np.where(real, mem_t.numpy(), 0), np.where(real, mem_o, 0))]
            pairs += [(n, r.numpy(), o) for n, r, o in zip(DECODER_OUTPUTS, ref, outs)]
            for name, r, o in pairs:
                if r.shape != o.shape:
                    raise ExportError(f"{name}: onnxruntime shape {o.shape} != torch {r.shape} "
                                      f"(set size {size}, batch {b})")
                d = float(np.abs(r - o).max())
                worst = max(worst, d)
            print(f"  parity set size {size:5d} batch {b}: max |torch - onnxruntime| = "
                  f"{max(float(np.abs(r - o).max()) for _, r, o in pairs):.2e}")
    return worst


def read_metrics(path: Path) -> dict:
    """A JSON object for model.json's metrics: a report of `python -m export.evaluate` is summarised by the
    protocol that wrote it (export.evaluate.report); any other JSON object is kept as it is."""
    from export.evaluate.report import summary  # the evaluation room, only when a report is given

    try:
        metrics = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ExportError(f"--metrics {path} could not be read as JSON: {e}") from None
    if isinstance(metrics, dict) and "settings" in metrics and "sizes" in metrics:
        return summary(metrics)
    return metrics


@reports_errors
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.onnx", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--out", required=True, help="folder to write, e.g. weights/fashion-mnist")
    p.add_argument("--name", help="model name (default: the folder name)")
    p.add_argument("--version", default="0.1.0")
    p.add_argument("--grid", help="training grid of the signal in array order, e.g. 28,28 (images: H,W; videos: T,H,W)")
    p.add_argument("--kind", choices=["image", "curve", "volume", "video"],
                   help="signal kind (default: from the training data)")
    p.add_argument("--metrics", help="metrics to record in model.json: the metrics.json of python -m export.evaluate "
                                     "(summarised) or any JSON object")
    p.add_argument("--force", action="store_true", help="replace an existing export")
    p.add_argument("--tolerance", type=float, default=1e-4)
    p.add_argument("--sizes", default="1,7,64,2048")
    p.add_argument("--opset", type=int, choices=OPSETS, default=OPSET,
                   help=f"ONNX opset (default {OPSET}: each attention one standard Attention node, onnxruntime >= "
                        f"{min_onnxruntime(OPSET)}; 20: MatMul, Softmax, MatMul, onnxruntime >= 1.18)")
    a = p.parse_args(argv)
    out = Path(a.out)
    model, ck = load_checkpoint(a.checkpoint)
    grid = int_list(a.grid, "--grid") if a.grid else None
    metrics = read_metrics(Path(a.metrics)) if a.metrics else None
    existing = [f for f in EXPORT_FILES if (out / f).exists()]
    if existing and not a.force:
        raise ExportError(f"{out} already holds an export ({', '.join(existing)}); pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}-", dir=out.parent) as staging:
        meta = export(model, ck, Path(staging), a.name or out.name, a.version, grid, metrics, True, a.kind, a.opset)
        worst = validate(model, Path(staging), sizes=int_list(a.sizes, "--sizes"))
        ok = worst <= a.tolerance
        print(f"parity {'OK' if ok else 'FAILED'}: largest difference {worst:.2e} (tolerance {a.tolerance:.0e})")
        if not ok:
            print(f"error: nothing written to {out}: the graphs do not compute what the checkpoint does",
                  file=sys.stderr)
            return 1
        out.mkdir(parents=True, exist_ok=True)
        for f in EXPORT_FILES:  # model.json last: a folder is loadable only once its graphs are in place
            (Path(staging) / f).replace(out / f)
    print(f"wrote {out}/encoder.onnx, decoder.onnx, model.json ({meta['parameters']} parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
