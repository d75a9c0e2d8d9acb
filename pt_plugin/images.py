"""Image helpers: pixel-centre positions, observing pixels, the pictures of paper Figs. 4-5, PNG I/O.

Convention: pixel (row i, col j) of an H×W image sits at x = (j + 0.5)/W·2 − 1,
y = (i + 0.5)/H·2 − 1, in the column order (x, y).

Masks (observe_mask, compose): a pixel is selected where the mask is True (bool masks) or > 0.5
(numeric masks, e.g. a PNG read in [0, 1]); an [H, W, C] mask is averaged over its channels first.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import inputs
from .errors import InputError
from .grids import cell_index, grid_positions, random_subset  # the image helpers' grid is the N-D one
from .text import number

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")  # what folder readers take as images
OBSERVED_BACKGROUND = (0.25, 0.35, 0.6)  # unobserved pixels in the picture of S (paper Fig. 4, row 2)


def _as_image(image, name: str = "image") -> np.ndarray:
    """A float32 copy [H, W, C] of a numeric [H, W] or [H, W, C] image with at least one pixel and channel."""
    img = inputs.as_float32(image, name)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or 0 in img.shape:
        raise InputError(f"{name} must be [H, W] or [H, W, C] with H, W, C >= 1, got shape {img.shape}")
    inputs.check_finite(img, name)
    return img


def _selection(mask, shape: tuple[int, int]) -> np.ndarray:
    """Bool [H, W] of the selected pixels (True, or > 0.5 for numbers; channels averaged), see the module docstring."""
    m = inputs.as_float32(mask, "mask")
    if m.ndim == 3 and m.shape[-1] >= 1:
        m = m.mean(-1)
    if m.shape != tuple(shape):
        raise InputError(f"mask of shape {m.shape} does not fit the image of shape {tuple(shape)}; expected a "
                         "[H, W] (or [H, W, C]) array of bools or numbers")
    inputs.check_finite(m, "mask")
    return m > 0.5


def observe_random(image, k: int, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(positions [k, 2], values [k, C]) of k distinct random pixels of an image [H, W(, C)]."""
    img = _as_image(image)
    h, w, c = img.shape
    return random_subset(grid_positions(h, w), img.reshape(-1, c), k, seed, f"pixels of a {h}x{w} image")


def observe_mask(image, mask) -> tuple[np.ndarray, np.ndarray]:
    """(positions, values) of the pixels the mask selects (True, or > 0.5 for numbers: see the module docstring)."""
    img = _as_image(image)
    on = _selection(mask, img.shape[:2]).ravel()
    if not on.any():
        raise InputError("the mask selects no pixel; white (True) pixels mark the observed ones")
    h, w, c = img.shape
    return grid_positions(h, w)[on], img.reshape(-1, c)[on]


def compose(image_a, image_b, mask) -> np.ndarray:
    """One image from two (paper Fig. 5): pixels of a where the mask selects them (True or > 0.5), of b elsewhere."""
    a, b = _as_image(image_a, "image_a"), _as_image(image_b, "image_b")
    if a.shape != b.shape:
        raise InputError(f"images differ in shape: {a.shape} and {b.shape}")
    return np.where(_selection(mask, a.shape[:2])[..., None], a, b)


def pixel_index(positions, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat row-major index of the pixel holding each position [K, 2], and whether it sits on that pixel's centre."""
    return cell_index(positions, (h, w))


def samples_picture(positions, values, shape: tuple[int, int], fill: str = "background") -> np.ndarray:
    """The picture of S as an RGB image [H, W, 3]: observed pixels in their values.

    fill="background" paints unobserved pixels a flat blue (paper Fig. 4, row 2);
    fill="nearest" gives every pixel the value of its nearest sample (nearest-neighbour fill).
    """
    h, w = inputs.grid_shape(shape, 2)
    if fill not in ("background", "nearest"):
        raise InputError(f"fill must be 'background' or 'nearest', got {fill!r}")
    pos = inputs.positions(positions, 2, "sample positions")
    val = inputs.as_float32(values, "sample values")
    if val.ndim == 1:
        val = val[:, None]
    if val.ndim != 2 or val.shape[1] < 1 or len(val) != len(pos) or (len(pos) == 0 and fill == "nearest"):
        raise InputError(f"sample values of shape {val.shape} do not fit {len(pos)} positions; expected [K, C] "
                         "with one row per position (K >= 1 for fill='nearest'; no sample paints only the background)")
    inputs.check_finite(val, "sample values")
    if fill == "nearest":
        inputs.check_memory(4 * h * w * len(pos), f"nearest fill of a {h}x{w} picture from {len(pos)} samples",
                            "use fewer samples or a smaller picture")
    rgb = np.repeat(val, 3, 1) if val.shape[1] == 1 else val[:, :3]
    if fill == "nearest":
        grid = grid_positions(h, w)
        d = ((grid[:, None, :] - pos[None, :, :]) ** 2).sum(-1)
        return rgb[d.argmin(1)].reshape(h, w, 3)
    out = np.empty((h * w, 3), np.float32)
    out[:] = OBSERVED_BACKGROUND
    out[pixel_index(pos, h, w)[0]] = rgb
    return out.reshape(h, w, 3)


def to_rgb(image) -> np.ndarray:
    img = _as_image(image)
    return np.repeat(img, 3, -1) if img.shape[-1] == 1 else img[..., :3]


def figure_grid(rows: list[list[np.ndarray]], scale: int = 4, gap: int = 2) -> np.ndarray:
    """Tile rows of images [H, W(, C)] into one uint8 RGB picture, enlarged `scale` times (nearest)."""
    tiles = [[np.kron(to_rgb(im), np.ones((scale, scale, 1))) for im in row] for row in rows]
    th, tw = tiles[0][0].shape[:2]
    ncols = max(len(r) for r in tiles)
    out = np.ones((len(tiles) * (th + gap) + gap, ncols * (tw + gap) + gap, 3), np.float32)
    for i, row in enumerate(tiles):
        for j, t in enumerate(row):
            y, x = gap + i * (th + gap), gap + j * (tw + gap)
            out[y:y + th, x:x + tw] = t
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)


