"""Evaluation of a video model on moving Fashion-MNIST test clips (issue 15): `python -m export.evaluate weights/NAME`.

The shipped graphs run through pt_plugin (export.evaluate.protocol), so the figures are those of the files
users load. Protocol: seeded evaluation clips (8 frames of 32×32, test garments,
export.datasets.video.evaluation_clips); per |S|, |S| voxel centres are observed (the same draws for every
method) and every other voxel is predicted. Metrics over the unobserved voxels: NLL in bits per pixel of
the 256-level value (model and conditional Gaussian), MSE of the mean clip, and the spread (per-voxel std
across samples) and error of clips drawn by the runtime's sampler (Model.sample with its defaults, as
`pt-plugin sample` draws them) for the first clips, and their coherence frame by frame (export.evaluate.coherence:
total variation and isolated pixels against the truth's and against independent per-voxel draws).

Baselines: the conditional Gaussian on the 8,192-dimensional clip (fitted on training-garment clips,
ridge DEFAULT_RIDGE), the nearest observed voxel in space-time (voxel units: one frame = one pixel)
and per-frame linear fill (Delaunay in each frame; a frame with fewer than 3 observed pixels takes the
space-time nearest).
"""
from __future__ import annotations

import argparse
import time
from typing import Callable

import numpy as np
import torch

import pt_plugin
from export.datasets import FASHION_DIR, dataset
from export.datasets.images import load_idx_images
from export.datasets.video import DATASETS, FRAMES, SIZE, evaluation_clips, make_clips, shrink
from export.errors import UsageError, int_list
from export.evaluate.baselines import DEFAULT_RIDGE, ConditionalGaussian, discretized_gaussian_log_prob, linear_fill
from export.evaluate.coherence import coherence, coherence_log
from export.evaluate.images import (
    COHERENCE_HEAD,
    LN2,
    coherence_cells,
    coherence_note,
    fmt,
    has_coherence,
    model_samples,
    n_prime,
    observed_indices,
    predict_levels,
    sample_stats,
    sampler_phrase,
    sampler_settings,
    unobserved_mask,
)
from export.evaluate.protocol import Shipped, write_report

NAME = "video"
SIZES = (64, 256, 1024)
VIDEO_METHODS = {"model": "PixelTransformer", "cond_gauss": "Cond. Gaussian", "nearest": "Nearest (space-time)",
                 "linear": "Linear (per frame)"}
GAUSS_TRAIN = 10_000  # training clips of the conditional Gaussian when --gauss-train is 0 (clips are drawn: no "all")
HELD_OUT = 500        # the last training garments, which export.train holds out for validation
STRIP_SIZE = 256      # the |S| of frames.png
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


# ------------------------------------------------------------------------------------- protocol

def check_data(shipped: Shipped) -> None:
    """Refuse a model trained on other data than the clips this protocol draws."""
    if dataset(shipped.data) not in DATASETS:
        raise UsageError(f"{shipped.source} was trained on {shipped.data!r}; this protocol measures models of "
                         f"{', '.join(d.name for d in DATASETS)} (export.datasets.video)")


def fit_gaussian(data_dir: str, clips: int, seed: int) -> ConditionalGaussian:
    """The conditional Gaussian on `clips` clips of the training garments export.train trains on."""
    garments = shrink(load_idx_images(data_dir, "train"))[:-HELD_OUT]
    train = make_clips(garments, clips, np.random.default_rng([15, 1, seed])).reshape(clips, D)
    return ConditionalGaussian(DEFAULT_RIDGE).fit(train)


