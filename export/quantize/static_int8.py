"""Static int8 for the CPU: which MatMuls are quantized, and onnxruntime's quantize_static run on them.

MatMul weights int8 per output channel in a 7-bit range (reduce_range, so that AVX2 machines without VNNI
cannot saturate their u8·s8 products and give other figures than the ones recorded); the activation entering
each quantized MatMul uint8 with a FIXED scale and zero point, calibrated (min/max) on the sets of
export.quantize.calibration. Fixed scales make a row's result its own: a set's outputs do not depend on the
other sets, the padding or the other queries of a call (dynamic quantization took one scale per input tensor at
run time, so they did). The format is QDQ: onnxruntime fuses each QuantizeLinear/DequantizeLinear pair around a
MatMul into MatMulIntegerToFloat (QOperator's QLinearMatMul also quantizes the output: no faster here, larger
error). Stay float32 (`float32_matmuls`): MatMuls whose constant weight has fewer than MIN_INT8_ROWS input
features (the Fourier projection of positions, the value embedding: they cost nothing and quantizing them triples
the error of the mean), MatMuls of two activations (attention scores and weighting: softmax inputs and the -3e4
mask fill), and every other op (LayerNorm, Softmax, GELU, the sigma head's log/exp).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from export.quantize.graphs import tag

MIN_INT8_ROWS = 16
METHOD = ("onnxruntime.quantization.quantize_static (QDQ, MinMax calibration): MatMul weights int8 per channel, "
          "reduce_range (7 bit), uint8 activations with fixed calibrated scales (batch-independent); MatMuls with "
          f"< {MIN_INT8_ROWS} input features and activation-by-activation MatMuls kept float32")


def _small_matmuls(model) -> list[str]:
    """MatMul nodes whose constant weight has fewer than MIN_INT8_ROWS input features."""
    dims = {t.name: list(t.dims) for t in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1
            and len(dims.get(n.input[1], [])) >= 2 and dims[n.input[1]][-2] < MIN_INT8_ROWS]


def _activation_matmuls(model) -> list[str]:
    """MatMul nodes with no constant operand (attention scores and weighting)."""
    consts = {t.name for t in model.graph.initializer}
    consts |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1
            and n.input[1] not in consts]


def float32_matmuls(model) -> list[str]:
    """The MatMuls every int8 variant leaves float32 (static int8 here, weight-only int8 too)."""
    return _small_matmuls(model) + _activation_matmuls(model)


class Feeds:
    """A CalibrationDataReader over a list of input dicts; set_range lets the calibrator take one at a time."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self.feeds, self.i, self.end = feeds, 0, len(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        self.i += 1
        return self.feeds[self.i - 1] if self.i <= self.end else None

    def set_range(self, start_index: int, end_index: int) -> None:
        self.i, self.end = start_index, min(end_index, len(self.feeds))

    def rewind(self) -> None:
        self.i, self.end = 0, len(self.feeds)

    def __len__(self) -> int:
        return len(self.feeds)


def make_int8(src: Path, dst: Path, feeds: list[dict[str, np.ndarray]]) -> None:
    """Static int8 of the graph at `src`, written to `dst`: activation scales fixed by min/max calibration on
    `feeds` (the graph's inputs), so each row's result is its own."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    exclude = float32_matmuls(onnx.load(str(src)))
    extra = {"MatMulConstBOnly": True, "OpTypesToExcludeOutputQuantization": ["MatMul"],
             "CalibStridedMinMax": 1}  # ranges merged batch by batch: bounded memory
    logging.disable(logging.WARNING)  # "consider pre-processing": shapes are static enough here
    try:
        quantize_static(str(src), str(dst), Feeds(feeds), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=["MatMul", "Gemm"], nodes_to_exclude=exclude, per_channel=True,
                        reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, extra_options=extra)
    finally:
        logging.disable(logging.NOTSET)
    out = onnx.load(str(dst))
    tag(out, "int8")
    onnx.save(out, str(dst))