BACKGROUNDS = {"white": 255, "black": 0}  # what transparent pixels are composited on


def read_image(path: str | Path, channels: int, background: str = "white") -> np.ndarray:
    """An image file as float32 [H, W, channels] in [0, 1]; transparency is composited on `background`
    ("white", the default, or "black").

    16-bit grayscale PNGs (PIL modes I;16 / I) are read at full depth (divided by 65535); Pillow
    itself reduces 16-bit RGB(A) PNGs to 8 bits per channel. 32-bit float images (TIFF, PIL mode F)
    are taken as they are and must lie in [0, 1].
    """
    from PIL import Image, UnidentifiedImageError

    if background not in BACKGROUNDS:
        raise InputError(f"background must be one of {', '.join(BACKGROUNDS)}, got {background!r}")
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a folder; expected one image file ({', '.join(IMAGE_SUFFIXES)}, ...)")
    if not path.is_file():
        raise InputError(f"image not found: {path}")
    try:
        im = Image.open(path)
        im.load()
    except (UnidentifiedImageError, OSError) as e:
        raise InputError(f"{path} is not a readable image ({e})") from None
    im = composite(im, background)
    if im.mode == "F":
        gray = _float_image(np.asarray(im, np.float32), path)[..., None]
        return gray if channels == 1 else np.repeat(gray, 3, -1)
    if im.mode.startswith("I"):  # 16-bit gray: convert("L") would clip every value above 255 to white
        gray = np.clip(np.asarray(im, np.float32) / 65535.0, 0.0, 1.0)[..., None]
        return gray if channels == 1 else np.repeat(gray, 3, -1)
    arr = np.asarray(im.convert("L" if channels == 1 else "RGB"), np.float32) / 255.0
    return arr[..., None] if arr.ndim == 2 else arr


def composite(im, background: str = "white"):
    """A PIL image with transparency flattened onto a white or black background (others are returned as they are)."""
    from PIL import Image

    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (BACKGROUNDS[background],) * 3 + (255,))
        im = Image.alpha_composite(bg, im)
    return im


def _float_image(arr: np.ndarray, path: Path) -> np.ndarray:
    """A floating-point image as it is: finite and in [0, 1] (a little rounding outside is clipped)."""
    if not np.isfinite(arr).all():
        raise InputError(f"{path} is a floating-point image holding NaN or infinite values; expected values in [0, 1]")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise InputError(f"{path} is a floating-point image with values from {number(lo)} to {number(hi)}; expected "
                         "[0, 1] (scale it, or save it as an 8- or 16-bit image)")
    return np.clip(arr, 0.0, 1.0)


def resize_image(image, h: int, w: int) -> np.ndarray:
    """A [H, W, C] image in [0, 1] resized to h×w (bilinear, through 8 bits), float32 [h, w, C]."""
    from PIL import Image

    img = _as_image(image)
    arr8 = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    im = Image.fromarray(arr8[..., 0] if arr8.shape[-1] == 1 else arr8).resize((w, h), Image.BILINEAR)
    return np.asarray(im, np.float32).reshape(h, w, -1) / 255


def write_picture(path: str | Path, image, fmt: str) -> Path:
    """Write a float [H, W(, C)] image in [0, 1] or a uint8 array in Pillow's format `fmt` (under a temporary
    name, then moved into place: pt_plugin.files.atomic); parent folders are created."""
    from PIL import Image

    from .files import atomic

    path = Path(path)
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    with atomic(path) as tmp:
        Image.fromarray(arr).save(tmp, format=fmt)
    return path


def write_png(path: str | Path, image) -> Path:
    """Write an image as PNG whatever the file's suffix (write_picture; kinds.pictures.save_picture goes by
    the suffix)."""
    return write_picture(path, image, "PNG")
