"""Curves y(x) on [-1, 1]: read (x, y) points from CSV, write a paper Fig. 9 plot and a CSV of the results."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..files import atomic
from ..grids import grid_positions
from ..text import plural
from .base import Kind, Observation, Outputs
from .extras import pyplot
from .pictures import picture_format
from .points import column_names, read_samples

if TYPE_CHECKING:
    from ..acquisition import Acquisition
    from ..model import Model

DEFAULT_POINTS = 256  # the grid the mean, std and samples are computed on when no --shape is given


class CurveKind(Kind):
    name = "curve"
    input_help = "a CSV of observed points x, y (--points FILE.csv)"
    takes_points = True

    def default_shape(self, model: "Model") -> tuple[int, ...]:
        return model.grid or (DEFAULT_POINTS,)

    def check_writer(self) -> None:
        pyplot()

    def read(self, model: "Model", path: Path, resize: bool, background: str = "white") -> Observation:
        """Observed points (x in [-1, 1], y): every row of the CSV is a sample of S; a header names the columns."""
        pos, val = read_samples(path, column_names(model, ("x", "y")), 1, model.value_range)
        return Observation(pos, val, self.default_shape(model), source=str(path))

    def output_paths(self, out: Path, out_dir: Path | None, num_samples: int) -> dict[str, Path]:
        return {"plot": Path(out), "table": Path(out).with_suffix(".csv")}

    def caption(self, obs: Observation, num_samples: int) -> str:
        what = [plural(len(obs.positions), "observed sample"), "the mean ± 2σ"]
        what += [plural(num_samples, "sampled curve")] if num_samples else []
        what += ["the true curve"] if obs.truth_positions is not None else []
        columns = "x, mean, std" + (", one column per sample" if num_samples else "")
        return f"a plot of {', '.join(what)}; a table of {columns}"

    def write(self, out: Path, obs: Observation, res: Outputs, model: "Model", scale: int,
              out_dir: Path | None = None) -> list[Path]:
        """A plot (observed points, mean, ±2σ band, every sample, truth if known) and a CSV next to it."""
        picture_format(out)
        out, table = self.output_paths(out, out_dir, len(res.samples)).values()
        plt = pyplot()
        x = grid_positions(*res.mean.shape[:1])[:, 0]
        mean, std = res.mean[:, 0], res.std[:, 0]
        fig, ax = plt.subplots(figsize=(2.0 * scale, 1.2 * scale), dpi=100)
        try:
            self._plot(ax, x, mean, std, obs, res, model)
            fig.tight_layout()
            with atomic(out) as tmp:
                fig.savefig(tmp, format=picture_format(out).lower())
        finally:
            plt.close(fig)
        with atomic(table) as tmp, open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["x", "mean", "std"] + [f"sample_{i + 1}" for i in range(len(res.samples))])
            for j in range(len(x)):
                w.writerow([f"{x[j]:.6g}", f"{mean[j]:.6g}", f"{std[j]:.6g}"]
                           + [f"{s[j, 0]:.6g}" for s in res.samples])
        return [out, table]

    @staticmethod
    def _plot(ax, x, mean, std, obs: Observation, res: Outputs, model: "Model") -> None:
        """The ±2σ band, every sample, the truth if known, the mean and the observed points on one axes."""
        ax.fill_between(x, mean - 2 * std, mean + 2 * std, color="tab:blue", alpha=0.18, label="mean ± 2σ")
        alpha = max(0.25, min(0.8, 4 / max(len(res.samples), 1)))
        for i, s in enumerate(res.samples):
            ax.plot(x, s[:, 0], lw=0.9, alpha=alpha, color="tab:orange", label="samples" if i == 0 else None)
        if obs.truth_positions is not None:
            order = np.argsort(obs.truth_positions[:, 0])
            ax.plot(obs.truth_positions[order, 0], obs.truth_values[order, 0], "k--", lw=1, label="truth")
        ax.plot(x, mean, color="tab:blue", lw=1.8, label="mean")
        ax.scatter(obs.positions[:, 0], obs.values[:, 0], c="k", s=16, zorder=5, label=f"|S| = {len(obs.positions)}")
        ax.set_xlim(-1, 1)
        ax.set_xlabel(model.signal.axes[0])
        ax.set_ylabel(model.signal.channels[0])
        ax.set_title(f"{model.meta['name']}: p(curve | {plural(len(obs.positions), 'sample')})", fontsize=10)
        ax.legend(fontsize=7, loc="best")

    def check_plan_writer(self) -> None:
        pyplot()

    def plan_scale(self, shape: tuple[int, ...]) -> int:
        return 4

    def plan_picture(self, path: Path, obs: Observation, plan: "Acquisition", res: Outputs, model: "Model",
                     scale: int) -> None:
        """Two plots over x: the mean ± 2σ with S (and the truth if known), and the std with the picks numbered."""
        plt = pyplot()
        x = grid_positions(*res.mean.shape[:1])[:, 0]
        mean, std = res.mean[:, 0], res.std[:, 0]
        fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(2.0 * scale, 1.8 * scale), dpi=100,
                                          gridspec_kw={"height_ratios": [3, 2]})
        try:
            self._plot(top, x, mean, std, obs, Outputs(res.mean, res.std, res.samples[:0]), model)
            top.set_xlabel("")
            picked = plan.positions[:, 0]
            for xp in picked:
                top.axvline(xp, color="tab:red", lw=0.6, alpha=0.5)
            bottom.plot(x, std, color="tab:blue", lw=1.5, label="std given S")
            at = np.interp(picked, x, std)
            bottom.scatter(picked, at, c="tab:red", s=14, zorder=5, label=f"{plural(len(plan), 'pick')} "
                                                                           f"({plan.criterion})")
            for n, (xp, yp) in enumerate(zip(picked, at), 1):
                bottom.annotate(str(n), (xp, yp), textcoords="offset points", xytext=(0, 5), ha="center",
                                fontsize=8, color="tab:red")
            bottom.set_ylim(0, max(float(std.max()), 1e-12) * 1.25)
            bottom.set_xlabel(model.signal.axes[0])
            bottom.set_ylabel(f"std of {model.signal.channels[0]}")
            bottom.legend(fontsize=7, loc="best")
            fig.tight_layout()
            with atomic(path) as tmp:
                fig.savefig(tmp, format=picture_format(path).lower())
        finally:
            plt.close(fig)

    def plan_caption(self, plan: "Acquisition") -> str:
        return (f"a plot of the mean ± 2σ and S, and of the std with {plural(len(plan), 'pick')} numbered; "
                "a table of them")
