"""A checkpoint's learning curve: validation NLL against cumulative training minutes, over its lineage of runs.

`python -m export.tools.learning_curve CHECKPOINT [CHECKPOINT ...] [--out DIR]` writes learning_curve.json and
learning_curve.png per checkpoint (default DIR: docs/{name}, name the checkpoint's file stem), from the
validation history that export.train records for the run and for each run behind its --init weights.
"""
from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path
from typing import Any

from export.errors import DataError, ExportError, UsageError, reports_errors

X_LABEL = "cumulative training minutes (wall clock, this project's 2-core CPU)"
DIGITS = 5  # significant digits of every figure in the JSON: a few KB per model


def sig(x: float | None, digits: int = DIGITS) -> float | None:
    """x rounded to `digits` significant digits (None stays None)."""
    return None if x is None else float(f"{float(x):.{digits}g}")


def runs_of(ck: dict[str, Any]) -> list[dict[str, Any]]:
    """Each run behind a checkpoint, oldest first, as {init, steps, minutes, history, precision}: its lineage
    (where `init` is the checkpoint that run left, the next one's --init), then the run that wrote it."""
    runs = [{"init": r.get("init"), "steps": r.get("steps"), "minutes": r.get("minutes"),
             "history": r.get("history") or [], "precision": r.get("precision")} for r in ck.get("lineage") or []]
    requested = (ck.get("config") or {}).get("train", {}).get("precision")
    precision = ck.get("precision") or (requested if requested in ("fp32", "bf16") else None)  # not "auto"
    return runs + [{"init": None, "steps": ck.get("step"), "minutes": ck.get("minutes"),
                    "history": ck.get("history") or [], "precision": precision}]


def points(history: list[dict[str, Any]], start_minutes: float, start_step: int) -> list[dict[str, Any]]:
    """A run's validation points, in step order, on the cumulative axes; points without a minute or an NLL
    (not written by any export.train so far) are left out rather than guessed."""
    out = []
    for h in sorted(history, key=lambda h: h.get("step") or 0):
        if h.get("minutes") is None or h.get("val_nll") is None:
            continue
        p = {"minutes": sig(start_minutes + h["minutes"]), "step": start_step + int(h.get("step") or 0),
             "val_nll": sig(h["val_nll"])}
        if h.get("val_buffer_nll") is not None:
            p["val_buffer_nll"] = sig(h["val_buffer_nll"])
        out.append(p)
    return out


