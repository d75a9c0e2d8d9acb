"""Exceptions of pt-plugin: each message says what was wrong and what was expected."""


class PtPluginError(Exception):
    """Base class of every error pt-plugin raises on purpose."""


class InputError(PtPluginError, ValueError):
    """An argument that does not fit the model (shape, dtype, range, size)."""


class ModelNotFoundError(PtPluginError, LookupError):
    """A model name that is neither bundled, cached nor in the registry."""


class WeightsError(PtPluginError, OSError):
    """Weights that could not be downloaded, or whose hash does not match the registry."""


class DeviceError(PtPluginError, RuntimeError):
    """A device that was asked for but cannot be used."""


class OnnxruntimeError(DeviceError):
    """An onnxruntime install that cannot work (e.g. half-removed); the message names the repair."""
