"""Writing pictures in the format their file name asks for (PNG, JPEG, GIF, WebP, ...), never another."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ..images import write_picture

FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".gif": "GIF", ".webp": "WEBP", ".bmp": "BMP",
           ".tif": "TIFF", ".tiff": "TIFF"}


def picture_format(path: Path) -> str:
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise InputError(f"cannot write {path}: its suffix names no picture format this writes "
                         f"({', '.join(sorted(FORMATS))})")
    return fmt


def save_picture(path: Path, pixels: np.ndarray) -> Path:
    """Write a uint8 [H, W(, 3)] array (or floats in [0, 1]) in the format of path's suffix, under a temporary
    name moved into place (pt_plugin.files.atomic); folders are made."""
    return write_picture(path, pixels, picture_format(path))
