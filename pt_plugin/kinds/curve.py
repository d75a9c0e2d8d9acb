"""Curves y(x) on [-1, 1]: read (x, y) points from CSV, write a paper Fig. 9 plot and a CSV of the results."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..grids import grid_positions
from .base import Kind, Observation, Outputs
from .extras import pyplot
from .pictures import picture_format
from .points import read_samples

if TYPE_CHECKING:
    from ..model import Model

DEFAULT_POINTS = 256  # the grid the mean, std and samples are computed on when no --shape is given


class CurveKind(Kind):
    name = "curve"
    input_help = "--points FILE.csv with columns x, y"

    def default_shape(self, model: "Model") -> tuple[int, ...]:
        return model.grid or (DEFAULT_POINTS,)

    def check_writer(self) -> None:
        pyplot()

    def read(self, model: "Model", path: Path, resize: bool) -> Observation:
        """Observed points (x in [-1, 1], y): every row of the CSV is a sample of S."""
        pos, val = read_samples(path, ("x", "y"), 1, model.value_range)
        return Observation(pos, val, self.default_shape(model), source=str(path))

    def write(self, out: Path, obs: Observation, res: Outputs, model: "Model", scale: int,
              out_dir: Path | None = None) -> list[Path]:
        """A plot (observed points, mean, ±2σ band, samples, truth if known) and a CSV next to it."""
        picture_format(out)
        plt = pyplot()
        x = grid_positions(*res.mean.shape[:1])[:, 0]
        mean, std = res.mean[:, 0], res.std[:, 0]
        fig, ax = plt.subplots(figsize=(2.0 * scale, 1.2 * scale), dpi=100)
        ax.fill_between(x, mean - 2 * std, mean + 2 * std, color="tab:blue", alpha=0.18, label="mean ± 2σ")
        for i, s in enumerate(res.samples[:5]):
            ax.plot(x, s[:, 0], lw=0.9, alpha=0.8, color="tab:orange", label="samples" if i == 0 else None)
        if obs.truth_positions is not None:
            order = np.argsort(obs.truth_positions[:, 0])
            ax.plot(obs.truth_positions[order, 0], obs.truth_values[order, 0], "k--", lw=1, label="truth")
        ax.plot(x, mean, color="tab:blue", lw=1.8, label="mean")
        ax.scatter(obs.positions[:, 0], obs.values[:, 0], c="k", s=16, zorder=5, label=f"|S| = {len(obs.positions)}")
        ax.set_xlim(-1, 1)
        ax.set_xlabel(model.signal.axes[0])
        ax.set_ylabel(model.signal.channels[0])
        ax.set_title(f"{model.meta['name']}: p(curve | {len(obs.positions)} samples)", fontsize=10)
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, format=picture_format(out).lower())
        plt.close(fig)
        table = out.with_suffix(".csv")
        with open(table, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["x", "mean", "std"] + [f"sample_{i + 1}" for i in range(len(res.samples))])
            for j in range(len(x)):
                w.writerow([f"{x[j]:.6g}", f"{mean[j]:.6g}", f"{std[j]:.6g}"]
                           + [f"{s[j, 0]:.6g}" for s in res.samples])
        return [out, table]
