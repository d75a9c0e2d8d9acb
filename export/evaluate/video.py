"""Evaluation of a video model on moving Fashion-MNIST test clips (issue 15): `python -m export.evaluate CK`.

Protocol: seeded test clips (8 frames of 32×32, test garments, export.datasets.video.test_clips); per |S|, |S|
voxel centres are observed (the same draws for every method) and every other voxel is predicted.
Metrics over the unobserved voxels: NLL in bits per pixel of the 256-level value (model and conditional
Gaussian), MSE of the mean clip, and the spread (per-voxel std across samples) of hybrid autoregressive
samples (N' and step fraction as the runtime's defaults) for the first clips.

Baselines: the conditional Gaussian on the 8,192-dimensional clip (fitted on training-garment clips,
ridge DEFAULT_RIDGE), the nearest observed voxel in space-time (voxel units: one frame = one pixel)
and per-frame linear fill (Delaunay in each frame; a frame with fewer than 3 observed pixels takes the
space-time nearest).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from export.datasets.images import load_idx_images
from export.datasets.video import FASHION_DIR, FRAMES, SIZE, make_clips, shrink, test_clips
from export.errors import UsageError
from export.evaluate.baselines import DEFAULT_RIDGE, ConditionalGaussian, discretized_gaussian_log_prob, linear_fill
from export.evaluate.images import (
    LN2,
    ar_sample,
    finite_or_none,
    fmt,
    load_model,
    model_predict,
    observed_indices,
    unobserved_mask,
)
from pt_plugin import grid_positions

SIZES = (64, 256, 1024)
METHODS = {"model": "PixelTransformer", "cond_gauss": "Cond. Gaussian", "nearest": "Nearest (space-time)",
           "linear": "Linear (per frame)"}
DEFAULT_AUTOREGRESSIVE, DEFAULT_STEP_FRACTION = 2048, 0.1  # pt_plugin's Model.sample defaults
D = FRAMES * SIZE * SIZE


def voxel_coords() -> np.ndarray:
    """[D, 3] integer (t, y, x) of every voxel, row-major as the clips are flattened."""
    return np.stack(np.unravel_index(np.arange(D), (FRAMES, SIZE, SIZE)), -1)


def nearest_spacetime(clips: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """[n, D]: every voxel takes the value of the nearest observed voxel (Euclidean in voxel units)."""
    coords = torch.from_numpy(voxel_coords()).double()
    out = []
    for clip, o in zip(clips, idx):
        near = torch.cdist(coords, coords[torch.from_numpy(o)]).argmin(1).numpy()
        out.append(clip[o][near])
    return np.stack(out)


def per_frame_linear(clips: np.ndarray, idx: np.ndarray, nearest: np.ndarray) -> np.ndarray:
    """[n, D]: linear fill inside each frame from that frame's observed pixels (space-time nearest where
    a frame has fewer than 3)."""
    out = nearest.copy()
    frame_px = SIZE * SIZE
    for i, (clip, o) in enumerate(zip(clips, idx)):
        for t in range(FRAMES):
            here = o[(o // frame_px) == t]
            if len(here) >= 3:
                out[i, t * frame_px:(t + 1) * frame_px] = linear_fill(clip[here], here - t * frame_px, SIZE, SIZE)
    return out


def score(pred: np.ndarray, logp: np.ndarray | None, clips: np.ndarray, idx: np.ndarray) -> dict:
    """NLL (bits per pixel) and MSE over the unobserved voxels."""
    target = unobserved_mask(idx, D)
    nll = None if logp is None else float(-logp[target].mean() / LN2)
    return {"nll_bits": nll, "mse": float(((pred - clips) ** 2)[target].mean())}


def evaluate_video(checkpoint_path: str | Path, out: str | Path, clips: int = 64, sizes: tuple[int, ...] = SIZES,
                   seed: int = 0, samples: int = 3, sample_clips: int = 2, gauss_train: int = 10000,
                   data_dir: str = FASHION_DIR, threads: int = 2, log: Callable[[str], None] = print) -> dict:
    """Run the protocol of the module docstring, write metrics.json / metrics.md / frames.png into `out`."""
    if threads:
        torch.set_num_threads(threads)
    model, step = load_model(checkpoint_path, pos_dim=3)
    truth = test_clips(clips, seed, data_dir).reshape(clips, D).astype(np.float64)
    bad = [s for s in sizes if not 1 <= s < D]
    if bad:
        raise UsageError(f"--sizes {bad} outside 1..{D - 1}: expected set sizes below the {D} cells of a clip")
    centers = torch.from_numpy(grid_positions(FRAMES, SIZE, SIZE))
    t0 = time.time()
    garments = shrink(load_idx_images(data_dir, "train"))[:-500]  # export.train holds out the last 500
    train = make_clips(garments, gauss_train, np.random.default_rng([15, 1, seed])).reshape(gauss_train, D)
    gauss = ConditionalGaussian(DEFAULT_RIDGE).fit(train)
    del train
    log(f"conditional Gaussian fitted on {gauss_train} training clips ({time.time() - t0:.1f}s)")
    gen = torch.Generator().manual_seed(seed)
    n_sub = min(sample_clips, clips) if samples > 0 else 0
    results, strip = {}, None
    for size in sizes:
        t0 = time.time()
        idx = observed_indices(clips, D, size, seed)
        obs = np.take_along_axis(truth, idx, 1)
        mean, logp = model_predict(model, truth.astype(np.float32), idx, centers, 2)
        g_mean, g_var = gauss.predict(idx, obs, chunk=4)
        g_logp = discretized_gaussian_log_prob(torch.from_numpy(truth), g_mean, g_var.clamp_min(1e-12).sqrt()).numpy()
        near = nearest_spacetime(truth, idx)
        r = {"model": score(mean, logp, truth, idx), "cond_gauss": score(g_mean.numpy(), g_logp, truth, idx),
             "nearest": score(near, None, truth, idx), "linear": score(per_frame_linear(truth, idx, near), None,
                                                                       truth, idx)}
        msg = f"|S|={size}: NLL model/CG {fmt(r['model']['nll_bits'], 3)} {fmt(r['cond_gauss']['nll_bits'], 3)}; " \
              "MSE " + " ".join(f"{r[k]['mse']:.4f}" for k in METHODS)
        if n_sub:
            smp = ar_sample(model, truth[:n_sub].astype(np.float32), idx[:n_sub], centers, samples,
                            DEFAULT_STEP_FRACTION, gen, DEFAULT_AUTOREGRESSIVE)
            target = unobserved_mask(idx[:n_sub], D)
            r["samples"] = {"std": float(smp.std(1, ddof=1)[target].mean()) if samples > 1 else None,
                            "mse": float(((smp - truth[:n_sub, None]) ** 2).mean(1)[target].mean()),
                            "clips": n_sub, "samples": samples}
            msg += f"; samples std {fmt(r['samples']['std'], 4)}"
            if size == 256:
                strip = frame_strip(truth[0], idx[0], mean[0], smp[0])
        results[str(size)] = r
        log(f"{msg} ({time.time() - t0:.1f}s)")
    res = {"settings": {"checkpoint": str(checkpoint_path), "step": step, "clips": clips, "seed": seed,
                        "sizes": list(sizes), "voxels": D, "samples": samples, "sample_clips": n_sub,
                        "autoregressive": DEFAULT_AUTOREGRESSIVE, "step_fraction": DEFAULT_STEP_FRACTION,
                        "ridge": DEFAULT_RIDGE, "gauss_train": gauss_train, "kind": "video"},
           "sizes": results}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(finite_or_none(res), indent=1, ensure_ascii=False))
    (out / "metrics.md").write_text(markdown(res))
    if strip is not None:
        from pt_plugin.kinds.pictures import save_picture

        save_picture(out / "frames.png", strip)
    return res


def frame_strip(truth: np.ndarray, idx: np.ndarray, mean: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """Paper Fig. 10: rows truth | S (unobserved blue) | mean | samples, one column per frame."""
    from pt_plugin.images import figure_grid

    seen = np.tile(np.array([0.25, 0.35, 0.75]), (D, 1))
    seen[idx] = truth[idx, None]
    rows = [truth, seen, mean, *samples]
    return figure_grid([[np.asarray(r).reshape(FRAMES, SIZE, SIZE, -1)[t] for t in range(FRAMES)] for r in rows],
                       scale=2)


def summary(report: dict) -> dict:
    """What model.json carries: per |S|, the model's NLL and mean MSE, the Gaussian's NLL and the best
    baseline's MSE (the issue-15 targets)."""
    sizes = {size: {"nll_bits": r["model"]["nll_bits"], "mse": r["model"]["mse"],
                    "cond_gauss_nll_bits": r["cond_gauss"]["nll_bits"],
                    "best_baseline_mse": min(r[m]["mse"] for m in METHODS if m != "model")}
             for size, r in report["sizes"].items()}
    return {"protocol": f"python -m export.evaluate ({report['settings']['clips']} seeded test clips, "
                        "unobserved voxels)", "sizes": sizes}


