"""One ONNX graph to run: plain numpy I/O, or IOBinding that can leave outputs on the device.

With IOBinding the encoder's memory stays where the session runs (GPU memory under CUDA) as an
onnxruntime OrtValue and goes straight into the decoder, so hybrid sampling copies only the small
inputs up and the decoder's small outputs down at each step, never the [B, K, D] memory.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import onnxruntime as ort

from .sessions import CUDA


def session_device(session: ort.InferenceSession) -> tuple[str, int]:
    """("cuda", device id) when the session's first provider is CUDA, else ("cpu", 0)."""
    if session.get_providers()[0] == CUDA:
        return "cuda", int(session.get_provider_options().get(CUDA, {}).get("device_id", 0))
    return "cpu", 0


class Graph:
    """A session plus how to call it; run() returns numpy arrays, or OrtValues for the outputs in `keep`."""

    def __init__(self, session: ort.InferenceSession, io_binding: bool):
        self.session = session
        self.io_binding = io_binding
        self.device, self.device_id = session_device(session)
        self.output_names = [o.name for o in session.get_outputs()]

    def run(self, feeds: Mapping[str, Any], keep: Sequence[str] = ()) -> list:
        """Outputs in graph order; feeds may be numpy arrays or OrtValues from an earlier run(keep=...)."""
        if not self.io_binding:
            return self.session.run(None, {k: to_numpy(v) for k, v in feeds.items()})
        binding = self.session.io_binding()
        for name, value in feeds.items():
            if isinstance(value, ort.OrtValue):
                binding.bind_ortvalue_input(name, value)
            else:
                binding.bind_cpu_input(name, np.ascontiguousarray(value))
        for name in self.output_names:
            if name in keep:
                binding.bind_output(name, self.device, self.device_id)
            else:
                binding.bind_output(name, "cpu")
        self.session.run_with_iobinding(binding)
        return [v if name in keep else v.numpy() for name, v in zip(self.output_names, binding.get_outputs())]

    def get_providers(self) -> list[str]:
        return self.session.get_providers()


def to_numpy(value) -> np.ndarray:
    """A numpy array of an array or OrtValue (copied to the host when it lives on a device)."""
    return value.numpy() if isinstance(value, ort.OrtValue) else value
