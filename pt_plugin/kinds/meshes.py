"""Triangle meshes of signed distance grids: marching cubes at a level, PLY and OBJ files written with numpy.

Grids are in array order [Z, Y, X] (pt_plugin.grids) and a mesh's vertices in the position frame
(x, y, z) of the [-1, 1]³ cube: cell (k, j, i) of a Z×Y×X grid sits at x = (i + 0.5)/X·2 − 1,
y = (j + 0.5)/Y·2 − 1, z = (k + 0.5)/Z·2 − 1. SDFs are negative inside; faces are wound counter-
clockwise seen from outside (their right-hand normals point out). Marching cubes is scikit-image's
(the `mesh` extra); the files need nothing beyond numpy.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..files import atomic
from .extras import require

MESH_FORMATS = {".ply": "PLY", ".obj": "OBJ"}


@dataclass
class Mesh:
    """vertices [V, 3] float32 (x, y, z); faces [F, 3] int64 vertex indices."""
    vertices: np.ndarray
    faces: np.ndarray


def marching_cubes():
    """scikit-image's marching cubes, or a MissingExtraError naming `pt-plugin[mesh]`."""
    return require("skimage.measure", "mesh", "extracting meshes").marching_cubes


def has_surface(grid: np.ndarray, level: float = 0.0) -> bool:
    """Whether the grid crosses `level` (values on both sides of it), i.e. marching cubes finds a surface."""
    g = np.asarray(grid)
    return bool(g.size and g.min() < level < g.max())


def extract_mesh(grid, level: float = 0.0, outside: float | None = None) -> Mesh | None:
    """The surface where a [Z, Y, X] (or [Z, Y, X, 1]) grid crosses `level`, in the position frame;
    None when the grid does not cross it. `outside` (a value above level) pads the grid by one cell
    on every side, so that a surface cut by the grid's border is closed there."""
    g = np.asarray(grid, np.float32)
    if g.ndim == 4 and g.shape[-1] == 1:
        g = g[..., 0]
    if g.ndim != 3:
        raise InputError(f"a mesh is extracted from a [Z, Y, X] grid, got shape {g.shape}")
    if not np.isfinite(g).all():
        raise InputError("the grid holds NaN or infinite values; cannot extract a surface")
    if not has_surface(g, level):
        return None
    shape = np.array(g.shape, np.float64)
    pad = 0
    if outside is not None:
        if not outside > level:
            raise InputError(f"the padding value {outside} must lie outside the surface (above {level})")
        g, pad = np.pad(g, 1, constant_values=np.float32(outside)), 1
    verts, faces, _, _ = marching_cubes()(g, level=level, gradient_direction="ascent", allow_degenerate=False)
    pos = (verts - pad + 0.5) / shape * 2 - 1      # array order (z, y, x), in [-1, 1]
    # skimage's "ascent" winding in index order (z, y, x), seen in (x, y, z) (a reflection), is counter-
    # clockwise from outside for an SDF; tests/export/test_volume.py checks it by a sphere's signed volume
    return Mesh(pos[:, ::-1].astype(np.float32), faces.astype(np.int64))


def write_ply(path: Path, mesh: Mesh, comment: str = "") -> Path:
    """An ASCII PLY file: float x, y, z per vertex, triangles as `vertex_indices` lists."""
    path = Path(path)
    head = ["ply", "format ascii 1.0"] + [f"comment {c}" for c in comment.splitlines() if c] + [
        f"element vertex {len(mesh.vertices)}", "property float x", "property float y", "property float z",
        f"element face {len(mesh.faces)}", "property list uchar int vertex_indices", "end_header"]
    with atomic(path) as tmp, open(tmp, "w", newline="\n") as f:
        f.write("\n".join(head) + "\n")
        np.savetxt(f, mesh.vertices, fmt="%.6g")
        np.savetxt(f, np.column_stack([np.full(len(mesh.faces), 3), mesh.faces]), fmt="%d")
    return path


def write_obj(path: Path, mesh: Mesh, comment: str = "") -> Path:
    """A Wavefront OBJ file: `v x y z` lines, then `f a b c` triangles (1-based indices)."""
    path = Path(path)
    with atomic(path) as tmp, open(tmp, "w", newline="\n") as f:
        f.write("".join(f"# {c}\n" for c in comment.splitlines() if c))
        np.savetxt(f, mesh.vertices, fmt="v %.6g %.6g %.6g")
        np.savetxt(f, mesh.faces + 1, fmt="f %d %d %d")
    return path


def write_mesh(path: Path, mesh: Mesh, comment: str = "") -> Path:
    """A PLY or OBJ file, by the suffix of path."""
    fmt = MESH_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise InputError(f"cannot write a mesh to {path}: give a name ending in {' or '.join(MESH_FORMATS)}")
    return (write_ply if fmt == "PLY" else write_obj)(path, mesh, comment)