def markdown(res: dict) -> str:
    """One row per |S|: NLL of the model and the Gaussian, MSE of every method, the samples' spread."""
    st = res["settings"]
    lines = [f"# Video evaluation (step {st['step']})", "",
             f"{st['clips']} moving Fashion-MNIST test clips (8×32×32, seed {st['seed']}); metrics over unobserved "
             f"voxels; NLL in bits/pixel (256 levels); conditional Gaussian fitted on {st['gauss_train']} training "
             f"clips (ridge {st['ridge']:g}); samples: {st['samples']} per clip for the first {st['sample_clips']} "
             f"clips, N′ {st['autoregressive']}, step fraction {st['step_fraction']}.", "",
             "| \\|S\\| | PT NLL | CG NLL | PT − CG | " + " | ".join(f"{n} MSE" for n in METHODS.values())
             + " | sample std | sample MSE |", "|" + "---:|" * (6 + len(METHODS))]
    for size, r in res["sizes"].items():
        s = r.get("samples", {})
        diff = None if r["cond_gauss"]["nll_bits"] is None else r["model"]["nll_bits"] - r["cond_gauss"]["nll_bits"]
        lines.append(f"| {size} | {fmt(r['model']['nll_bits'], 3)} | {fmt(r['cond_gauss']['nll_bits'], 3)} | "
                     f"{fmt(diff, 3)} | " + " | ".join(f"{r[m]['mse']:.5f}" for m in METHODS)
                     + f" | {fmt(s.get('std'), 4)} | {fmt(s.get('mse'), 5)} |")
    return "\n".join(lines) + "\n"
