"""Runs side by side at equal training minutes: which size to train (issue 33, "let the learning curves decide").

`python -m export.tools.compare_runs LABEL=CHECKPOINT [LABEL=CHECKPOINT ...] --out DIR` reads the validation history
of the last run of each checkpoint (the run that wrote it; earlier runs of its lineage are the common start) and
writes DIR/comparison.json, comparison.md (validation NLL of every run at the same minute marks, linearly
interpolated between its validations, with each run's size and steps per minute) and comparison.png. The runs are
meant to have gone side by side on one machine, one thread each, so that their minutes are worth the same.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from export.errors import UsageError, reports_errors
from export.tools.learning_curve import new_figure, read_checkpoint, sig

ARCH_KEYS = ("d_model", "n_heads", "enc_layers", "dec_layers", "ffn")


def parameters(ck: dict[str, Any]) -> int:
    """Trainable parameters of a checkpoint's weights (buffers such as the bin centres left out)."""
    return int(sum(v.numel() for k, v in ck["model"].items() if k != "centers"))


def run_summary(label: str, ck: dict[str, Any]) -> dict[str, Any]:
    """One run: its architecture, size, precision, steps, minutes and validation points (minutes, step, NLLs)."""
    hist = sorted((h for h in ck.get("history") or [] if h.get("minutes") is not None and h.get("val_nll") is not None),
                  key=lambda h: h["minutes"])
    if len(hist) < 2:
        raise UsageError(f"{label}: fewer than two validations with minutes in its history; nothing to compare")
    arch = {k: ck["config"]["model"][k] for k in ARCH_KEYS}
    points = [{"minutes": sig(h["minutes"]), "step": int(h.get("step") or 0), "val_nll": sig(h["val_nll"])}
              | ({"val_buffer_nll": sig(h["val_buffer_nll"])} if h.get("val_buffer_nll") is not None else {})
              for h in hist]
    minutes, steps = float(ck.get("minutes") or hist[-1]["minutes"]), int(ck.get("step") or hist[-1]["step"])
    return {"label": label, "architecture": arch, "parameters": parameters(ck), "precision": ck.get("precision"),
            "steps": steps, "minutes": sig(minutes), "steps_per_minute": sig(steps / max(minutes, 1e-9), 3),
            "points": points}


def at_minutes(run: dict[str, Any], marks: list[float], key: str = "val_nll") -> list[float | None]:
    """The run's figure at each minute mark, linear between its validations (None past its last one)."""
    pts = [p for p in run["points"] if key in p]
    xs, ys = [p["minutes"] for p in pts], [p[key] for p in pts]
    return [sig(float(np.interp(m, xs, ys))) if xs and m <= xs[-1] + 1e-9 else None for m in marks]


def compare(runs: list[dict[str, Any]], every: float) -> dict[str, Any]:
    """Every run's NLL and buffer NLL at common minute marks (every `every` minutes up to the shortest run)."""
    end = min(r["points"][-1]["minutes"] for r in runs)
    marks = [sig(m) for m in np.arange(0.0, end + 1e-9, every)]
    if marks[-1] < end:
        marks.append(sig(end))
    return {"x": "training minutes of each run, side by side on one machine", "marks": marks, "runs": runs,
            "val_nll": {r["label"]: at_minutes(r, marks) for r in runs},
            "val_buffer_nll": {r["label"]: at_minutes(r, marks, "val_buffer_nll") for r in runs}}


def markdown(data: dict[str, Any], title: str) -> str:
    """The comparison as Markdown: one line per run (size, speed) and a table of NLL at each minute mark."""
    runs = data["runs"]
    lines = [f"# {title}", "", "| run | d_model | heads | blocks (enc+dec) | ffn | parameters | precision | steps | "
             "minutes | steps/min |", "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    for r in runs:
        a = r["architecture"]
        lines.append(f"| {r['label']} | {a['d_model']} | {a['n_heads']} | {a['enc_layers']}+{a['dec_layers']} | "
                     f"{a['ffn']} | {r['parameters']:,} | {r['precision']} | {r['steps']:,} | {r['minutes']:.1f} | "
                     f"{r['steps_per_minute']:.0f} |")
    labels = [r["label"] for r in runs]
    lines += ["", "Validation NLL (nats per value, lower is better) at equal minutes; buffer NLL in brackets:", "",
              "| minutes | " + " | ".join(labels) + " |", "|---:|" + "---:|" * len(labels)]
    for i, m in enumerate(data["marks"]):
        cells = []
        for lab in labels:
            v, b = data["val_nll"][lab][i], data["val_buffer_nll"][lab][i]
            cells.append("—" if v is None else f"{v:.4f}" + (f" ({b:.4f})" if b is not None else ""))
        lines.append(f"| {m:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(data: dict[str, Any], path: Path, title: str) -> None:
    """comparison.png: each run's validation NLL (solid) and buffer NLL (dashed) against its minutes."""
    fig, ax = new_figure()
    for i, r in enumerate(data["runs"]):
        pts = r["points"]
        ax.plot([p["minutes"] for p in pts], [p["val_nll"] for p in pts], marker=".", color=f"C{i}",
                label=f"{r['label']} ({r['parameters'] / 1e6:.2f} M)")
        buf = [(p["minutes"], p["val_buffer_nll"]) for p in pts if "val_buffer_nll" in p]
        if buf:
            ax.plot(*zip(*buf), linestyle="--", color=f"C{i}")
    ax.set_xlabel("training minutes (side by side, 1 thread each)")
    ax.set_ylabel("validation NLL (nats per value)")
    ax.set_title(title, fontsize="medium")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)


def labelled(specs: list[str]) -> list[tuple[str, Path]]:
    """LABEL=PATH pairs; UsageError for anything else or a repeated label."""
    out = []
    for spec in specs:
        label, sep, path = spec.partition("=")
        if not sep or not label or not path:
            raise UsageError(f"{spec!r}: expected LABEL=CHECKPOINT, e.g. 4+4=runs/a/model.pt")
        out.append((label, Path(path)))
    if len({lab for lab, _ in out}) != len(out):
        raise UsageError("each run needs its own label")
    return out


@reports_errors
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.tools.compare_runs", description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="LABEL=CHECKPOINT of python -m export.train (model.pt or last.pt)")
    p.add_argument("--out", required=True, help="folder for comparison.json, .md and .png")
    p.add_argument("--every", type=float, default=10.0, help="minutes between the table's rows (default 10)")
    p.add_argument("--title", default="Runs at equal training minutes")
    a = p.parse_args(argv)
    if not a.every > 0:
        raise UsageError(f"--every {a.every}: expected a positive number of minutes")
    runs = [run_summary(label, read_checkpoint(path)) for label, path in labelled(a.runs)]
    data = compare(runs, a.every)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.json").write_text(json.dumps(data, indent=1) + "\n")
    (out / "comparison.md").write_text(markdown(data, a.title))
    plot(data, out / "comparison.png", a.title)
    print(markdown(data, a.title), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
