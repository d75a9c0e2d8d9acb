"""The `signal` and `graph_io` blocks of model.json: what the numbers mean, and how to use the graphs
from any language with onnxruntime and model.json alone (no pt_plugin code needed)."""
from __future__ import annotations

from typing import Any

from export.datasets import dataset
from export.errors import UsageError
from pt_plugin.signal import KINDS, Signal

AXES = {"image": ("x", "y"), "curve": ("x",), "video": ("x", "y", "t"), "volume": ("x", "y", "z")}
UNITS = {"image": "intensity in [0, 1]", "video": "intensity in [0, 1]", "curve": "function value y(x)",
         "volume": "signed distance (negative inside), in the units of the [-1, 1] position cube"}


def signal_for(data: str | None, pos_dim: int, val_dim: int, grid: list[int] | None,
               value_range: tuple[float, float], kind: str | None = None) -> Signal:
    """The signal a model trained on `data` describes: its data set's kind (export.datasets), or `kind` when
    given; a checkpoint that names no data gets the kind its position dimension suggests."""
    by_dims = {1: "curve", 2: "image", 3: "volume"}.get(pos_dim, "image")
    kind = kind or (dataset(data).kind if data else by_dims)
    if kind not in KINDS:
        raise UsageError(f"signal kind must be one of {', '.join(KINDS)}, got {kind!r}")
    axes = AXES[kind]
    if len(axes) != pos_dim:
        raise UsageError(f"a {kind} has {len(axes)} position axes ({', '.join(axes)}), the model has pos_dim {pos_dim}")
    if kind == "curve":
        channels = ("y",)
    elif kind == "volume":
        channels = ("sdf",)
    else:
        channels = {1: ("gray",), 3: ("r", "g", "b")}.get(val_dim, tuple(f"c{i}" for i in range(val_dim)))
    if len(channels) != val_dim:
        raise UsageError(f"a {kind} model has {len(channels)} value channels, this one val_dim {val_dim}")
    return Signal(kind, axes, tuple(grid) if grid else None, channels, UNITS[kind], tuple(value_range))


ATTENTION_OPSET = 23  # from here the exporter writes scaled_dot_product_attention as one ONNX Attention node


def min_onnxruntime(opset: int) -> str:
    """The first onnxruntime release that runs graphs of this opset on CPU (1.23: the Attention-23 CPU kernel)."""
    return "1.23" if opset >= ATTENTION_OPSET else "1.18"


def graph_io(opset: int = 20) -> dict[str, Any]:
    """How to call encoder.onnx and decoder.onnx (exported at `opset`) and read their outputs (the runtime follows
    exactly this), and what model.json's other fields and demo.npz hold."""
    return {
        "positions": ("float32 in [-1, 1], one column per signal.axes entry in that order; on a grid of n cells "
                      "along an axis, cell i sits at (i + 0.5) / n * 2 - 1 (align_corners=False, every axis). "
                      "signal.grid and array shapes are in array order, the reverse of axes ([H, W] for (x, y))"),
        "values": "float32, one column per signal.channels entry, inside value_range",
        "encoder": {
            "inputs": {"sample_positions": "float32 [batch, num_samples, pos_dim]",
                       "sample_values": "float32 [batch, num_samples, val_dim]",
                       "sample_mask": "bool [batch, num_samples]: true = a real sample, false = padding"},
            "outputs": {"memory": "float32 [batch, num_samples, d_model]; rows of padding carry no meaning"}},
        "decoder": {
            "inputs": {"memory": "the encoder's output as it is",
                       "sample_mask": "the same mask the encoder was given",
                       "query_positions": "float32 [batch, num_queries, pos_dim]"},
            "outputs": {"logits": "float32 [batch, num_queries, bins]",
                        "offsets": "float32 [batch, num_queries, bins, val_dim], in value units",
                        "log_sigma": "float32 [batch, num_queries, bins], natural log of a standard deviation"}},
        "padding": ("sets of different sizes share a batch: pad each to the longest with any finite position and "
                    "value and mask=false; every set needs at least one real sample (a set that is all padding gives "
                    "finite numbers that mean nothing); queries never interact, so any number of them can be split "
                    "into several decoder calls"),
        "distribution": {
            "probs": "q[b] = softmax(logits) over the last axis",
            "component_means": "m[b] = bin_centers[b] + offsets[..., b, :]",
            "sigmas": "s[b] = exp(log_sigma[..., b]), the same for every value dimension",
            "mean": "sum_b q[b] * m[b]",
            "variance": ("sum_b q[b] * (m[b]^2 + s[b]^2) - mean^2, per value dimension, taken around the unclipped "
                         "mean (floored at 0)"),
            "std": "sqrt(variance), not clipped",
            "log_prob": "log sum_b q[b] * N(v; m[b], s[b]^2 I), natural log, summed over value dimensions",
            "sample": "b ~ q, then m[b] + s[b] * eps with eps ~ N(0, I)",
            "clip": ("the mean and each draw are clipped to value_range after they are computed; the variance and std "
                     "use the unclipped mean and are not clipped"),
            "precision": ("pt_plugin computes softmax and the mixture in float64 from the graphs' float32 outputs; "
                          "float32 arithmetic agrees with it within about 1e-6"),
        },
        "fields": {
            "bin_centers": "[bins][val_dim] numbers: c[b], the centre of bin b in value units",
            "pos_dim, val_dim, grid, value_range": ("repeat len(signal.axes), len(signal.channels), signal.grid and "
                                                    "signal.value_range; they must agree (pt_plugin refuses a "
                                                    "model.json where they differ), so read either"),
            "grid": ("the training grid in array order, or null for a continuous signal (curves): "
                     "pt_plugin's grid helpers then take a shape, cell i of n at (i + 0.5) / n * 2 - 1, "
                     "so the ends -1 and 1 are not queried"),
            "alpha": "the weight of the Gaussian term in the training loss; not needed at inference",
            "architecture": ("the sizes the graphs were built with (d_model, n_heads, layers, ffn, Fourier scale); "
                             "informational: per-axis Fourier scales and every weight are baked into the graphs"),
            "variants": ("reduced-precision graphs (int8, fp16) with the parity figures they passed against float32, "
                         "measured with the onnxruntime and provider named in parity (Python, CPU); other runtimes' "
                         "int8 kernels round differently"),
            "demo.npz": ("optional, next to model.json: `truth` float32 [*grid, val_dim] in array order (images, "
                         "videos, shapes) and/or dense true points `positions` [N, pos_dim] and `values` "
                         "[N, val_dim] (curves, shapes)"),
        },
        "runtime": (f"onnxruntime >= {min_onnxruntime(opset)} runs the fp32 graphs (ONNX opset {opset}, IR version 10"
                    + ("; each attention is one standard Attention node" if opset >= ATTENTION_OPSET else "")
                    + "); model.json's requires_onnxruntime says the same, and a variant that needs more names it in "
                    "its own requires_onnxruntime"),
    }