def curve(ck: dict[str, Any], name: str) -> dict[str, Any]:
    """The learning curve of an in-memory checkpoint of export.train: its runs, oldest first, each offset by
    the minutes and steps of the runs before it (a run with no recorded history has no points)."""
    runs, minutes, steps = [], 0.0, 0
    for i, r in enumerate(runs_of(ck), 1):
        run_minutes = float(r["minutes"] or 0.0)
        run_steps = int(r["steps"] or 0)
        run = {"run": i, "init": r["init"], "steps": run_steps, "minutes": sig(run_minutes),
               "start_minutes": sig(minutes), "start_step": steps}
        if r["precision"]:
            run["precision"] = r["precision"]
        run["points"] = points(r["history"], minutes, steps)
        runs.append(run)
        minutes, steps = minutes + run_minutes, steps + run_steps
    return {"model": name, "x": X_LABEL, "total_minutes": sig(minutes), "total_steps": steps, "runs": runs}


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The dict of a checkpoint of export.train (its weights are not built into a model: only the history is
    read); ExportError, saying what was expected, for anything else."""
    import torch  # heavy: only once a checkpoint is read

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"checkpoint not found: {path}")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, ValueError, EOFError, AttributeError, ImportError,
            pickle.UnpicklingError) as e:
        raise ExportError(f"{path} is not a pt-plugin checkpoint (written by export.train): {e}") from None
    if not isinstance(ck, dict) or "step" not in ck or "config" not in ck:
        raise ExportError(f"{path} is not a pt-plugin checkpoint (written by export.train): expected a dict "
                          "with 'config', 'step' and 'history'")
    return ck


def outlier_limits(values: list[float]) -> tuple[float, float] | None:
    """y limits that leave out the first value (an untrained model's NLL, 18 nats on polynomials) where it
    would squash the rest of the curve (above the others by over twice their range); None: matplotlib's."""
    rest = values[1:]
    if len(rest) < 2:
        return None
    low, high = min(rest), max(rest)
    margin = 0.08 * (high - low)
    return (low - margin, high + margin) if values[0] > high + 2 * (high - low) else None


def new_figure():
    """(figure, axes) of a 6 × 3.5 inch plot on matplotlib's Agg canvas; UsageError naming matplotlib without it."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError("the plot needs matplotlib: pip install matplotlib") from None
    fig = Figure(figsize=(6, 3.5), dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def plot(data: dict[str, Any], path: Path) -> None:
    """learning_curve.png: validation NLL against cumulative minutes, one colour per run (buffer NLL dashed),
    the start of each run after the first marked by a dotted line."""
    fig, ax = new_figure()
    colours = [f"C{i % 10}" for i in range(len(data["runs"]))]
    for run, colour in zip(data["runs"], colours):
        if run["run"] > 1:
            ax.axvline(run["start_minutes"], color="0.8", linestyle=":", linewidth=1)
        pts = run["points"]
        if not pts:
            continue
        xs = [p["minutes"] for p in pts]
        ax.plot(xs, [p["val_nll"] for p in pts], marker=".", color=colour,
                label=f"run {run['run']} ({run['steps']} steps)")
        buffer = [(p["minutes"], p["val_buffer_nll"]) for p in pts if "val_buffer_nll" in p]
        if buffer:
            ax.plot(*zip(*buffer), linestyle="--", color=colour, label=f"run {run['run']} buffer")
    nll = [p for run in data["runs"] for p in run["points"]]
    buffers = [p["val_buffer_nll"] for p in nll[1:] if "val_buffer_nll" in p]
    limits = outlier_limits([p["val_nll"] for p in nll] + buffers)
    if limits is not None:  # the first point off the scale: its value written in the (empty) lower left
        ax.set_ylim(*limits)
        ax.text(0.02, 0.04, f"off the scale: {nll[0]['val_nll']:.3g} at step {nll[0]['step']}",
                transform=ax.transAxes, fontsize="small", color="0.3")
    ax.set_xlabel("cumulative training minutes (2-core CPU)")
    ax.set_ylabel("validation NLL (nats per value)")
    ax.set_title(data["model"])
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)


def write(data: dict[str, Any], out: Path) -> None:
    """learning_curve.json and learning_curve.png of a curve, into out (made if need be)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "learning_curve.json").write_text(json.dumps(data, indent=1) + "\n")
    plot(data, out / "learning_curve.png")


def out_dirs(checkpoints: list[str], out: str) -> list[tuple[Path, str, Path]]:
    """(checkpoint, model name, output folder) per checkpoint; `{name}` in out is the checkpoint's file stem.
    UsageError where two checkpoints would write into one folder."""
    jobs = [(Path(c), Path(c).stem, Path(out.replace("{name}", Path(c).stem))) for c in checkpoints]
    seen: dict[Path, Path] = {}
    for ck, _, folder in jobs:
        if folder.resolve() in seen:
            raise UsageError(f"{seen[folder.resolve()]} and {ck} would both write into {folder}: give --out "
                             "a folder with {name} in it (e.g. --out /tmp/lc/{name})")
        seen[folder.resolve()] = ck
    return jobs


@reports_errors
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.tools.learning_curve", description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+", help="checkpoints of python -m export.train (model.pt or last.pt)")
    p.add_argument("--out", default="docs/{name}",
                   help="folder for learning_curve.json and .png; {name} is the checkpoint's file stem "
                        "(default docs/{name})")
    a = p.parse_args(argv)
    for path, name, folder in out_dirs(a.checkpoints, a.out):
        ck = read_checkpoint(path)
        try:
            data = curve(ck, name)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise DataError(f"{path}: its lineage or validation history is malformed ({e!r}); expected what "
                            "python -m export.train records") from None
        write(data, folder)
        nll = [pt["val_nll"] for r in data["runs"] for pt in r["points"]] or ["-"]
        runs = f"{len(data['runs'])} run" + ("s" if len(data["runs"]) != 1 else "")
        print(f"{name}: {runs}, {data['total_minutes']} minutes, val NLL {nll[0]} → {nll[-1]}: "
              f"{folder / 'learning_curve.json'}, {folder / 'learning_curve.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
