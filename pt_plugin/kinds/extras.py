"""Optional heavy helpers behind extras: imported when used, with an error naming what to install."""
from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import PtPluginError


class MissingExtraError(PtPluginError, ImportError):
    """An optional dependency a feature needs is not installed; the message names the extra."""


def require(module: str, extra: str, feature: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(f"{feature} needs {module.split('.')[0]}, which is not installed: "
                                f"pip install 'pt-plugin[{extra}]'") from None


def pyplot() -> ModuleType:
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    mpl = require("matplotlib", "plot", "plotting curves")
    mpl.use("Agg")
    return importlib.import_module("matplotlib.pyplot")
