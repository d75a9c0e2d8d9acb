"""Procedural chairs, stools and tables, and single solids, as exact signed distance fields (issues 14, 33).

A shape is a union of primitives (oriented boxes, capped cylinders, spheres), so its SDF is the min of
their exact SDFs (negative inside). Kinds: chair (seat, four legs, a solid or two-post back that
may tilt, optional arms and crossbars), stool (round or square seat, three or four legs or a
pedestal) and table (wide thin top, four legs, optional crossbars), with random sizes and
proportions. Each is scaled so that its longest side spans [-0.9, 0.9] and centred in the
[-1, 1]³ position cube; y is up, the front faces +z. A solid (kind "solid": one sphere, box or cylinder of
random size, orientation and place, not rescaled) is in the training mixture only (TRAINING_KIND_WEIGHTS):
a model that has seen nothing but furniture fills a sphere's samples with furniture (issue 33). Evaluation,
validation and the demo keep the furniture mixture (KIND_WEIGHTS), so their figures stay comparable across
models; export.evaluate measures solids apart (SOLID_WEIGHTS). Values are the SDF truncated to ±TRUNCATION.

Positions for training and evaluation are uniform in the cube, except a share NEAR_SHARE drawn
uniformly from the shell |sdf| < NEAR_BAND around the surface (by rejection). In training, a share
NEIGHBOUR_SHARE of the queries is instead put next to a sample of S (its position plus N(0, NEIGHBOUR_STD²)
per axis): samples never coincide with continuous queries, and without such neighbours a model can train
for thousands of steps on positions alone before it learns to read nearby samples. Training,
validation and evaluation shapes come from disjoint seed streams (export.datasets.curves.seed_sequence).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from export.datasets.base import Dataset, SignalDraw, TrainingData
from export.datasets.curves import seed_sequence
from export.datasets.images import log_uniform_int, positions_near

TRUNCATION = 0.3   # values are clip(sdf, -TRUNCATION, TRUNCATION)
EXTENT = 0.9       # the longest side of every shape spans [-EXTENT, EXTENT]
NEAR_SHARE = 0.5   # share of positions drawn from the near-surface shell
NEAR_BAND = 0.05   # the shell: |sdf| < NEAR_BAND
NEIGHBOUR_SHARE = 0.25  # training queries placed next to a sample of S
NEIGHBOUR_STD = 0.03
if TYPE_CHECKING:
    from export.config import Config

KIND_WEIGHTS = {"chair": 0.6, "stool": 0.2, "table": 0.2}  # evaluation, validation, the demo
TRAINING_KIND_WEIGHTS = {"chair": 0.45, "stool": 0.15, "table": 0.15, "solid": 0.25}
SOLID_WEIGHTS = {"solid": 1.0}


@dataclass(frozen=True)
class Primitive:
    """An oriented box (half extents `half`), a capped cylinder along its local y (radius half[0],
    half height half[1]) or a sphere (radius half[0]); local coordinates are (p - center) @ rot."""
    kind: str  # "box" | "cylinder" | "sphere"
    center: np.ndarray
    half: np.ndarray
    rot: np.ndarray

    def sdf(self, p: np.ndarray) -> np.ndarray:
        """Exact signed distance at points p [N, 3]."""
        q = (p - self.center) @ self.rot
        if self.kind == "sphere":
            return np.linalg.norm(q, axis=1) - self.half[0]
        if self.kind == "box":
            d = np.abs(q) - self.half
        else:
            d = np.stack([np.hypot(q[:, 0], q[:, 2]) - self.half[0], np.abs(q[:, 1]) - self.half[1]], 1)
        return np.linalg.norm(np.maximum(d, 0), axis=1) + np.minimum(d.max(1), 0)

    def corners(self) -> np.ndarray:
        """[8, 3] corners of a box that contains the primitive (for the bounding box of a shape)."""
        h = {"box": self.half, "sphere": np.full(3, self.half[0])}.get(
            self.kind, np.array([self.half[0], self.half[1], self.half[0]]))
        signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
        return self.center + (signs * h) @ self.rot.T

    def scaled(self, shift: np.ndarray, scale: float) -> "Primitive":
        return Primitive(self.kind, (self.center - shift) * scale, self.half * scale, self.rot)


def rot_x(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def box(center, half, rot=None) -> Primitive:
    return Primitive("box", np.asarray(center, float), np.asarray(half, float), np.eye(3) if rot is None else rot)


def cylinder(center, radius: float, half_height: float) -> Primitive:
    return Primitive("cylinder", np.asarray(center, float), np.array([radius, half_height]), np.eye(3))


class Shape:
    """A union of primitives, scaled and centred into [-EXTENT, EXTENT]³ (fit), or taken as they are."""

    def __init__(self, kind: str, parts: list[Primitive], fit: bool = True):
        if fit:
            corners = np.concatenate([p.corners() for p in parts])
            lo, hi = corners.min(0), corners.max(0)
            parts = [p.scaled((lo + hi) / 2, 2 * EXTENT / (hi - lo).max()) for p in parts]
        self.kind, self.parts = kind, parts

    def sdf(self, p: np.ndarray) -> np.ndarray:
        """Exact (untruncated) signed distance [N] at points p [N, 3]."""
        return np.min([part.sdf(p) for part in self.parts], axis=0)

    def values(self, p: np.ndarray) -> np.ndarray:
        """The signal: the SDF truncated to ±TRUNCATION, [N, 1] float32."""
        return np.clip(self.sdf(p), -TRUNCATION, TRUNCATION)[:, None].astype(np.float32)

    def positions(self, n: int, rng: np.random.Generator, near_share: float = NEAR_SHARE) -> np.ndarray:
        """[n, 3] positions: uniform in [-1, 1]³, a binomial share near_share uniform in the shell |sdf| < NEAR_BAND."""
        near = int(rng.binomial(n, near_share))
        found, have = [], 0
        while have < near:
            cand = rng.uniform(-1, 1, (max(4096, 8 * (near - have)), 3))
            keep = cand[np.abs(self.sdf(cand)) < NEAR_BAND]
            found.append(keep)
            have += len(keep)
        shell = np.concatenate(found)[:near] if near else np.zeros((0, 3))
        out = np.concatenate([shell, rng.uniform(-1, 1, (n - near, 3))])
        return out[rng.permutation(n)].astype(np.float32)


def legs(rng: np.random.Generator, half_w: float, half_d: float, height: float, n: int = 4) -> list[Primitive]:
    """n legs from the floor (y = 0) to `height`, square or round, inset under a half_w × half_d top."""
    r = rng.uniform(0.02, 0.05)
    inset = rng.uniform(0.0, 0.08)
    round_legs = rng.random() < 0.5
    if n == 4:
        spots = [(sx * (half_w - inset - r), sz * (half_d - inset - r)) for sx in (-1, 1) for sz in (-1, 1)]
    else:  # evenly round a circle
        a0 = rng.uniform(0, 2 * math.pi)
        rad = min(half_w, half_d) - inset - r
        spots = [(rad * math.cos(a0 + 2 * math.pi * i / n), rad * math.sin(a0 + 2 * math.pi * i / n)) for i in range(n)]
    make = (lambda x, z: cylinder((x, height / 2, z), r, height / 2)) if round_legs else \
        (lambda x, z: box((x, height / 2, z), (r, height / 2, r)))
    return [make(x, z) for x, z in spots]


def crossbars(rng: np.random.Generator, half_w: float, half_d: float, inset: float) -> list[Primitive]:
    """Thin bars between the legs along each side, and one across the front, at a random height."""
    y, t = rng.uniform(0.08, 0.25), rng.uniform(0.012, 0.025)
    x, z = half_w - inset, half_d - inset
    bars = [box((sx * x, y, 0), (t, t, z)) for sx in (-1, 1)]
    if rng.random() < 0.5:
        bars.append(box((0, y, z), (x, t, t)))
    return bars


def chair(rng: np.random.Generator) -> list[Primitive]:
    w, d, t, h = rng.uniform(0.3, 0.55), rng.uniform(0.28, 0.5), rng.uniform(0.025, 0.06), rng.uniform(0.35, 0.6)
    parts = [box((0, h - t, 0), (w, t, d))] + legs(rng, w, d, h - 2 * t)
    back_h, back_t, tilt = rng.uniform(0.3, 0.75), rng.uniform(0.02, 0.05), math.radians(rng.uniform(0, 20))
    r = rot_x(-tilt)  # lean backwards (towards -z)
    pivot = np.array([0, h, -d + back_t])
    if rng.random() < 0.6:  # a solid back
        parts.append(box(pivot + r @ [0, back_h / 2, 0], (w, back_h / 2, back_t), r))
    else:  # two posts and a top rail
        post = rng.uniform(0.025, 0.05)
        parts += [box(pivot + r @ [sx * (w - post), back_h / 2, 0], (post, back_h / 2, back_t), r) for sx in (-1, 1)]
        rail = rng.uniform(0.05, 0.15)
        parts.append(box(pivot + r @ [0, back_h - rail, 0], (w, rail, back_t), r))
    if rng.random() < 0.3:  # arms on posts at the front corners
        arm_h, at = rng.uniform(0.15, 0.3), rng.uniform(0.02, 0.04)
        for sx in (-1, 1):
            parts.append(box((sx * (w - at), h + arm_h, 0), (at, at, d)))
            parts.append(box((sx * (w - at), h + arm_h / 2, d - at), (at, arm_h / 2, at)))
    if rng.random() < 0.4:
        parts += crossbars(rng, w, d, 0.06)
    return parts


def stool(rng: np.random.Generator) -> list[Primitive]:
    h, t = rng.uniform(0.4, 0.8), rng.uniform(0.025, 0.06)
    if rng.random() < 0.5:
        rad = rng.uniform(0.2, 0.35)
        parts, w = [cylinder((0, h - t, 0), rad, t)], rad / math.sqrt(2)
    else:
        w = rng.uniform(0.2, 0.35)
        parts = [box((0, h - t, 0), (w, t, w))]
    kind = rng.random()
    if kind < 0.3:  # a pedestal on a disc
        parts += [cylinder((0, h / 2, 0), rng.uniform(0.03, 0.07), h / 2 - t),
                  cylinder((0, 0.02, 0), rng.uniform(0.15, 0.3), 0.02)]
    else:
        parts += legs(rng, w, w, h - 2 * t, n=3 if kind < 0.55 else 4)
    return parts


def table(rng: np.random.Generator) -> list[Primitive]:
    w, d, t, h = rng.uniform(0.5, 1.0), rng.uniform(0.3, 0.7), rng.uniform(0.02, 0.05), rng.uniform(0.5, 0.8)
    parts = [box((0, h - t, 0), (w, t, d))] + legs(rng, w, d, h - 2 * t)
    if rng.random() < 0.4:
        parts += crossbars(rng, w, d, 0.06)
    return parts


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A rotation matrix uniform over SO(3) (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def solid(rng: np.random.Generator) -> list[Primitive]:
    """One sphere (radius 0.25-0.85), box or cylinder (0.15-0.7 half extents), turned at random, placed so that it
    stays inside [-EXTENT, EXTENT]³."""
    form = rng.choice(["sphere", "box", "cylinder"], p=[0.4, 0.3, 0.3])
    if form == "sphere":
        part = Primitive("sphere", np.zeros(3), np.array([rng.uniform(0.25, 0.85), 0.0]), np.eye(3))
    elif form == "box":
        part = Primitive("box", np.zeros(3), rng.uniform(0.15, 0.6, 3), random_rotation(rng))
    else:
        part = Primitive("cylinder", np.zeros(3), np.array([rng.uniform(0.15, 0.6), rng.uniform(0.15, 0.7)]),
                         random_rotation(rng))
    part = part.scaled(np.zeros(3), min(1.0, EXTENT / np.abs(part.corners()).max()))  # a turned box may not fit
    room = np.maximum(EXTENT - np.abs(part.corners()).max(0), 0.0)
    return [Primitive(part.kind, rng.uniform(-room, room), part.half, part.rot)]


BUILDERS = {"chair": chair, "stool": stool, "table": table, "solid": solid}


def random_shape(rng: np.random.Generator, weights: dict[str, float] | None = None) -> Shape:
    """One shape: a kind drawn by `weights` (KIND_WEIGHTS: the furniture), then its proportions."""
    weights = KIND_WEIGHTS if weights is None else weights
    kind = str(rng.choice(list(weights), p=list(weights.values())))
    return Shape(kind, BUILDERS[kind](rng), fit=kind != "solid")


def shapes(n: int, stream: str, seed: int = 0, weights: dict[str, float] | None = None) -> list[Shape]:
    """n shapes of a seed stream ("train" / "val" / "eval"), kinds drawn by `weights` (KIND_WEIGHTS); the same call
    gives the same shapes."""
    rng = np.random.default_rng(seed_sequence(stream, 14, seed))
    return [random_shape(rng, weights) for _ in range(n)]


def evaluation_shapes(n: int, seed: int = 0, weights: dict[str, float] | None = None) -> list[Shape]:
    """n evaluation shapes (the eval seed stream; the furniture unless `weights` says otherwise)."""
    return shapes(n, "eval", seed, weights)


class ShapeSampler:
    """Training batches (S positions, S values, S mask, Q positions, Q values) of fresh shapes, [B, ·, 3 | 1]."""

    def __init__(self, min_samples: int, max_samples: int, num_queries: int, batch_size: int,
                 seed: np.random.SeedSequence, max_set_tokens: int = 0, near_share: float = NEAR_SHARE,
                 neighbour_share: float = NEIGHBOUR_SHARE, weights: dict[str, float] | None = None):
        self.kmin, self.kmax, self.nq, self.bs, self.max_tokens = min_samples, max_samples, num_queries, batch_size, \
            max_set_tokens
        self.near, self.neighbours, self.weights = near_share, neighbour_share, weights
        self.rng = np.random.default_rng(seed)
        self.g = torch.Generator().manual_seed(int(self.rng.integers(2**62)))

    def batch(self):
        k = log_uniform_int(self.kmin, self.kmax, self.g)
        bs = min(self.bs, max(1, self.max_tokens // k)) if self.max_tokens else self.bs
        pos, val = [], []
        for _ in range(bs):
            shape = random_shape(self.rng, self.weights)
            p = shape.positions(k + self.nq, self.rng, self.near)
            m = int(self.rng.binomial(self.nq, self.neighbours))  # queries next to a sample of S
            if m:
                p[k:k + m] = positions_near(p[:k], m, NEIGHBOUR_STD, self.rng)
            pos.append(p)
            val.append(shape.values(p))
        pos, val = torch.from_numpy(np.stack(pos)), torch.from_numpy(np.stack(val))
        mask = torch.ones(bs, k, dtype=torch.bool)
        return pos[:, :k], val[:, :k], mask, pos[:, k:], val[:, k:]


# --------------------------------------------------------------------------- registry entries

DEMO_GRID = 32      # the demo's truth grid (each axis)
DEMO_POINTS = 4096  # the demo's dense points that `--observed K` draws S from


def shape_training(cfg: Config, rank: int) -> TrainingData:
    """Fresh shapes of the training mixture (furniture and solids) at every step; validation shapes (furniture,
    queries as evaluation draws them) from their own stream, so validation NLL compares with earlier runs."""
    tc = cfg.train

    def shape_sampler(step: int) -> ShapeSampler:
        return ShapeSampler(tc.min_samples, tc.max_samples, tc.num_queries, tc.batch_size,
                            seed_sequence("train", tc.seed, rank, step), tc.max_set_tokens,
                            weights=TRAINING_KIND_WEIGHTS)
    val = ShapeSampler(tc.min_samples, tc.max_samples, tc.num_queries, 8, seed_sequence("val"), tc.max_set_tokens,
                       neighbour_share=0.0)
    return TrainingData(shape_sampler, [val.batch() for _ in range(8)],
                        "procedural chairs, stools, tables and single solids drawn on the fly")


def shape_demo(spec: str, data_dir: str, seed: int) -> dict[str, np.ndarray]:
    """Both forms: `truth` [32, 32, 32, 1], the truncated SDF of evaluation_shapes(1, seed)[0] on the grid (array order
    [Z, Y, X], the picture's ground truth), and DEMO_POINTS dense points (half near the surface, as in training)."""
    from pt_plugin.grids import grid_positions

    shape = evaluation_shapes(1, seed)[0]
    grid = (DEMO_GRID,) * 3
    pos = shape.positions(DEMO_POINTS, np.random.default_rng(seed_sequence("eval", 14, seed, 1)))
    return {"truth": shape.values(grid_positions(*grid)).reshape(*grid, 1),
            "positions": pos, "values": shape.values(pos)}


def shape_draws(spec: str, data_dir: str, split: str) -> SignalDraw:
    """Sets of procedural shapes, positions drawn as training draws them (half near the surface); the training
    stream for split "train" (int8 calibration), the evaluation stream otherwise (parity)."""
    def draw(meta: dict, n: int, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        train = split == "train"
        bodies = shapes(n, "train" if train else "eval", int(rng.integers(2**31)), TRAINING_KIND_WEIGHTS if train
                        else None)
        pos = np.stack([body.positions(k, rng) for body in bodies]).astype(np.float32)
        val = np.stack([body.values(p) for body, p in zip(bodies, pos)]).astype(np.float32)
        return pos, val
    return draw


DATASETS = (Dataset("shapes", "volume", "procedural chairs, stools and tables (and, in training, single solids) as "
                    "SDFs truncated to ±0.3", (3, 1),
                    shape_training, shape_demo, shape_draws),)
