"""Acquisition loops on the shipped models (issue 30): `python -m export.evaluate.acquisition --out docs/acquisition`.

A loop starts from a small random set, acquires a round of ROUND positions (fewer to land on the next
size) with pt_plugin.acquisition, observes the true values there, and repeats. Everything runs on
shipped exports through pt_plugin: a gray image model and a curve model (--image-model, --curve-model:
folders or registered names; by default the bundled ones the README quotes). The images are the test split
of the image model's data set, the curves are drawn from the curve model's family.
- Images (Fashion-MNIST by default): seeded held-out test images, 16 random pixels to 32, 64 and 128; mean-image MSE and
  NLL (bits per pixel, 256 levels) on the unobserved pixels for variance-greedy, entropy-greedy,
  random picks (nested sets) and a stratified design (a jittered grid of the whole size, drawn anew
  per size: a stronger baseline than adding to the 16 random pixels). Variants that answer how
  the choices were made: a sampled fantasy instead of the mean; lazy=False (every candidate scored
  at every pick, the reference loop).
- Curves (gp-curves by default): seeded curves of the exact GP prior on a 200-cell grid, 2 random cells to 4, 8 and 16;
  the exact GP's average posterior variance of y over [−1, 1] (1,001 points) at the chosen sets,
  against the oracle's own variance-greedy sets (which do not depend on the values) and random.
"""
from __future__ import annotations

import argparse
import time
from typing import Callable

import numpy as np

import pt_plugin
from export.datasets import FASHION_DIR
from export.datasets.curves import family, seed_sequence
from export.errors import UsageError, reports_errors
from export.evaluate.acquisition_report import markdown, plan_picture
from export.evaluate.images import evaluation_images, split_images
from export.evaluate.protocol import Shipped, load_shipped, write_report
from pt_plugin.acquisition import acquire

# the bundled models the README's acquisition figures come from (registered names): the defaults of
# --image-model and --curve-model, so that `python -m export.evaluate.acquisition` reruns that evaluation
IMAGE_MODEL, CURVE_MODEL = "fashion-mnist", "gp-curves"
IMAGE_START, IMAGE_SIZES = 16, (32, 64, 128)
CURVE_START, CURVE_SIZES, CURVE_CELLS = 2, (4, 8, 16), 200
ROUND = 16  # picks per acquire call before the true values are observed (measured: 8 and 1 did no better)
LEVEL = 1 / 255 / 2  # half a level of 8-bit values: NLL of the level a pixel's value was quantised to
IMAGE_METHODS = ("variance", "entropy", "random", "stratified", "variance-sampled", "variance-exact", "entropy-exact")
CURVE_METHODS = ("variance", "entropy", "random")


# ------------------------------------------------------------------------------------ images

