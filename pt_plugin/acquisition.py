"""Where to observe next: greedy acquisition of the positions whose value the model knows least.

Greedy (DeepSensor's GreedyAlgorithm): score every candidate by a criterion of p(v | S)
(pt_plugin.criteria), pick the best, add it to S with a fantasy value, and repeat k times.

The fantasy is the model's mean at the pick (the default); fantasy="sample" draws it from p(v | S)
instead (seeded). On 20 held-out Fashion-MNIST images (docs/acquisition) the two were alike: MSE at
|S| = 64 0.581x random with the mean, 0.582x with samples (0.369x and 0.366x at 128). The mean
keeps a plan deterministic and costs no extra decoder call, so it is the default.

Lazy greedy (Minoux): a pick changes the scores of few candidates much, mostly lowering those near
it. After a pick only the candidates whose last score is highest are scored again, in batches of
REFRESH, 2·REFRESH, ... until the best freshly scored candidate beats every stale score; it is the
pick. Where scores only fall as S grows (a GP's variance does) this is exactly the greedy choice;
for the model it is an approximation: variance-greedy sets were as good as lazy=False's (MSE at
|S| = 64 0.581x against 0.584x random) at 3.9 instead of 18 mean passes for k = 16
(docs/benchmarks/acquisition.md). Scores do rise at times when a pick joins S: on 6 test images
(16 random pixels, 8 greedy picks each), 21 % of the 50 best-scored candidates rose in variance
after a pick and 41 % in entropy, so lazy entropy picks were worse: 0.719x against 0.665x random.
lazy=False scores every candidate at every step: the reference loop.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from . import criteria, entropy, inputs
from .errors import InputError
from .grids import cell_index, grid_positions

REFRESH = 32          # candidates scored again after a pick, first batch (doubling until the pick is sure)
SCORE_CHUNK = 4096    # candidates per decoder call when scoring many
FANTASIES = ("mean", "sample")
ACQUIRE_OPTIONS = ("shape", "fantasy", "lazy")  # acquire's keyword-only options (Model.acquire's **options)


@dataclass(frozen=True, eq=False)
class Acquisition:
    """The chosen positions in the order they were picked.

    positions [k, pos_dim] float32; indices [k] into the candidates (when they were None: the flat,
    row-major index of the grid cell in grid_positions order); scores [k]: each pick's criterion value
    when it was chosen (for "random", the uniform key it was ranked by); grid: the grid (array order)
    whose cells the indices count when the candidates were grid cells (the model's or shape=), else None.
    """
    positions: np.ndarray
    indices: np.ndarray
    scores: np.ndarray
    criterion: str
    grid: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def cells(self) -> np.ndarray | None:
        """[k, len(grid)] grid cell of each pick in array order ((row, col) for an image), or None."""
        if self.grid is None:
            return None
        return np.stack(np.unravel_index(self.indices, self.grid), -1)

    def records(self, axes: Sequence[str]) -> list[dict[str, Any]]:
        """One dict per pick, in order: rank (1 = first), the position per axis (model.signal.axes), the
        candidate index, the grid cell per array axis as "<axis>_cell" (grid candidates only) and the
        score. The rows of a CSV, or the items of a JSON answer."""
        axes = list(axes)
        if len(axes) != self.positions.shape[1]:
            raise InputError(f"records needs one axis name per position column ({self.positions.shape[1]}), got "
                             f"{axes}; pass model.signal.axes")
        cells = self.cells()
        array_axes = list(reversed(axes))
        out = []
        for n in range(len(self)):
            row: dict[str, Any] = {"rank": n + 1}
            row.update({a: float(x) for a, x in zip(axes, self.positions[n])})
            row["index"] = int(self.indices[n])
            if cells is not None:
                row.update({f"{a}_cell": int(c) for a, c in zip(array_axes, cells[n])})
            row["score"] = float(self.scores[n])
            out.append(row)
        return out


def acquire(model: Any, positions, values, k: int = 1, candidates=None, criterion: str = "variance",
            seed: int | None = None, *, shape=None, fantasy: str = "mean", lazy: bool = True) -> Acquisition:
    """The k candidates worth observing next given S = (positions, values), picked greedily.

    model: a pt_plugin Model (only its public API is used: encode, query, check_set, grid_shape).
    candidates: positions [N, pos_dim] in [-1, 1]; None takes the cells of a grid whose centre holds no
    sample of S: `shape` (array order, as in mean_grid) or the model's training grid.
    criterion: "variance" | "entropy" | "improvement" | "random" (see pt_plugin.criteria).
    seed: for "random" and fantasy="sample".
    lazy=False scores every candidate at every pick (the reference loop, about k mean passes).
    Bad input raises InputError.
    """
    criterion = criteria.check(criterion, model.val_dim)
    fantasy, lazy = _fantasy(fantasy), _flag(lazy, "lazy")
    pos, val = model.check_set(positions, values)
    k, seed = inputs.positive_int(k, "k"), inputs.seed(seed)
    cand, index, grid = candidate_set(model, pos, candidates, shape)
    if k > len(cand):
        raise InputError(f"k={k} is more than the {len(cand)} candidate position(s) left; ask for at most "
                         f"{len(cand)}")
    check_memory(model, len(pos), k, len(cand), criterion)
    if criterion == "random":
        picks, scores = _random(len(cand), k, seed)
    else:
        picks, scores = Greedy(model, pos, val, cand, criterion, fantasy, seed).run(k, lazy)
    return Acquisition(cand[picks], index[picks], np.asarray(scores, np.float64), criterion, grid)


def _flag(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InputError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _fantasy(fantasy) -> str:
    if not isinstance(fantasy, str) or fantasy not in FANTASIES:
        raise InputError(f"unknown fantasy {fantasy!r}; expected 'mean' (the model's mean, the default) or "
                         "'sample' (a value drawn from the model)")
    return fantasy


def candidate_set(model: Any, pos: np.ndarray, candidates, shape=None
                  ) -> tuple[np.ndarray, np.ndarray, tuple[int, ...] | None]:
    """Candidate positions [N, pos_dim], their indices and their grid: the given candidates (grid None), or
    the cells of `shape` (default: the model's grid) whose centre holds no sample of S."""
    if candidates is not None:
        if shape is not None:
            raise InputError("give candidates= or shape=, not both: shape= takes the cells of a grid as the "
                             "candidates")
        cand = inputs.positions(candidates, model.pos_dim, "candidates")
        if len(cand) == 0:
            raise InputError("candidates is empty; give at least one position [N, pos_dim] to choose from")
        return cand, np.arange(len(cand)), None
    if shape is None and model.grid is None:
        raise InputError(f"this {model.signal.kind} model has no training grid to take candidates from; give "
                         f"candidates=, positions [N, {model.pos_dim}] in [-1, 1], or shape=, a grid in array "
                         f"order (e.g. shape=(200,) or candidates=pt_plugin.grid_positions(200) for a curve)")
    grid = model.grid_shape(shape)
    cells = grid_positions(*grid)
    cell, on_centre = cell_index(pos, grid)
    free = np.setdiff1d(np.arange(len(cells)), cell[on_centre])
    if len(free) == 0:
        raise InputError(f"every cell of the {'x'.join(map(str, grid))} grid already holds a sample of S: no "
                         "candidate is left; give candidates= or a finer shape=")
    return cells[free], free, tuple(grid)


def check_memory(model: Any, observed: int, k: int, n: int, criterion: str) -> None:
    """Refuse an acquisition whose memory estimate exceeds PT_PLUGIN_MAX_MEMORY_GB (pt_plugin.inputs)."""
    kept = n * (model.pos_dim + model.val_dim + 3) * 8  # candidates, their scores, means and flags
    work = 0
    if criterion != "random":
        size = observed + k  # the set grows by one sample per pick
        bins = len(model.centers)
        work = (inputs.encoder_bytes(model, 1, size)
                + inputs.decoder_bytes(model, 1, size, min(n, SCORE_CHUNK), 3 * bins * (model.val_dim + 2)))
        if criterion == "entropy":
            work += 4 * 8 * entropy.ROW_BUDGET  # a few float64 intermediates of one chunk of rows
    inputs.check_memory(kept + work, f"acquiring k={k:,} of {n:,} candidates given {observed:,} samples",
                        "ask for fewer positions (k: the set grows by one sample per pick) or give fewer candidates")


def _random(n: int, k: int, seed) -> tuple[np.ndarray, np.ndarray]:
    """The seeded baseline: k of n candidates ranked by uniform keys, and their keys."""
    keys = np.random.default_rng(seed).random(n)
    picks = np.argsort(-keys, kind="stable")[:k]
    return picks, keys[picks]


class Greedy:
    """One greedy acquisition: the growing set, every candidate's last score and mean, and which are fresh."""

    def __init__(self, model: Any, pos: np.ndarray, val: np.ndarray, cand: np.ndarray, criterion: str,
                 fantasy: str, seed):
        self.model, self.cand, self.criterion, self.fantasy = model, cand, criterion, fantasy
        self.rng = np.random.default_rng(seed)
        self.pos, self.val = list(pos), list(val)
        self.best = float(val.max()) if criterion == "improvement" else None
        self.score = np.full(len(cand), -np.inf)
        self.mean = np.zeros((len(cand), model.val_dim), np.float32)
        self.alive = np.ones(len(cand), bool)
        self.fresh = np.zeros(len(cand), bool)
        self.queried = 0  # candidate scorings, for benchmarks

    def run(self, k: int, lazy: bool) -> tuple[list[int], list[float]]:
        """k picks and their scores; lazy=False scores every live candidate at every step."""
        picks, scores = [], []
        for step in range(k):
            ctx = self.model.encode(np.asarray(self.pos), np.asarray(self.val))
            self.fresh[:] = False
            if step == 0 or not lazy:
                self.rescore(ctx, np.flatnonzero(self.alive))
            i = self.best_fresh(ctx)
            picks.append(i)
            scores.append(float(self.score[i]))
            self.add(ctx, i)
        return picks, scores

    def best_fresh(self, ctx) -> int:
        """The live candidate with the highest score, scoring stale ones again until the top one is fresh."""
        batch = REFRESH
        while True:
            live = np.flatnonzero(self.alive)
            top = live[np.argmax(self.score[live])]
            if self.fresh[top]:
                return int(top)
            stale = live[~self.fresh[live]]
            self.rescore(ctx, stale[np.argsort(-self.score[stale], kind="stable")[:batch]])
            batch *= 2

    def rescore(self, ctx, idx: np.ndarray) -> None:
        """Score candidates idx given the encoded set ctx."""
        for s in range(0, len(idx), SCORE_CHUNK):
            part = idx[s:s + SCORE_CHUNK]
            dist = self.model.query(ctx, self.cand[part])
            self.score[part] = criteria.score(self.criterion, dist, self.best)
            self.mean[part] = dist.mean()
        self.fresh[idx] = True
        self.queried += len(idx)

    def add(self, ctx, i: int) -> None:
        """Add candidate i to the set with its fantasy value; it is no longer a candidate."""
        if self.fantasy == "mean":
            value = self.mean[i]
        else:
            value = self.model.query(ctx, self.cand[i:i + 1]).sample(self.rng)[0].astype(np.float32)
        self.pos.append(self.cand[i])
        self.val.append(value)
        self.alive[i] = False
        if self.best is not None:
            self.best = max(self.best, float(value[0]))
