"""The files a variant is written to, the tag that names its precision inside them, and CPU sessions to run them."""
from __future__ import annotations

from pathlib import Path

ROLES = ("encoder", "decoder")


def float32_graphs(folder: Path) -> tuple[Path, Path]:
    """The float32 encoder and decoder of an export folder (written by export.onnx.graphs): every variant's source."""
    return folder / "encoder.onnx", folder / "decoder.onnx"


def variant_files(precision: str) -> list[str]:
    """encoder.<precision>.onnx, decoder.<precision>.onnx: the names pt_plugin.load looks for."""
    return [f"{role}.{precision}.onnx" for role in ROLES]


def tag(model, precision: str) -> None:
    """Name the precision in the ONNX model's metadata (pt_plugin_precision), where pt_plugin reads it back."""
    entry = model.metadata_props.add()
    entry.key, entry.value = "pt_plugin_precision", precision


def session(path: Path):
    """An onnxruntime session of one graph on the CPU, warnings off: parity and calibration run there."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