def model_clips(model: pt_plugin.Model, truth: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The shipped model's mean [n, D] at every voxel centre given the voxels idx [n, k] (centres and true
    values) and the 256-level log-likelihood [n, D] of every true voxel, two clips per call."""
    grid = pt_plugin.grid_positions(FRAMES, SIZE, SIZE)
    clips = truth[..., None].astype(np.float32)
    values = np.take_along_axis(clips, idx[..., None], 1)
    mean, logp = predict_levels(model, grid[idx], values, np.broadcast_to(grid, (len(truth),) + grid.shape), clips,
                                batch=2)
    return mean[..., 0].astype(np.float64), logp


def score_size(model: pt_plugin.Model, gauss: ConditionalGaussian, truth: np.ndarray, size: int,
               seed: int) -> tuple[dict, np.ndarray, np.ndarray]:
    """One |S|: every method's NLL and MSE on the same observed voxels; also the observed indices and the
    model's mean clips (for the samples and the figure)."""
    idx = observed_indices(len(truth), D, size, seed)
    mean, logp = model_clips(model, truth, idx)
    g_mean, g_var = gauss.predict(idx, np.take_along_axis(truth, idx, 1), chunk=4)
    g_logp = discretized_gaussian_log_prob(torch.from_numpy(truth), g_mean, g_var.clamp_min(1e-12).sqrt()).numpy()
    near = nearest_spacetime(truth, idx)
    row = {"model": score(mean, logp, truth, idx), "cond_gauss": score(g_mean.numpy(), g_logp, truth, idx),
           "nearest": score(near, None, truth, idx), "linear": score(per_frame_linear(truth, idx, near), None,
                                                                     truth, idx)}
    return row, idx, mean


