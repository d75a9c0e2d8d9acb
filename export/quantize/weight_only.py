"""Weight-only int8: the int8 variant for models whose static int8 misses the parity gate even with a third
of its MatMuls back in float32 (the emoji palette model, the shapes SDF model).

Static int8 (export.quantize.static_int8) fixes one activation scale per MatMul input from calibration data;
on these models the activations of a few sets fall far from the calibrated range and the mean value moves
by 0.05–0.12 of the value range. Here only the weights are fixed in advance: every MatMul with a constant
weight becomes onnxruntime's MatMulNBits (contrib op) with 8-bit symmetric weights in blocks of BLOCK_SIZE
input features, each block with its own scale. ACCURACY_LEVEL 4 has the kernel quantize the activation at
run time per row and per block of that row, so a row's result depends on that row alone: the variant stays
batch-independent. (Accuracy level 1, with float32 compute, came out about 2.8e-5 apart between a set run
alone and the same set in a batch, over the 1e-6 that int8 variants must meet.) Graphs are about 3× smaller.
They are slower than float32 on a CPU without VNNI (measured by `benchmarks/mean_inference.py`).
The MatMuls that static int8 leaves float32 stay float32 here too.
"""
from __future__ import annotations

import logging
from pathlib import Path

from export.quantize.graphs import tag
from export.quantize.static_int8 import float32_matmuls

BITS = 8
BLOCK_SIZE = 16  # input features per weight scale: on emoji, 16 measured 0.022 of the range at worst, 32 0.037
ACCURACY_LEVEL = 4  # int8 compute, activations quantized per row and block: batch-independent
MIN_ONNXRUNTIME = "1.22"  # the first release with an x64 CPU kernel for 8-bit MatMulNBits (4-bit only before)
DESCRIPTION = (f"weight-only int8: onnxruntime MatMulNBits, {BITS}-bit symmetric weights in blocks of {BLOCK_SIZE} "
               f"input features, accuracy_level {ACCURACY_LEVEL} (activations quantized per row and block at run "
               "time, batch-independent)")
METHOD = DESCRIPTION + "; used because static int8 missed the gate"  # as the int8 fallback of the encoder/decoder


def make_int8_weight_only(model, exclude: list[str]):
    """A copy of the ONNX `model` with every constant-weight MatMul not in `exclude` as an 8-bit MatMulNBits."""
    from onnxruntime.quantization import QuantFormat
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    config = DefaultWeightOnlyQuantConfig(block_size=BLOCK_SIZE, is_symmetric=True, accuracy_level=ACCURACY_LEVEL,
                                          bits=BITS, quant_format=QuantFormat.QOperator)
    logging.disable(logging.INFO)  # one "skip to quantize" line per node otherwise
    try:
        quantizer = MatMulNBitsQuantizer(model, bits=BITS, block_size=BLOCK_SIZE, is_symmetric=True,
                                         accuracy_level=ACCURACY_LEVEL, nodes_to_exclude=exclude,
                                         algo_config=config)
        quantizer.process()
    finally:
        logging.disable(logging.NOTSET)
    return quantizer.model.model


def make_weight_only(src: Path, dst: Path) -> None:
    """Weight-only int8 of the graph at `src`, written to `dst`; the MatMuls static int8 skips stay float32."""
    import onnx

    model = onnx.load(str(src))
    out = make_int8_weight_only(model, float32_matmuls(model))
    tag(out, "int8")
    onnx.save(out, str(dst))
