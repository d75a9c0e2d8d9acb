"""Observed samples from a CSV file: one sample per row, the position columns then the value columns.

Shared by the kinds that take `--points` (curves: x, y; volumes: x, y, z, sdf). A first row that is
not all numbers is a header: it names the columns, in any order, by the kind's usual names or the
model's axis and channel names (an unknown name is refused); blank lines are ignored. Every refusal is an InputError
that names the file and the line.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError
from ..inputs import POSITION_TOLERANCE
from ..text import number, plural

if TYPE_CHECKING:
    from ..model import Model


def column_names(model: "Model", usual: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Per CSV column, the names a header may give it: the kind's usual one and the model's axis or channel name."""
    signal = getattr(model, "signal", None)
    own = (*signal.axes, *signal.channels) if signal is not None else usual
    return [tuple(dict.fromkeys(n.strip().lower() for n in pair)) for pair in zip(usual, own)]


def _header_order(path: Path, line: int, cells: list[str], names: list[tuple[str, ...]]) -> list[int]:
    """For each column of the file, the column of the sample it holds, from a header row; unknown names refused."""
    want = ", ".join(" or ".join(n) for n in names)
    order: list[int] = []
    for cell in cells:
        hits = [j for j, n in enumerate(names) if cell.lower() in n]
        if not hits:
            raise InputError(f"{path} line {line}: unknown column {cell!r} in the header; expected the columns {want} "
                             "(in any order), or no header")
        if hits[0] in order:
            raise InputError(f"{path} line {line}: column {cell!r} is named twice in the header; expected {want}")
        order.append(hits[0])
    if len(order) != len(names):
        missing = [names[j][0] for j in range(len(names)) if j not in order]
        raise InputError(f"{path} line {line}: the header lacks {', '.join(missing)}; expected the columns {want}")
    return order


def read_rows(path: Path, names: list[tuple[str, ...]]) -> tuple[np.ndarray, list[int]]:
    """A CSV of one number per column and row as [N, columns] float32 in the order of `names`, and the file
    line of each row. A first row that is not all numbers is a header: it names the columns (any order)."""
    path = Path(path)
    columns = len(names)
    if path.is_dir():
        raise InputError(f"{path} is a folder; expected a CSV file of observed points "
                         f"({', '.join(n[0] for n in names)})")
    if not path.is_file():
        raise InputError(f"points file not found: {path}")
    rows, lines, order, header = [], [], list(range(columns)), False
    try:
        with open(path, newline="") as f:
            for i, row in enumerate(csv.reader(f)):
                cells = [c.strip() for c in row if c.strip()]
                if not cells:
                    continue
                try:
                    numbers = [float(c) for c in cells]
                except ValueError:
                    if not rows and not header:  # the first row that holds anything
                        order, header = _header_order(path, i + 1, cells, names), True
                        continue
                    raise InputError(f"{path} line {i + 1}: {row!r} is not {columns} numbers") from None
                if len(numbers) != columns:
                    raise InputError(f"{path} line {i + 1} has {plural(len(numbers), 'value')}; expected {columns} "
                                     "per row")
                if not all(np.isfinite(numbers)):
                    raise InputError(f"{path} line {i + 1}: {row!r} holds NaN or an infinite number")
                sample = [0.0] * columns
                for value, j in zip(numbers, order):
                    sample[j] = value
                rows.append(sample)
                lines.append(i + 1)
    except (UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"{path} is not a CSV text file ({e}); expected rows of "
                         f"{', '.join(n[0] for n in names)}") from None
    if not rows:
        raise InputError(f"{path} holds no points; expected rows of {columns} numbers")
    with np.errstate(over="ignore"):
        pts = np.asarray(rows, np.float32)
    if not np.isfinite(pts).all():
        i = int(np.argwhere(~np.isfinite(pts))[0, 0])
        raise InputError(f"{path} line {lines[i]}: a number is too large for float32")
    return pts, lines


def read_samples(path: Path, names: list[tuple[str, ...]], pos_dim: int,
                 value_range: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Observed samples (positions [N, pos_dim] in [-1, 1], values [N, len(names) - pos_dim] inside
    value_range, with the slack pt_plugin.inputs allows) from a CSV with the columns `names` (per column,
    the names a header may use: column_names); the first row out of bounds is named."""
    path = Path(path)
    pts, lines = read_rows(path, names)
    names = [n[0] for n in names]
    pos, val = pts[:, :pos_dim], pts[:, pos_dim:]
    out = np.abs(pos).max(1) > 1 + POSITION_TOLERANCE
    if out.any():
        i = int(np.argmax(out))
        raise InputError(f"{path} line {lines[i]}: position ({', '.join(number(p) for p in pos[i])}) lies outside "
                         f"[-1, 1] on an axis; columns {', '.join(names[:pos_dim])} are normalised coordinates "
                         f"in [-1, 1]")
    lo, hi = value_range
    slack = 1e-3 * (hi - lo)  # what pt_plugin.inputs.values allows
    bad = ((val < lo - slack) | (val > hi + slack)).any(1)
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(f"{path} line {lines[i]}: {', '.join(names[pos_dim:])} = "
                         f"{', '.join(number(v) for v in val[i])} lies outside the model's value range "
                         f"[{number(lo)}, {number(hi)}]")
    return pos, val
