"""Checkpoints of export.train: loading one as a model, and what it records about its training."""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from export.config import Config
from export.errors import ExportError  # raised here, imported from here by callers
from export.model import PixelTransformer


def load_checkpoint(path: str | Path) -> tuple[PixelTransformer, dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"checkpoint not found: {path}")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=False)
        cfg = Config.from_dict(ck["config"])
        model = PixelTransformer(cfg.model)
        model.load_state_dict(ck["model"])
    except (KeyError, TypeError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as e:
        raise ExportError(f"{path} is not a pt-plugin checkpoint (written by export.train): {e}") from None
    return model.eval(), ck


def total_steps(ck: dict[str, Any]) -> int:
    """Steps of a checkpoint's run plus those of the runs it was initialised from (its lineage)."""
    return int(ck.get("step") or 0) + sum(int(r.get("steps") or 0) for r in ck.get("lineage", []))
