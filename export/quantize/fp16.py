"""fp16 for the GPU: weights and compute in float16, inputs and outputs float32.

onnxconverter-common's convert_float_to_float16 with keep_io_types=True; constants beyond float16's range are
clamped to ±1e4 (e.g. the -3e4 attention-mask fill). onnxruntime's CPU provider runs these graphs too, slowly:
the parity check runs there.
"""
from __future__ import annotations

import warnings
from pathlib import Path

from export.errors import ExportError
from export.quantize.graphs import tag

METHOD = ("onnxconverter_common.float16.convert_float_to_float16(keep_io_types=True): float16 weights "
          "and compute, float32 inputs and outputs")


def make_fp16(src: Path, dst: Path) -> None:
    """The float16 copy of the graph at `src`, checked by onnx and written to `dst`."""
    import onnx
    try:
        from onnxconverter_common import float16
    except ImportError:
        raise ExportError("fp16 needs onnxconverter-common: pip install onnxconverter-common") from None
    model = onnx.load(str(src))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the float32 number 1e-10 will be truncated to 1e-07" (weights, mask fill)
        out = float16.convert_float_to_float16(model, keep_io_types=True)
    tag(out, "fp16")
    onnx.checker.check_model(out)
    onnx.save(out, str(dst))
