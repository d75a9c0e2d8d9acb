"""Volumes (x, y, z) -> signed distance (3-D shapes, paper §6.2, Fig. 8): read observed points from a CSV
or an SDF grid, write meshes of the mean and of each sample and a picture of truth | S | mean | samples.

Meshes are the level-0 surfaces of the grids (marching cubes, the `mesh` extra: scikit-image), in
the position frame (x, y, z) of the [-1, 1]³ cube, written as PLY (default) or OBJ with numpy alone.
A grid is padded with the model's largest value (outside) before meshing, so a surface cut by the
grid's border is closed there. A grid without a zero crossing has no surface: it gets no mesh
file and a note on stderr, and its panel says so. Pictures are drawn by pt_plugin.kinds.render;
without samples (`pt-plugin mean`) the last panel is the mean surface coloured by σ.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError
from ..grids import cell_index
from ..images import figure_grid
from ..text import number, plural
from .base import Kind, Observation, Outputs
from .meshes import MESH_FORMATS, Mesh, extract_mesh, marching_cubes, write_mesh
from .pictures import FORMATS, save_picture
from .plans import axis_label, slice_panels, spread, tile
from .points import column_names, read_samples
from .render import render, sdf_colors

if TYPE_CHECKING:
    from ..acquisition import Acquisition
    from ..model import Model

DEFAULT_GRID = 32    # cells per axis of the output grid of a model without a training grid
PANEL = 48           # picture pixels of one panel per unit of --scale
GRID_KEYS = ("sdf", "truth")  # the array an .npz grid is read from (or its only array)


def note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


def read_grid(path: Path) -> np.ndarray:
    """An SDF grid [Z, Y, X] or [Z, Y, X, 1] from .npy / .npz (array `sdf`, `truth` or the only one) as
    float32 [Z, Y, X, 1]."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise InputError(f"{path} is not a readable numpy file ({e})") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            keys = [k for k in GRID_KEYS if k in loaded.files] or (loaded.files if len(loaded.files) == 1 else [])
            if not keys:
                raise InputError(f"{path} holds {', '.join(loaded.files) or 'no arrays'}; name the SDF grid "
                                 f"{' or '.join(GRID_KEYS)}")
            try:
                arr = np.asarray(loaded[keys[0]])
            except (OSError, ValueError) as e:
                raise InputError(f"{path}: array {keys[0]!r} is not readable ({e})") from None
    else:
        arr = np.asarray(loaded)
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3 or min(arr.shape) < 2 or not np.issubdtype(arr.dtype, np.number) or \
            np.issubdtype(arr.dtype, np.complexfloating):
        raise InputError(f"{path}: an SDF grid is a real [Z, Y, X] array of at least 2 cells per axis, got "
                         f"{arr.dtype} {arr.shape}")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise InputError(f"{path}: the SDF grid holds NaN or infinite values")
    return arr[..., None]


