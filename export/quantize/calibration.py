"""The sets static int8 is calibrated on, and the graph inputs they make.

CALIBRATION_BATCHES padded batches of sets with |S| log-uniform over 1..CALIBRATION_MAX_SET, drawn from a
source's training split (export.quantize.sources); queries on the model's grid and at random positions.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from export.quantize.graphs import float32_graphs, session
from export.quantize.sources import draws

CALIBRATION_BATCHES = 24
CALIBRATION_SEED = 0
CALIBRATION_MAX_SET = 2048
CALIBRATION_TOKENS = 4096  # sets per calibration batch x |S|, so that large sets come in small batches
CALIBRATION_QUERIES = 256
CALIBRATION_GRID_QUERIES = 4096  # a whole 28x28 or 32x32 image; a 32³ volume is subsampled (memory)


def _log_uniform_sizes(n: int, top: int, rng: np.random.Generator) -> np.ndarray:
    """n set sizes spread log-uniformly over 1..top, one per stratum of log size (so every scale is seen)."""
    u = (np.arange(n) + rng.uniform(size=n)) / n
    return np.clip(np.round(np.exp(u * np.log(top))), 1, top).astype(int)


def _grid(meta: dict[str, Any]) -> np.ndarray | None:
    """The model's training grid as query positions [H*W*..., pos_dim], or None for a continuous signal."""
    from pt_plugin import grid_positions

    shape = meta.get("grid")
    return grid_positions(*shape).reshape(-1, meta["pos_dim"]).astype(np.float32) if shape else None


def _calibration_sets(meta: dict[str, Any], source: str, data_dir: Path | None) -> list[tuple[np.ndarray, ...]]:
    """Padded batches (pos, val, mask, qpos) of sets with sizes log-uniform over 1..CALIBRATION_MAX_SET.

    Each batch holds one set of the drawn size and shorter ones padded to it (as pt_plugin pads:
    position 0, the lowest value); queries are the model's grid (every other batch) or random positions.
    """
    rng = np.random.default_rng(CALIBRATION_SEED)
    draw = draws(meta, source, data_dir)
    cells = _grid(meta)
    out = []
    for i, k in enumerate(_log_uniform_sizes(CALIBRATION_BATCHES, CALIBRATION_MAX_SET, rng)):
        b = int(np.clip(CALIBRATION_TOKENS // k, 1, 8))
        pos, val = draw(meta, b, k, rng)
        lengths = np.concatenate([[k], _log_uniform_sizes(b - 1, k, rng)])
        mask = np.arange(k)[None, :] < lengths[:, None]
        pos[~mask], val[~mask] = 0.0, meta["value_range"][0]
        out.append((pos, val, mask, _queries(meta, cells, b, i, rng)))
    return out


def _queries(meta: dict[str, Any], cells: np.ndarray | None, b: int, i: int, rng: np.random.Generator) -> np.ndarray:
    """Queries of calibration batch i: the grid's cells in even batches (at most CALIBRATION_GRID_QUERIES of
    them: a 32³ volume would not fit), random positions otherwise."""
    if cells is None or i % 2 != 0:
        return rng.uniform(-1, 1, (b, CALIBRATION_QUERIES, meta["pos_dim"])).astype(np.float32)
    if len(cells) > CALIBRATION_GRID_QUERIES:
        cells = cells[np.sort(rng.choice(len(cells), CALIBRATION_GRID_QUERIES, replace=False))]
    return np.broadcast_to(cells, (b,) + cells.shape).copy()


def calibration_feeds(folder: Path, meta: dict[str, Any], source: str,
                      data_dir: Path | None = None) -> tuple[list[dict], list[dict]]:
    """Encoder and decoder inputs for calibration; the decoder's memory comes from the float32 encoder."""
    enc = session(float32_graphs(folder)[0])
    enc_feeds, dec_feeds = [], []
    for pos, val, mask, qpos in _calibration_sets(meta, source, data_dir):
        feed = {"sample_positions": pos, "sample_values": val, "sample_mask": mask}
        (memory,) = enc.run(None, feed)
        enc_feeds.append(feed)
        dec_feeds.append({"memory": memory, "sample_mask": mask, "query_positions": qpos})
    return enc_feeds, dec_feeds
