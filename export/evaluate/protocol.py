"""What every evaluation protocol shares: the shipped model, run through pt_plugin, never through torch.

`python -m export.evaluate MODEL` measures the graphs users get (fp32, or `--precision int8`), with
the runtime's own sampler, so a model card's figures are those of the files next to it. Each
protocol (gray, rgb, curves, volume, video) supplies its data draw, baselines and metrics and calls
`predict` and `sample` here.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

import pt_plugin
from export.errors import UsageError
from pt_plugin.errors import PtPluginError


@dataclass(frozen=True)
class Shipped:
    """A loaded model folder (or registered name) and what its model.json says about its training."""
    model: pt_plugin.Model
    source: str        # what the user named: a folder or a registered name
    precision: str     # "fp32" or "int8"

    @property
    def meta(self) -> dict[str, Any]:
        return self.model.meta

    @property
    def data(self) -> str:
        """The data spec the model was trained on (model.json training.data)."""
        return self.meta.get("training", {}).get("data", "")

    @property
    def steps(self) -> int:
        """Training steps over every run behind the weights (model.json training.total_steps or steps)."""
        training = self.meta.get("training", {})
        return int(training.get("total_steps", training.get("steps", 0)) or 0)

    @property
    def kind(self) -> str:
        return self.model.signal.kind

    def settings(self) -> dict[str, Any]:
        """The report's record of what was measured."""
        return {"model": self.source, "precision": self.precision, "kind": self.kind, "data": self.data,
                "step": self.steps, "runtime": f"pt_plugin {pt_plugin.__version__}"}


def load_shipped(source: str | Path, precision: str = "fp32", threads: int = 2) -> Shipped:
    """An export folder (weights/NAME) or a registered model name, loaded on the CPU through pt_plugin."""
    try:
        model = pt_plugin.load(source, device="cpu", threads=threads or None, precision=precision)
    except PtPluginError as e:
        raise UsageError(f"{source}: {e}; expected an exported model folder (weights/NAME) or a registered "
                         "model name") from None
    return Shipped(model, str(source), precision)


def predict(model: pt_plugin.Model, positions: np.ndarray, values: np.ndarray, queries: np.ndarray,
            truth: np.ndarray | None = None, batch: int = 32,
            log_prob: Callable[[Any, np.ndarray], np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Means [n, q, val_dim] at queries [n, q, pos_dim] given sets positions [n, k, pos_dim] / values
    [n, k, val_dim], and, with truth [n, q, val_dim], its log-likelihood [n, q] in nats: log_prob(distribution,
    truth), by default the mixture's density (Distribution.log_prob). Sets go `batch` at a time through
    encode_batch (all n sets share k)."""
    n = len(positions)
    mean = np.empty(queries.shape[:2] + (model.val_dim,), np.float32)
    logp = None if truth is None else np.empty(queries.shape[:2], np.float64)
    for lo in range(0, n, batch):
        hi = min(n, lo + batch)
        ctx = model.encode_batch(list(zip(positions[lo:hi], values[lo:hi])))
        dist = model.query(ctx, queries[lo:hi])
        if dist.shape == (queries.shape[1],):  # one set: query() drops the batch axis
            dist = dist[None]
        mean[lo:hi] = dist.mean()
        if logp is not None:
            logp[lo:hi] = dist.log_prob(truth[lo:hi]) if log_prob is None else log_prob(dist, truth[lo:hi])
    return mean, logp


def sample(model: pt_plugin.Model, positions: np.ndarray, values: np.ndarray, queries: np.ndarray,
           num_samples: int, seed: int, **options: Any) -> np.ndarray:
    """[num_samples, q, val_dim] signals drawn by the runtime's hybrid sampler (Model.sample, its defaults
    unless options say otherwise) for one set."""
    return model.sample(positions, values, queries, num_samples=num_samples, seed=seed, **options)


def write_report(res: dict, out: str | Path, markdown: Callable[[dict], str]) -> Path:
    """metrics.json (infinities as null) and metrics.md into out; returns the folder."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(finite_or_none(res), indent=1, ensure_ascii=False))
    (out / "metrics.md").write_text(markdown(res))
    return out


def finite_or_none(obj):
    """JSON-safe copy: infinities and NaNs become null."""
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [finite_or_none(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
