"""pt-plugin: PixelTransformer (Tulsiani & Gupta, ICML 2021) as two ONNX graphs and a numpy API.

    import pt_plugin
    model = pt_plugin.load()                      # the bundled Fashion-MNIST model, offline
    pos, val = pt_plugin.observe_random(image, 64, seed=0)
    mean = model.mean_image(pos, val)             # [28, 28, 1]
    samples = model.sample_images(pos, val, num_samples=3, seed=0)
    plan = model.acquire(pos, val, k=16)          # where to observe next: plan.positions [16, 2]
"""
from ._version import __version__
from .acquisition import Acquisition
from .distribution import Distribution
from .errors import DeviceError, InputError, ModelNotFoundError, OnnxruntimeError, PtPluginError, WeightsError
from .grids import grid_positions
from .images import compose, observe_mask, observe_random, samples_picture
from .model import Context, Model, ModelInfo, load
from .signal import Signal
from .weights import DEFAULT_MODEL, known_models

__all__ = [
    "__version__", "load", "Model", "ModelInfo", "Context", "Distribution", "Acquisition", "Signal", "grid_positions",
    "observe_random", "observe_mask", "compose", "samples_picture", "known_models", "DEFAULT_MODEL",
    "PtPluginError", "InputError", "ModelNotFoundError", "WeightsError", "DeviceError", "OnnxruntimeError",
]