def _blank(size: int, text: str) -> np.ndarray:
    """An empty panel (the cube's edges) with a line of text in its middle: a grid without a surface, an
    unknown truth."""
    from PIL import Image, ImageDraw, ImageFont

    im = Image.fromarray((render(size) * 255 + 0.5).astype(np.uint8))
    try:
        font = ImageFont.load_default(size=max(10, size // 12))  # Pillow >= 10.1: a scalable font
    except TypeError:
        font = ImageFont.load_default()
    draw = ImageDraw.Draw(im)
    text = text.replace(" ", "\n")  # one word a line: the default font's spaces are hard to see
    box = draw.multiline_textbbox((0, 0), text, font=font, align="center")
    draw.multiline_text(((size - box[2]) / 2, (size - box[3]) / 2), text, fill=(90, 90, 90), font=font,
                        align="center")
    return np.asarray(im, np.float32) / 255


def resample_grid(grid: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A [Z, Y, X, C] grid resampled to `shape` at the new cells' centres (align_corners=False), linearly along
    each axis (trilinear), float32."""
    out = np.asarray(grid, np.float32)
    for axis, n in enumerate(shape):
        m = out.shape[axis]
        coord = np.clip((np.arange(n) + 0.5) * m / n - 0.5, 0, m - 1)
        lo = np.floor(coord).astype(int)
        hi = np.minimum(lo + 1, m - 1)
        w = (coord - lo).reshape([-1 if a == axis else 1 for a in range(out.ndim)]).astype(np.float32)
        out = np.take(out, lo, axis) * (1 - w) + np.take(out, hi, axis) * w
    return out.astype(np.float32)


def mesh_path(picture: Path, out_dir: Path | None, name: str, suffix: str, alone: bool = False) -> Path:
    """Where the mesh of grid `name` (mean, sample_00, ...) goes: out_dir/NAME.ply, or next to the picture as
    STEM_NAME.ply; the mean alone (`pt-plugin mean`: no samples) is STEM.ply (mean.png, mean.ply)."""
    if out_dir is not None:
        return Path(out_dir) / f"{name}{suffix}"
    if name == "mean" and alone:
        return picture.with_suffix(suffix)
    return picture.with_name(f"{picture.stem}_{name}{suffix}")


GRID_SUFFIXES = (".npy", ".npz")
CSV_SUFFIXES = (".csv", ".txt")


class VolumeKind(Kind):
    name = "volume"
    input_help = ("an SDF grid (.npy or .npz, [Z, Y, X]) as INPUT, or a CSV of observed points x, y, z, sdf with "
                  "--points")
    out_suffixes = tuple(MESH_FORMATS)
    takes_points = True
    writes_out_dir = True

    def check_input(self, path: Path, points: bool, model_name: str) -> None:
        super().check_input(path, points, model_name)
        suffix = Path(path).suffix.lower()
        if points and suffix in GRID_SUFFIXES:
            raise InputError(f"{path} is a numpy file: give an SDF grid as INPUT (without --points); --points takes "
                             "a CSV of x, y, z, sdf")
        if not points and suffix not in GRID_SUFFIXES + CSV_SUFFIXES:
            raise InputError(f"{path} is neither an SDF grid (.npy, .npz) nor a CSV of points; model {model_name} is "
                             f"a volume model and reads {self.input_help}")

    def default_shape(self, model: "Model") -> tuple[int, ...]:
        return model.grid or (DEFAULT_GRID,) * 3

    def demo(self, model: "Model") -> Observation:
        """The demo shape: its truth grid (for the picture) and its dense points (S is drawn from them)."""
        arrays = self.demo_arrays(model)
        if "positions" not in arrays and "truth" not in arrays:
            raise InputError(f"model {model.meta['name']!r}'s demo.npz holds neither `truth` nor `positions`")
        return Observation(np.zeros((0, 3), np.float32), np.zeros((0, 1), np.float32), self.default_shape(model),
                           truth=arrays.get("truth"), truth_positions=arrays.get("positions"),
                           truth_values=arrays.get("values"), source="demo")

    def check_writer(self) -> None:
        marching_cubes()

    def check_out(self, out: Path) -> None:
        if Path(out).suffix.lower() not in MESH_FORMATS:
            super().check_out(out)

    def read(self, model: "Model", path: Path, resize: bool, background: str = "white") -> Observation:
        """A CSV of observed points x, y, z, sdf (every row is a sample of S; a header names the columns), or
        an SDF grid .npy / .npz ([Z, Y, X] on cell centres, truncated to the model's value range) that
        --observed samples; a grid of another size than the model's is refused unless resize (trilinear)."""
        path = Path(path)
        empty = np.zeros((0, 3), np.float32), np.zeros((0, 1), np.float32)
        if path.suffix.lower() in GRID_SUFFIXES:
            grid = self.fit_grid(model, path, read_grid(path), resize)
            lo, hi = model.value_range
            return Observation(*empty, self.default_shape(model), truth=np.clip(grid, lo, hi), source=str(path))
        pos, val = read_samples(path, column_names(model, ("x", "y", "z", "sdf")), 3, model.value_range)
        return Observation(pos, val, self.default_shape(model), source=str(path))

    def size_words(self, shape: tuple[int, ...]) -> str:
        return f"a {'x'.join(map(str, shape))} (Z x Y x X) grid"

    def resample(self, truth: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        return resample_grid(truth, shape)

    def caption(self, obs: Observation, num_samples: int) -> str:
        known = obs.truth is not None
        return " | ".join(["truth" if known else "truth unknown", plural(len(obs.positions), "observed sample"),
                           "mean", plural(num_samples, "sample") if num_samples else "mean coloured by std"])

    def output_paths(self, out: Path, out_dir: Path | None, num_samples: int) -> dict[str, Path]:
        """The picture, then a mesh for the mean and each sample (written where the grid has a surface)."""
        out = Path(out)
        suffix = out.suffix.lower()
        mesh_suffix = suffix if suffix in MESH_FORMATS else ".ply"
        picture = out if suffix in FORMATS else out.with_suffix(".png")
        names = ["mean", *(f"sample_{i:02d}" for i in range(num_samples))]
        return {"picture": picture, **{f"{n.replace('_', ' ')} mesh": mesh_path(picture, out_dir, n, mesh_suffix,
                                                                                  alone=not num_samples)
                                       for n in names}}

    def write(self, out: Path, obs: Observation, res: Outputs, model: "Model", scale: int,
              out_dir: Path | None = None) -> list[Path]:
        """The picture truth | S | mean | samples (or | mean coloured by σ without samples) as PNG (or the
        picture format of --out), and a mesh per grid (output_paths: NAME_mean.ply, NAME_sample_00.ply, ...
        next to it, NAME.ply for the mean alone, or mean.ply, sample_00.ply, ... in out_dir); --out NAME.obj
        or NAME.ply picks the mesh format."""
        paths = list(self.output_paths(out, out_dir, len(res.samples)).values())
        picture, mesh_files = paths[0], paths[1:]
        if out_dir is not None and Path(out_dir).exists() and not Path(out_dir).is_dir():
            raise InputError(f"--out-dir {out_dir} exists and is not a folder")
        lo, hi = model.value_range
        size = PANEL * scale

        def mesh_of(grid: np.ndarray, label: str) -> Mesh | None:
            mesh = extract_mesh(grid, 0.0, outside=hi)
            if mesh is None:
                note(f"the {label} has no zero crossing (values from {number(float(grid.min()))} to "
                     f"{number(float(grid.max()))}): no surface, so no mesh for it")
            return mesh

        def panel(mesh: Mesh | None, colors=None) -> np.ndarray:
            return _blank(size, "no surface") if mesh is None else render(size, mesh.vertices, mesh.faces, colors)

        truth = panel(extract_mesh(obs.truth, 0.0, outside=hi)) if obs.truth is not None else \
            _blank(size, "truth unknown")
        seen = render(size, points=obs.positions, point_colors=sdf_colors(obs.values, max(abs(lo), abs(hi))))
        grids = {"mean": res.mean, **{f"sample_{i:02d}": s for i, s in enumerate(res.samples)}}
        meshes = {name: mesh_of(g, "mean SDF" if name == "mean" else name.replace("_", " "))
                  for name, g in grids.items()}
        panels = [truth, seen] + [panel(m) for m in meshes.values()]
        if not len(res.samples):
            panels.append(panel(meshes["mean"], self.std_colors(meshes["mean"], res.std)))
        written = [save_picture(picture, figure_grid([panels], scale=1, gap=3))]
        for (name, mesh), path in zip(meshes.items(), mesh_files):
            if mesh is not None:
                comment = (f"pt-plugin {model.meta['name']}: {name.replace('_', ' ')} of p(sdf | "
                           f"{len(obs.positions)} samples); x y z in the [-1, 1] position frame, y up")
                written.append(write_mesh(path, mesh, comment))
        return written

    @staticmethod
    def std_colors(mesh: Mesh | None, std: np.ndarray) -> np.ndarray | None:
        """Vertex colours of the mean surface by the std of its nearest cell, relative to the largest on the
        surface: grey (the surest part) to orange (the least sure)."""
        if mesh is None:
            return None
        s = std.reshape(-1)[cell_index(mesh.vertices, std.shape[:-1])[0]]
        t = (s / max(float(s.max()), 1e-12))[:, None]
        return np.array([0.78, 0.78, 0.8]) * (1 - t) + np.array([1.0, 0.45, 0.05]) * t

    def plan_picture(self, path: Path, obs: Observation, plan: "Acquisition", res: Outputs, model: "Model",
                     scale: int) -> None:
        """The std given S in every z slice that holds a pick (y up), the picks numbered and S outlined."""
        shape = res.mean.shape[:3]
        observed = np.stack(np.unravel_index(cell_index(obs.positions, shape)[0], shape), -1)
        rows = slice_panels(spread(res.std), plan.cells(), observed, scale, axis_label("z", shape[0]), flip=True)
        save_picture(path, tile(rows))

    def plan_caption(self, plan: "Acquisition") -> str:
        return (f"the std given S in each z slice with a pick (x across, y up), {plural(len(plan), 'pick')} "
                "numbered; a table of them")
