"""What every signal kind module provides to the CLI: reading an input, a demo, observing, writing.

The model, sessions, distribution and sampler know nothing of kinds; only the CLI picks a Kind
from the model's signal block (pt_plugin.kinds.kind_for) and lets it do what is special to it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError
from ..grids import grid_positions, random_subset
from ..text import article, plural
from .pictures import picture_format
from .plans import plan_paths, plan_scale, write_table

if TYPE_CHECKING:
    from ..acquisition import Acquisition
    from ..model import Model

DEMO_FILE = "demo.npz"


@dataclass
class Observation:
    """The observed samples S, the grid the outputs are computed on, and the truth where it is known:
    truth [*shape, val_dim] on that grid, or dense true points (truth_positions, truth_values)."""
    positions: np.ndarray
    values: np.ndarray
    shape: tuple[int, ...]
    truth: np.ndarray | None = None
    truth_positions: np.ndarray | None = None
    truth_values: np.ndarray | None = None
    source: str = ""


@dataclass
class Outputs:
    """What the model computed for an Observation: mean and std [*shape, val_dim], samples [N, *shape, val_dim]."""
    mean: np.ndarray
    std: np.ndarray
    samples: np.ndarray


class Kind:
    """Defaults shared by the kinds: demos from the model folder, random observation of grid cells."""
    name = "signal"
    input_help = "an input file"
    out_suffixes: tuple[str, ...] = ()  # what --out may end in besides a picture format (volumes: .ply, .obj)
    default_suffix = ".png"  # the CLI's output when --out is not given: samples.png, mean.png
    takes_points = False     # whether --points (a CSV of observed samples) is an input of this kind
    takes_folders = False    # whether INPUT may be a folder (the frames of a clip)
    writes_out_dir = False   # whether --out-dir is used (each picture, or the meshes)
    batchable = False        # whether `pt-plugin batch` completes a folder of these (a picture per mean, sample)

    def check_input(self, path: Path, points: bool, model_name: str) -> None:
        """Before any work: refuse an input this kind does not read (--points, a folder), saying what it reads."""
        reads = f"model {model_name} is {article(self.name)} {self.name} model and reads {self.input_help}"
        if points and not self.takes_points:
            raise InputError(f"--points is for curve and volume models (a CSV of observed samples); {reads}")
        if Path(path).is_dir() and not self.takes_folders:
            raise InputError(f"{path} is a folder; {reads}")

    def demo(self, model: "Model") -> Observation:
        """The model's demo signal (demo.npz in its folder: `truth` on the training grid, or dense
        true points `positions` / `values`), nothing observed yet."""
        arrays = self.demo_arrays(model)
        if "truth" in arrays:
            truth = arrays["truth"]
            return Observation(np.zeros((0, model.pos_dim), np.float32), np.zeros((0, model.val_dim), np.float32),
                               truth.shape[:-1], truth=truth, source="demo")
        return Observation(np.zeros((0, model.pos_dim), np.float32), np.zeros((0, model.val_dim), np.float32),
                           self.default_shape(model),
                           truth_positions=arrays["positions"], truth_values=arrays["values"], source="demo")

    def demo_arrays(self, model: "Model") -> dict[str, np.ndarray]:
        """The arrays of the model's demo.npz as float32, or an InputError when it ships none."""
        path = Path(model.path) / DEMO_FILE
        if not path.is_file():
            raise InputError(f"model {model.meta['name']!r} ships no demo signal ({path} is missing); give an input "
                             f"({self.input_help}) instead of --demo")
        with np.load(path, allow_pickle=False) as d:
            return {k: np.asarray(d[k], np.float32) for k in d.files}

    def default_shape(self, model: "Model") -> tuple[int, ...]:
        return model.grid_shape(None)

    def default_scale(self, shape: tuple[int, ...]) -> int:
        """The picture's enlargement when --scale is not given."""
        return 4

    def observe(self, obs: Observation, k: int, seed: int | None) -> Observation:
        """k distinct random samples of the truth: its dense true points where it has them, else its grid cells."""
        if obs.truth_positions is not None:
            pos, val = obs.truth_positions, obs.truth_values
        else:
            pos, val = grid_positions(*obs.truth.shape[:-1]), obs.truth.reshape(-1, obs.truth.shape[-1])
        obs.positions, obs.values = random_subset(pos, val, k, seed, f"samples of a signal of {len(pos)}")
        return obs

    def check_writer(self) -> None:
        """Fail before any work when writing this kind's output needs an extra that is not installed."""

    def check_out(self, out: Path) -> None:
        """Fail before any work when this kind cannot write --out (by default: not a picture format)."""
        picture_format(out)

    def output_paths(self, out: Path, out_dir: Path | None, num_samples: int) -> dict[str, Path]:
        """Every file write() may write, by what it holds: checked against the inputs before any work."""
        return {"picture": Path(out)}

    def caption(self, obs: Observation, num_samples: int) -> str:
        """What the picture shows, panel by panel (the CLI prints it)."""
        known = obs.truth is not None or obs.truth_positions is not None
        return " | ".join([*(["truth"] if known else []), plural(len(obs.positions), "observed sample"), "mean",
                           plural(num_samples, "sample") if num_samples else "std"])

    def read(self, model: "Model", path: Path, resize: bool, background: str = "white") -> Observation:
        raise NotImplementedError

    def fit_grid(self, model: "Model", path: Path, truth: np.ndarray, resize: bool) -> np.ndarray:
        """A read signal [*grid, C] on the model's grid: as it is when it fits, resampled (self.resample) with
        resize (--resize), else an InputError that names both sizes (self.size_words)."""
        want = tuple(model.grid or ())
        have = tuple(truth.shape[:len(want)])
        if not want or have == want:
            return truth
        if not resize:
            raise InputError(f"{path} is {self.size_words(have)} but model {model.meta['name']} works on "
                             f"{self.size_words(want)}; pass --resize to resample it")
        return self.resample(truth, want)

    def size_words(self, shape: tuple[int, ...]) -> str:
        """A grid's size as its error messages say it."""
        return f"a {'x'.join(map(str, shape))} grid"

    def resample(self, truth: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """truth [*grid, C] resampled onto another grid (fit_grid with resize)."""
        raise NotImplementedError

    def write(self, out: Path, obs: Observation, res: Outputs, model: "Model", scale: int,
              out_dir: Path | None = None) -> list[Path]:
        """Write the kind's natural output files (out_dir: also each signal on its own, where that exists)."""
        raise NotImplementedError

    # -- acquisition plans (pt-plugin acquire) ---------------------------------------------------
    def check_plan_writer(self) -> None:
        """Fail before any work when drawing a plan needs an extra that is not installed."""

    def plan_scale(self, shape: tuple[int, ...]) -> int:
        """The plan picture's enlargement when --scale is not given."""
        return plan_scale(*shape[-2:])

    def write_plan(self, out: Path, obs: Observation, plan: "Acquisition", res: Outputs, model: "Model",
                   scale: int) -> list[Path]:
        """The plan's picture (plan_picture: the std given S with the picks numbered) and its table next to it
        (plan_paths; one row per pick: Acquisition.records in the model's axes)."""
        paths = plan_paths(out)
        picture_format(paths["picture"])
        self.plan_picture(paths["picture"], obs, plan, res, model, scale)
        write_table(paths["table"], plan.records(model.signal.axes))
        return list(paths.values())

    def plan_picture(self, path: Path, obs: Observation, plan: "Acquisition", res: Outputs, model: "Model",
                     scale: int) -> None:
        raise NotImplementedError

    def plan_caption(self, plan: "Acquisition") -> str:
        """What the plan picture shows (the CLI prints it)."""
        return f"the std given S with {plural(len(plan), 'pick')} numbered; a table of them"
