"""Regular grids of any number of axes: cell-centre positions and the cell that holds a position.

Shapes are in array order, the reverse of the position columns: an image array [H, W] has
positions (x, y), a video [T, H, W] has (x, y, t), a volume [Z, Y, X] has (x, y, z). Along an
axis of n cells, cell i sits at (i + 0.5)/n·2 − 1 (align_corners=False), on every axis, t and z too.
random_subset draws the k observed samples of a signal (pt_plugin.observe_random, Kind.observe).
"""
from __future__ import annotations

import math

import numpy as np

from . import inputs
from .errors import InputError


def axis_centres(n: int) -> np.ndarray:
    """The n cell centres of one axis in [-1, 1]."""
    return (np.arange(n) + 0.5) / n * 2 - 1


def grid_positions(*shape: int) -> np.ndarray:
    """[prod(shape), len(shape)] float32 positions of the cell centres, row-major over `shape`.

    Column 0 runs along the last array axis (x), column 1 along the one before (y), and so on:
    grid_positions(h, w) gives the (x, y) of every pixel of an h×w image, row by row.
    """
    shape = inputs.grid_shape(shape)
    n = math.prod(shape)  # Python ints: np.prod wraps around past 2**63 and would pass the memory check
    inputs.check_memory(4 * len(shape) * 3 * n, f"a {'x'.join(map(str, shape))} grid of positions",
                        "use a smaller grid")
    mesh = np.meshgrid(*[axis_centres(n) for n in shape], indexing="ij")
    return np.stack([m.ravel() for m in reversed(mesh)], -1).astype(np.float32)


def cell_index(positions, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Flat row-major index of the cell holding each position [K, len(shape)], and whether it sits on that
    cell's centre."""
    pos = np.asarray(positions, np.float32)
    flat = np.zeros(len(pos), np.int64)
    on_centre = np.ones(len(pos), bool)
    for axis, n in enumerate(shape):
        coord = (pos[:, len(shape) - 1 - axis] + 1) / 2 * n  # array axis `axis` is position column n_axes-1-axis
        i = np.clip(np.floor(coord), 0, n - 1).astype(np.int64)
        on_centre &= np.abs(coord - i - 0.5) < 1e-3
        flat = flat * n + i
    return flat, on_centre


def random_subset(positions: np.ndarray, values: np.ndarray, k, seed, what: str) -> tuple[np.ndarray, np.ndarray]:
    """k distinct random rows of (positions, values), kept in their order; `what` names the rows in the error
    (e.g. "pixels of a 28x28 image"). The same seed picks the same rows of any signal of the same size."""
    n = len(positions)
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
        raise InputError(f"cannot observe {k!r} {what}: choose an integer between 1 and {n}")
    idx = np.sort(np.random.default_rng(inputs.seed(seed)).choice(n, size=int(k), replace=False))
    return positions[idx], values[idx]
