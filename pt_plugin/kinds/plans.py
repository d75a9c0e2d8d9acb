"""Pictures and tables of an acquisition plan (`pt-plugin acquire`), shared by the kinds.

A plan is written as a picture NAME.png (the std given S with the picks numbered in order; each kind
chooses its panels) and a table NAME.csv next to it (Acquisition.records: rank, the position per axis,
the candidate index, the grid cell per array axis, the score). The std maps here are grayscale, white
where the model is least sure, scaled to the largest std of the whole grid; the picks are numbered in
red, the observed samples of S outlined in cyan.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..files import atomic
from ..text import number

PICK = (230, 30, 30)        # the numbers of the picks
OBSERVED = (0, 190, 255)    # outlines of the observed samples
TITLE_GAP = 4               # pixels between a panel's title and the panel
MAX_COLUMNS = 8             # panels per row of a picture of slices or frames
PANEL_SIDE = 384            # a plan panel's longer side in pixels, at most, when --scale is not given


def plan_paths(out: Path) -> dict[str, Path]:
    """The plan's files by what they hold: the picture and the table next to it (same stem, .csv)."""
    out = Path(out)
    return {"picture": out, "table": out.with_suffix(".csv")}


def plan_scale(h: int, w: int, most: int = 16) -> int:
    """The enlargement of an h x w panel when --scale is not given: up to `most`, the panel within PANEL_SIDE."""
    return max(1, min(most, PANEL_SIDE // max(h, w, 1)))


def write_table(path: Path, records: list[dict]) -> Path:
    """Acquisition.records as a CSV (a header row, one pick per row; floats with 6 significant digits)."""
    with atomic(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(list(records[0]))
        for r in records:
            w.writerow([f"{v:.6g}" if isinstance(v, float) else v for v in r.values()])
    return Path(path)


def spread(std: np.ndarray) -> np.ndarray:
    """One std per cell: the root of the variances summed over channels (what the variance criterion ranks)."""
    return np.sqrt(np.sum(np.asarray(std, np.float64) ** 2, -1))


def font(size: int):
    """PIL's default font at about `size` pixels (Pillow >= 10.1), else its small bitmap font."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def std_panel(std2d: np.ndarray, top: float, scale: int, picks=(), observed=()):
    """A PIL image of a [H, W] std map (white = `top`), enlarged `scale` times, with the picks (row, col,
    number) numbered and the observed cells (row, col) outlined."""
    from PIL import Image, ImageDraw

    gray = (np.clip(std2d / max(top, 1e-12), 0, 1) * 255 + 0.5).astype(np.uint8)
    h, w = gray.shape
    im = Image.fromarray(gray).resize((w * scale, h * scale), Image.NEAREST).convert("RGB")
    draw = ImageDraw.Draw(im)
    r = max(1, scale // 2 - 1)
    for row, col in observed:
        x, y = (col + 0.5) * scale, (row + 0.5) * scale
        draw.rectangle([x - r, y - r, x + r, y + r], outline=OBSERVED)
    size = max(10, int(scale * 1.2))
    f = font(size)
    for row, col, n in picks:
        _number(draw, (col + 0.5) * scale, (row + 0.5) * scale, str(n), f, size)
    return im


def _number(draw, x: float, y: float, text: str, f, size: int) -> None:
    """text centred on (x, y) in red with a dark outline."""
    try:
        draw.text((x, y), text, fill=PICK, font=f, anchor="mm", stroke_width=max(1, size // 8), stroke_fill=(0, 0, 0))
    except (ValueError, TypeError):  # Pillow's bitmap font (before 10.1) takes no anchor
        draw.text((x - 3 * len(text), y - 5), text, fill=PICK, font=f)


def picture_panel(image: np.ndarray, scale: int):
    """A PIL image of an [H, W, C] picture in [0, 1] (gray or RGB), enlarged `scale` times."""
    from PIL import Image

    from ..images import to_rgb

    rgb = (np.clip(to_rgb(image), 0, 1) * 255 + 0.5).astype(np.uint8)
    h, w = rgb.shape[:2]
    return Image.fromarray(rgb).resize((w * scale, h * scale), Image.NEAREST)


def titled(im, title: str):
    """The image with a line of text above it."""
    from PIL import Image, ImageDraw

    f = font(14)
    box = ImageDraw.Draw(im).textbbox((0, 0), title, font=f)
    out = Image.new("RGB", (max(im.width, box[2] + 4), im.height + box[3] + TITLE_GAP), "white")
    ImageDraw.Draw(out).text((2, 0), title, fill=(0, 0, 0), font=f)
    out.paste(im, (0, box[3] + TITLE_GAP))
    return out


def tile(rows: list[list], gap: int = 4) -> np.ndarray:
    """Rows of PIL images pasted onto white, left-aligned, as a uint8 RGB array."""
    from PIL import Image

    width = max(sum(im.width for im in row) + gap * (len(row) + 1) for row in rows)
    heights = [max(im.height for im in row) for row in rows]
    out = Image.new("RGB", (width, sum(heights) + gap * (len(rows) + 1)), "white")
    y = gap
    for row, h in zip(rows, heights):
        x = gap
        for im in row:
            out.paste(im, (x, y))
            x += im.width + gap
        y += h + gap
    return np.asarray(out)


def slice_panels(std: np.ndarray, cells: np.ndarray, observed: np.ndarray, scale: int, label, flip: bool = False):
    """One numbered std panel per slice along axis 0 of std [A, H, W] that holds a pick, in slice order.

    cells [k, 3]: the picks' (slice, row, col) in pick order; observed [K, 3]: the cells of S. label(a)
    titles slice a. flip: draw row 0 at the bottom (volumes: y up).
    """
    top = float(std.max())
    h = std.shape[1]
    fix = (lambda r: h - 1 - r) if flip else (lambda r: r)
    panels = []
    for a in np.unique(cells[:, 0]):
        picks = [(fix(int(r)), int(c), n + 1) for n, (s, r, c) in enumerate(cells) if s == a]
        seen = [(fix(int(r)), int(c)) for s, r, c in observed if s == a]
        img = std[a][::-1] if flip else std[a]
        panels.append(titled(std_panel(img, top, scale, picks, seen), f"{label(int(a))}: {len(picks)} pick"
                             + ("s" if len(picks) != 1 else "")))
    return [panels[i:i + MAX_COLUMNS] for i in range(0, len(panels), MAX_COLUMNS)]


def axis_label(name: str, n: int):
    """label(a) for cell a of an n-cell axis: 'z = 0.53 (cell 24)'."""
    return lambda a: f"{name} = {number(round((a + 0.5) / n * 2 - 1, 3))} (cell {a})"