def jittered_grid(n: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """n distinct pixels (flat indices): one uniform pixel in each of n cells of an r x c block grid
    (r = floor(sqrt n), c = ceil(n / r); when r·c > n, n of the blocks, chosen at random)."""
    r = int(np.floor(np.sqrt(n)))
    c = int(np.ceil(n / r))
    rows, cols = np.linspace(0, h, r + 1).astype(int), np.linspace(0, w, c + 1).astype(int)
    blocks = rng.permutation(r * c)[:n]
    out = []
    for b in blocks:
        i, j = divmod(int(b), c)
        out.append(rng.integers(rows[i], rows[i + 1]) * w + rng.integers(cols[j], cols[j + 1]))
    return np.asarray(out)


def image_scores(model, grid: np.ndarray, truth: np.ndarray, obs: np.ndarray) -> dict[str, float]:
    """Mean-image MSE and NLL (bits per pixel, 256 levels) on the pixels not in obs."""
    free = np.setdiff1d(np.arange(len(grid)), obs)
    dist = model.query((grid[obs], truth[obs, None]), grid[free])
    v = truth[free]
    upper = np.where(v >= 1 - LEVEL / 2, 10.0, v + LEVEL)  # the edge levels take the tails
    lower = np.where(v <= LEVEL / 2, -10.0, v - LEVEL)
    mass = np.maximum(dist.cdf(upper) - dist.cdf(lower), 1e-12)
    return {"mse": float(((dist.mean()[:, 0] - v) ** 2).mean()), "nll_bits": float(-np.log2(mass).mean())}


def rounds(model, positions: np.ndarray, truth: np.ndarray, obs: np.ndarray, n: int, method: str, seed: int,
           candidates: np.ndarray | None = None) -> np.ndarray:
    """obs grown to n indices (into positions) in acquire calls of at most ROUND picks, each followed by
    observing the true values. candidates None: the model's grid cells (positions is that grid)."""
    criterion, _, variant = method.partition("-")
    options = {"sampled": {"fantasy": "sample"}, "exact": {"lazy": False}}.get(variant, {})
    while len(obs) < n:
        free = None if candidates is None else np.setdiff1d(candidates, obs)
        a = acquire(model, positions[obs], truth[obs, None], k=min(ROUND, n - len(obs)),
                    candidates=None if free is None else positions[free], criterion=criterion,
                    seed=seed + len(obs), **options)
        obs = np.concatenate([obs, a.indices if free is None else free[a.indices]])
    return obs


def image_loop(model, grid: np.ndarray, truth: np.ndarray, method: str, start: np.ndarray, seed: int,
               sizes=IMAGE_SIZES) -> dict[int, np.ndarray]:
    """The observed pixels at the start and every size for one image and one method (stratified: its own
    jittered grid at every size, the start's size too)."""
    h, w = model.grid
    if method == "stratified":
        rng = np.random.default_rng([seed, 1])
        return {n: jittered_grid(n, h, w, rng) for n in (len(start),) + tuple(sizes)}
    obs, out = np.asarray(start), {len(start): np.asarray(start)}
    for n in sizes:
        obs = out[n] = rounds(model, grid, truth, obs, n, method, seed)
    return out


def evaluate_images(model, images: np.ndarray, methods, seed: int, log: Callable[[str], None]) -> dict:
    """Per method and size: the MSE and NLL of every image."""
    grid = pt_plugin.grid_positions(*model.grid)
    res = {m: {str(n): {"mse": [], "nll_bits": []} for n in (IMAGE_START,) + IMAGE_SIZES} for m in methods}
    for i, img in enumerate(images):
        t0 = time.time()
        start = np.random.default_rng([seed, i]).permutation(len(grid))[:IMAGE_START]
        for m in methods:
            for n, obs in image_loop(model, grid, img, m, start, seed * 1000 + i).items():
                for name, v in image_scores(model, grid, img, obs).items():
                    res[m][str(n)][name].append(v)
        log(f"image {i + 1}/{len(images)} ({time.time() - t0:.1f}s): MSE at 64 " + ", ".join(
            f"{m} {res[m]['64']['mse'][-1]:.4f}" for m in methods))
    return res


def held_out_images(shipped: Shipped, n: int, seed: int, data_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """n seeded test images of a gray image model's data set as [n, D] values in [0, 1], and their indices
    in the test split."""
    if shipped.kind != "image" or shipped.model.val_dim != 1:
        raise UsageError(f"--image-model {shipped.source}: expected a gray image model (1 channel), got a "
                         f"{shipped.kind} model with {shipped.model.val_dim} values per position")
    images, which = evaluation_images(split_images(shipped.data, data_dir, "test"), n, seed)
    return images[..., 0].astype(np.float64), which


# ------------------------------------------------------------------------------------ curves

def average_variance(fam, xs: np.ndarray, fine: np.ndarray) -> float:
    """The exact GP's posterior variance of y averaged over `fine` (it does not depend on the values)."""
    from export.evaluate.curves import posterior

    return float(posterior(fam, xs, np.zeros(len(xs)), fine)[1].mean())


def oracle_greedy(fam, cells: np.ndarray, obs: list[int], k: int) -> list[int]:
    """k more cells, each the one of largest exact posterior variance given the set so far."""
    from export.evaluate.curves import posterior

    obs = list(obs)
    for _ in range(k):
        free = np.setdiff1d(np.arange(len(cells)), obs)
        var = posterior(fam, cells[obs], np.zeros(len(obs)), cells[free])[1]
        obs.append(int(free[np.argmax(var)]))
    return obs


def curve_loop(model, fam, cells: np.ndarray, y: np.ndarray, method: str, start: list[int], seed: int) -> dict:
    """The observed cells at every size for one curve and one method."""
    obs, out = np.asarray(start), {}
    for n in CURVE_SIZES:
        if method == "oracle":
            obs = np.asarray(oracle_greedy(fam, cells, list(obs), n - len(obs)))
        else:
            obs = rounds(model, cells[:, None], y, obs, n, method, seed, np.arange(len(cells)))
        out[n] = obs
    return out


def evaluate_curves(shipped: Shipped, curves: int, methods, seed: int, log: Callable[[str], None]) -> dict:
    """Per method and size: the oracle's average posterior variance at every curve's chosen set (curves of the
    family the model trained on)."""
    if shipped.kind != "curve":
        raise UsageError(f"--curve-model {shipped.source}: expected a curve model, got a {shipped.kind} model")
    model, fam = shipped.model, family(shipped.data)
    cells = pt_plugin.grid_positions(CURVE_CELLS)[:, 0].astype(np.float64)
    fine = np.linspace(-1, 1, 1001)
    methods = ("oracle",) + tuple(methods)
    res = {m: {str(n): [] for n in CURVE_SIZES} for m in methods}
    for t in range(curves):
        rng = np.random.default_rng(seed_sequence("eval", seed, 30, t))  # 30: this issue's own stream
        y = fam.draw(cells[None], rng)[0]
        start = [int(i) for i in rng.choice(len(cells), CURVE_START, replace=False)]
        for m in methods:
            for n, obs in curve_loop(model, fam, cells, y, m, start, seed * 1000 + t).items():
                res[m][str(n)].append(average_variance(fam, cells[obs], fine))
    log(f"{curves} curves: average posterior variance at 16 " + ", ".join(
        f"{m} {np.mean(res[m]['16']):.4f}" for m in methods))
    return res


# ------------------------------------------------------------------------------------ main

@reports_errors
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.evaluate.acquisition", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="docs/acquisition")
    p.add_argument("--image-model", default=IMAGE_MODEL, help="a gray image model: export folder or registered name")
    p.add_argument("--curve-model", default=CURVE_MODEL, help="a curve model: export folder or registered name")
    p.add_argument("--images", type=int, default=12, help="seeded test images of the image model's data set")
    p.add_argument("--curves", type=int, default=50, help="seeded curves of the curve model's family")
    p.add_argument("--methods", default=",".join(IMAGE_METHODS), help="image methods, comma-separated")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data-dir", default=FASHION_DIR, help="where the image model's data set lives, when its spec "
                                                           "does not say")
    a = p.parse_args(argv)
    log = lambda s: print(s, flush=True)  # noqa: E731
    t0 = time.time()
    image_model, curve_model = (load_shipped(m, threads=a.threads) for m in (a.image_model, a.curve_model))
    images, which = held_out_images(image_model, a.images, a.seed, a.data_dir)
    methods = [m for m in a.methods.split(",") if m]
    res = {"settings": {"image_model": a.image_model, "curve_model": a.curve_model, "image_data": image_model.data,
                        "curve_data": curve_model.data, "images": a.images, "test_indices": which.tolist(),
                        "curves": a.curves, "seed": a.seed, "image_start": IMAGE_START,
                        "image_sizes": list(IMAGE_SIZES), "curve_start": CURVE_START, "curve_sizes": list(CURVE_SIZES),
                        "curve_cells": CURVE_CELLS, "round": ROUND, "threads": a.threads,
                        "pt_plugin": pt_plugin.__version__},
           "images": evaluate_images(image_model.model, images, methods, a.seed, log) if a.images else {},
           "curves": evaluate_curves(curve_model, a.curves, CURVE_METHODS, a.seed, log) if a.curves else {}}
    res["settings"]["minutes"] = round((time.time() - t0) / 60, 1)
    out = write_report(res, a.out, markdown)
    if a.images:
        plan_picture(image_model.model, images[0], a.seed, out / "plan.png")
    print(markdown(res), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
