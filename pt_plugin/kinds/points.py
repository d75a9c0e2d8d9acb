"""Observed samples from a CSV file: one sample per row, the position columns then the value columns.

Shared by the kinds that take `--points` (curves: x, y; volumes: x, y, z, sdf). A first row that is
not all numbers is a header and is skipped; blank lines are ignored. Every refusal is an InputError
that names the file and the line.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..inputs import POSITION_TOLERANCE


def read_rows(path: Path, columns: int) -> tuple[np.ndarray, list[int]]:
    """A CSV of `columns` numbers per row as [N, columns] float32, and the file line of each row."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"points file not found: {path}")
    rows, lines = [], []
    try:
        with open(path, newline="") as f:
            for i, row in enumerate(csv.reader(f)):
                cells = [c.strip() for c in row if c.strip()]
                if not cells:
                    continue
                try:
                    numbers = [float(c) for c in cells]
                except ValueError:
                    if i == 0:
                        continue  # a header
                    raise InputError(f"{path} line {i + 1}: {row!r} is not {columns} numbers") from None
                if len(numbers) != columns:
                    raise InputError(f"{path} line {i + 1} has {len(numbers)} values; expected {columns} per row")
                if not all(np.isfinite(numbers)):
                    raise InputError(f"{path} line {i + 1}: {row!r} holds NaN or an infinite number")
                rows.append(numbers)
                lines.append(i + 1)
    except (UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"{path} is not a CSV text file of numbers ({e})") from None
    if not rows:
        raise InputError(f"{path} holds no points; expected rows of {columns} numbers")
    with np.errstate(over="ignore"):
        pts = np.asarray(rows, np.float32)
    if not np.isfinite(pts).all():
        i = int(np.argwhere(~np.isfinite(pts))[0, 0])
        raise InputError(f"{path} line {lines[i]}: a number is too large for float32")
    return pts, lines


def read_samples(path: Path, names: tuple[str, ...], pos_dim: int,
                 value_range: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Observed samples (positions [N, pos_dim] in [-1, 1], values [N, len(names) - pos_dim] inside
    value_range, with the slack pt_plugin.inputs allows) from a CSV with the columns `names`; the first
    row out of bounds is named."""
    path = Path(path)
    pts, lines = read_rows(path, len(names))
    pos, val = pts[:, :pos_dim], pts[:, pos_dim:]
    out = np.abs(pos).max(1) > 1 + POSITION_TOLERANCE
    if out.any():
        i = int(np.argmax(out))
        raise InputError(f"{path} line {lines[i]}: position ({', '.join(f'{p:g}' for p in pos[i])}) lies outside "
                         f"[-1, 1] on an axis; columns {', '.join(names[:pos_dim])} are normalised coordinates "
                         f"in [-1, 1]")
    lo, hi = value_range
    slack = 1e-3 * (hi - lo)  # what pt_plugin.inputs.values allows
    bad = ((val < lo - slack) | (val > hi + slack)).any(1)
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(f"{path} line {lines[i]}: {', '.join(names[pos_dim:])} = "
                         f"{', '.join(f'{v:g}' for v in val[i])} lies outside the model's value range [{lo:g}, {hi:g}]")
    return pos, val