def frame_strip(truth: np.ndarray, idx: np.ndarray, mean: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """Paper Fig. 10: rows truth | S (unobserved blue) | mean | samples, one column per frame."""
    from pt_plugin.images import figure_grid

    seen = np.tile(np.array([0.25, 0.35, 0.75]), (D, 1))
    seen[idx] = truth[idx, None]
    rows = [truth, seen, mean, *samples]
    return figure_grid([[np.asarray(r).reshape(FRAMES, SIZE, SIZE, -1)[t] for t in range(FRAMES)] for r in rows],
                       scale=2)


def settings(shipped: Shipped, args: argparse.Namespace, sizes: tuple[int, ...], gauss_train: int,
             sample_clips: int) -> dict:
    """What was measured: the model (shipped.settings()), this protocol's choices and the runtime's sampler."""
    return shipped.settings() | {
        "protocol": NAME, "clips": args.clips, "seed": args.seed, "sizes": list(sizes), "voxels": D,
        "samples": args.samples, "sample_clips": sample_clips, "ridge": DEFAULT_RIDGE,
        "gauss_train": gauss_train} | sampler_settings(shipped.model, n_prime(args))


def evaluate(shipped: Shipped, args: argparse.Namespace, log: Callable[[str], None] = print) -> dict:
    """Run the protocol of the module docstring on the shipped graphs; writes metrics.json, metrics.md and
    frames.png (the |S| = STRIP_SIZE strip, when measured with samples) into args.out and returns the report."""
    check_data(shipped)
    sizes = tuple(int_list(args.sizes, "--sizes")) if args.sizes else SIZES
    bad = [s for s in sizes if not 1 <= s < D]
    if bad or not sizes:
        raise UsageError(f"--sizes {bad} outside 1..{D - 1}: expected set sizes below the {D} cells of a clip")
    if args.clips < 1:
        raise UsageError(f"--clips {args.clips}: expected at least 1 clip")
    data_dir = args.data_dir or FASHION_DIR
    truth = evaluation_clips(args.clips, args.seed, data_dir).reshape(args.clips, D).astype(np.float64)
    t0, gauss_train = time.time(), args.gauss_train or GAUSS_TRAIN
    gauss = fit_gaussian(data_dir, gauss_train, args.seed)
    log(f"conditional Gaussian fitted on {gauss_train} training clips ({time.time() - t0:.1f}s)")
    n_sub = min(args.sample_images, args.clips) if args.samples > 0 else 0
    results, strip = {}, None
    for size in sizes:
        t0 = time.time()
        row, idx, mean = score_size(shipped.model, gauss, truth, size, args.seed)
        if n_sub:
            smp = model_samples(shipped.model, truth[:n_sub, :, None], idx[:n_sub], args.samples, args.seed,
                            n_prime(args))[..., 0]
            row["samples"] = sample_stats(smp, truth[:n_sub], idx[:n_sub], mean[:n_sub])
            row["samples"]["coherence"] = coherence(shipped.model, smp[..., None], truth[:n_sub, :, None],
                                                    idx[:n_sub], args.seed)
            strip = frame_strip(truth[0], idx[0], mean[0], smp[0]) if size == STRIP_SIZE else strip
        results[str(size)] = row
        log(f"|S|={size}: NLL model/CG {fmt(row['model']['nll_bits'], 3)} {fmt(row['cond_gauss']['nll_bits'], 3)}; "
            "MSE " + " ".join(f"{row[k]['mse']:.4f}" for k in VIDEO_METHODS)
            + (f"; samples std {fmt(row['samples']['std'], 4)}; {coherence_log(row['samples'])}" if n_sub else "")
            + f" ({time.time() - t0:.1f}s)")
    report = {"settings": settings(shipped, args, sizes, gauss_train, n_sub), "sizes": results}
    out = write_report(report, args.out, markdown)
    if strip is not None:
        from pt_plugin.kinds.pictures import save_picture

        save_picture(out / "frames.png", strip)
    return report


def summary(report: dict) -> dict:
    """What model.json carries: per |S|, the model's NLL and mean MSE, the Gaussian's NLL and the best
    baseline's MSE (the issue-15 targets)."""
    sizes = {size: {"nll_bits": r["model"]["nll_bits"], "mse": r["model"]["mse"],
                    "cond_gauss_nll_bits": r["cond_gauss"]["nll_bits"],
                    "best_baseline_mse": min(r[m]["mse"] for m in VIDEO_METHODS if m != "model")}
             for size, r in report["sizes"].items()}
    return {"protocol": f"python -m export.evaluate ({report['settings']['clips']} seeded test clips, "
                        "unobserved voxels)", "sizes": sizes}


def sampler_sentence(st: dict) -> str:
    """How the samples were drawn. A report from before the settings recorded the path ("cache") was drawn by
    re-encoding; its sentence stays word for word what it was, so cards rendered from it stay fresh."""
    if "cache" not in st:
        return f"with its defaults (N′ {st['autoregressive']}, step fraction {st['step_fraction']:g})"
    return f"with the model's defaults: {sampler_phrase(st, st['voxels'], 'voxel')}"


def markdown(report: dict) -> str:
    """A title line, what was measured, then one row per |S|: NLL of the model and the Gaussian, MSE of every
    method, the samples' spread and error (and their coherence frame by frame, when the report has it)."""
    st, coh = report["settings"], has_coherence(report)
    head = ["\\|S\\|", "PT NLL", "CG NLL", "PT − CG"] + [f"{n} MSE" for n in VIDEO_METHODS.values()]
    head += ["sample std", "sample MSE"] + (COHERENCE_HEAD if coh else [])
    lines = [f"# Video evaluation (step {st['step']})", "",
             f"{st['clips']} moving Fashion-MNIST test clips (8×32×32, seed {st['seed']}); the shipped "
             f"{st['precision']} graphs through pt_plugin; metrics over unobserved voxels; NLL in bits/pixel (256 "
             f"levels); conditional Gaussian fitted on {st['gauss_train']} training clips (ridge {st['ridge']:g}); "
             f"samples: {st['samples']} per clip for the first {st['sample_clips']} clips, drawn by the runtime's "
             f"sampler {sampler_sentence(st)}.", "",
             "| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for size, r in report["sizes"].items():
        s = r.get("samples", {})
        diff = None if r["cond_gauss"]["nll_bits"] is None else r["model"]["nll_bits"] - r["cond_gauss"]["nll_bits"]
        lines.append(f"| {size} | {fmt(r['model']['nll_bits'], 3)} | {fmt(r['cond_gauss']['nll_bits'], 3)} | "
                     f"{fmt(diff, 3)} | " + " | ".join(f"{r[m]['mse']:.5f}" for m in VIDEO_METHODS)
                     + f" | {fmt(s.get('std'), 4)} | {fmt(s.get('mse'), 5)} |"
                     + ("".join(f" {c} |" for c in coherence_cells(s)) if coh else ""))
    if coh:
        lines += ["", coherence_note(report, "clip, frame by frame (neighbours within a frame)")]
    return "\n".join(lines) + "\n"


def card_blocks(report: dict) -> dict[str, str]:
    """MODEL_CARD.md's generated "evaluation" block: the report without its title line."""
    return {"evaluation": markdown(report).split("\n", 2)[2].strip()}
