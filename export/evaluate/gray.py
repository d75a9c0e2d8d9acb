"""Evaluation on Fashion-MNIST test images: `python -m export.evaluate CHECKPOINT [--out DIR] ...`.

Curve models (polynomials, gp-curves) are evaluated against the exact posterior instead
(export.evaluate.curves), shape (SDF) models on procedural shapes (export.evaluate.volume), RGB
image models (val_dim 3) on their image folder's test split (export.evaluate.rgb), video models on
moving Fashion-MNIST test clips (export.evaluate.video).

Protocol (paper Fig. 6): for each |S| and each fixed, seeded test image, |S| pixel centres are
observed (the same draws for every method) and the unobserved pixels are predicted by the
model (decoding all pixel centres), the conditional Gaussian, linear and nearest fill.

Metrics over the UNOBSERVED pixels of all images: NLL in bits/pixel of the 256-level value
(model and conditional Gaussian only), MSE of the mean, PSNR = 10·log10(1 / MSE averaged over
all images); SSIM (Gaussian window 7, σ 1.5, data range 1, valid region) of the full image
with the observed pixels set to their known values, averaged over images.
At |S| = H·W nothing is unobserved: that row scores every method's own prediction at all
pixels (a reconstruction). The baselines then reproduce the input exactly (MSE 0, PSNR ∞,
SSIM 1, no conditional-Gaussian NLL); the model's NLL/MSE measure how well it reproduces S.

With --samples > 0, hybrid autoregressive samples are drawn for the first --sample-images
images; reported: the per-pixel standard deviation across samples (ddof 1) and the samples'
MSE, both over unobserved pixels. Writes metrics.json, metrics.md, metrics.png, samples.png.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from export.checkpoint import load_checkpoint
from export.datasets.curves import FAMILIES
from export.datasets.images import load_idx_images, pixel_centers
from export.errors import UsageError, int_list, reports_errors
from export.evaluate.baselines import DEFAULT_RIDGE, ConditionalGaussian, linear_fill, nearest_fill
from export.evaluate.curves import evaluate_curves
from export.evaluate.curves import markdown as curves_markdown
from export.evaluate.images import (  # noqa: F401 - also this module's API
    LN2,
    METHODS,
    SSIM_SIGMA,
    SSIM_WINDOW,
    ar_sample,
    channels_last,
    fill,
    finite_or_none,
    fmt,
    gaussian_window,
    load_model,
    markdown,
    model_predict,
    observed_indices,
    paste,
    plot_metrics,
    plot_samples,
    psnr,
    sample_and_score,
    sample_stats,
    samples_lines,
    score,
    ssim,
    take_pixels,
    test_images,
    unobserved_mask,
)
from export.evaluate.volume import evaluate_volumes
from export.evaluate.volume import markdown as volumes_markdown

DATA_DIR = "/usr/share/datasets/fashion-mnist"
DEFAULT_SIZES = "4,16,64,256,784"


# ----------------------------------------------------------------------------------- protocol

def evaluate(checkpoint_path: str | Path, out: str | Path = "runs/eval", images: int = 256,
             sizes: tuple[int, ...] = (4, 16, 64, 256, 784), seed: int = 0, samples: int = 3,
             sample_images: int = 16, ar_frac: float = 0.05, data_dir: str = DATA_DIR, batch_size: int = 32,
             ridge: float = DEFAULT_RIDGE, gauss_train: int = 0, fig_images: int = 4, threads: int = 2,
             log: Callable[[str], None] = print) -> dict:
    """Run the protocol of the module docstring, write the reports into `out`, return the results."""
    if threads:
        torch.set_num_threads(threads)
    model, step = load_model(checkpoint_path)
    imgs, which, h, w = test_images(data_dir, images, seed)
    d = h * w
    bad = [s for s in sizes if not 1 <= s <= d]
    if bad:
        raise UsageError(f"--sizes {bad} outside 1..{d}: expected set sizes between 1 and the {d} pixels")
    centers = torch.from_numpy(pixel_centers(h, w))
    t0 = time.time()
    train = load_idx_images(data_dir, "train")[..., 0].reshape(-1, d)
    train = train[:gauss_train] if gauss_train else train
    gauss, n_train = ConditionalGaussian(ridge).fit(train), len(train)
    log(f"conditional Gaussian fitted on {n_train} training images ({time.time() - t0:.1f}s)")
    del train

    n_sub = min(sample_images, images) if samples > 0 else 0
    gen = torch.Generator().manual_seed(seed)
    results, panels = {}, []
    fig_sizes = [s for s in (16, 64, 256) if s in sizes and s < d] or [s for s in sizes if s < d][:3]
    for size in sizes:
        t0 = time.time()
        idx = observed_indices(images, d, size, seed)
        obs_vals = np.take_along_axis(imgs, idx, 1)
        mean, logp = model_predict(model, imgs, idx, centers, batch_size)
        g_mean, _ = gauss.predict(idx, obs_vals)
        g_logp = gauss.log_prob(idx, obs_vals, imgs).numpy() if size < d else None
        r = {"model": score(mean, logp, imgs, idx, h, w),
             "cond_gauss": score(g_mean.numpy(), g_logp, imgs, idx, h, w),
             "linear": score(fill(linear_fill, imgs, idx, h, w), None, imgs, idx, h, w),
             "nearest": score(fill(nearest_fill, imgs, idx, h, w), None, imgs, idx, h, w)}
        m, g = r["model"], r["cond_gauss"]
        r["model_vs_gauss"] = {
            "mse_ratio": m["mse"] / g["mse"] if g["mse"] > 0 else None,
            "nll_diff_bits": m["nll_bits"] - g["nll_bits"] if g["nll_bits"] is not None else None}
        msg = f"|S|={size}: model/CG/linear/nearest MSE " + " ".join(f"{r[k]['mse']:.4f}" for k in METHODS)
        if n_sub and size < d:
            smp, r["samples"] = sample_and_score(model, imgs[:n_sub], idx[:n_sub], mean[:n_sub], centers, samples,
                                                 ar_frac, gen)
            msg += f"; samples std {fmt(r['samples']['std'], 4)}"
        if size in fig_sizes:
            pasted = paste(mean, imgs, idx)
            for i in range(min(fig_images, n_sub or images)):  # sampled images only, when sampling
                panels.append({"image": i, "size": size, "truth": imgs[i], "idx": idx[i], "mean": pasted[i],
                               "samples": smp[i] if n_sub else []})
        results[str(size)] = r
        log(f"{msg} ({time.time() - t0:.1f}s)")

    res = {"settings": {"checkpoint": str(checkpoint_path), "step": step, "images": images, "seed": seed,
                        "sizes": list(sizes), "pixels": d, "samples": samples, "sample_images": n_sub,
                        "ar_frac": ar_frac, "ridge": ridge, "gauss_train": n_train,
                        "ssim": {"window": SSIM_WINDOW, "sigma": SSIM_SIGMA, "data_range": 1.0},
                        "psnr": "10*log10(1/MSE), MSE averaged over all images' unobserved pixels",
                        "test_indices": which.tolist()},
           "sizes": results}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(finite_or_none(res), indent=1, ensure_ascii=False))
    (out / "metrics.md").write_text(markdown(res))
    plot_metrics(res, out / "metrics.png")
    if panels:
        panels.sort(key=lambda p: (p["image"], p["size"]))  # by image, then by |S|
        plot_samples(panels, h, w, samples if n_sub else 0, out / "samples.png")
    return res


def summary(report: dict) -> dict:
    """The part of an evaluate report that model.json carries: per |S|, the model's figures and the CG's."""
    sizes = {}
    for size, r in report["sizes"].items():
        m, g = r["model"], r["cond_gauss"]
        sizes[size] = {"nll_bits": m["nll_bits"], "mse": m["mse"], "psnr": m["psnr"], "ssim": m["ssim"],
                       "cond_gauss_nll_bits": g["nll_bits"], "cond_gauss_mse": g["mse"]}
    st = report["settings"]
    return {"protocol": f"python -m export.evaluate ({st['images']} seeded test images, unobserved pixels)",
            "sizes": sizes}


@reports_errors
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--out", default="runs/eval")
    p.add_argument("--images", type=int, default=256, help="number of seeded test images")
    p.add_argument("--sizes", default=DEFAULT_SIZES, help="comma-separated |S| values (curve models: their own "
                                                              "default, 1..32 or 2..20; RGB models: 4,16,64,256)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples", type=int, default=3, help="samples per image (0 = no sampling)")
    p.add_argument("--sample-images", type=int, default=16, help="sample only the first N images")
    p.add_argument("--ar-frac", type=float, default=0.05, help="pixels per autoregressive step / set size")
    p.add_argument("--data-dir", help=f"gray models: the IDX folder (default {DATA_DIR}); RGB models: a folder "
                                      "with train/ and test/ (default: from the checkpoint's folder:DIR/train)")
    p.add_argument("--batch-size", type=int, help="images per model call (default 32 gray, 4 RGB)")
    p.add_argument("--ridge", type=float, help=f"conditional-Gaussian covariance ridge (default {DEFAULT_RIDGE:g} "
                                               "gray; RGB: chosen on held-out training images)")
    p.add_argument("--gauss-train", type=int, default=0, help="fit the Gaussian (RGB: and the kNN) on the first N "
                                                              "train images (0 = all)")
    p.add_argument("--tune-images", type=int, default=32, help="RGB models: held-out training images that tune "
                                                               "the baselines")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--curves", type=int, default=400, help="curve models: evaluation curves per |S|")
    p.add_argument("--joint-samples", type=int, default=300, help="curve models: samples per set for the joint check")
    p.add_argument("--joint-sets", type=int, default=6, help="curve models: sets for the joint check (0 = skip it)")
    p.add_argument("--shapes", type=int, default=64, help="shape (SDF) models: evaluation shapes per |S|")
    p.add_argument("--clips", type=int, default=64, help="video models: evaluation clips per |S|")
    p.add_argument("--bank", type=int, default=2000, help="shape models: training shapes of the kNN posterior")
    a = p.parse_args(argv)
    model, ck = load_checkpoint(a.checkpoint)
    if ck["config"]["train"].get("data") in FAMILIES:  # a curve model: held against the exact posterior
        sizes = tuple(int_list(a.sizes, "--sizes")) if a.sizes != DEFAULT_SIZES else None
        res = evaluate_curves(a.checkpoint, a.out, a.curves, sizes=sizes, seed=a.seed,
                              joint_sets=a.joint_sets, joint_samples=a.joint_samples, threads=a.threads)
        print(curves_markdown(res), end="")
        return 0
    if ck["config"]["train"].get("data") == "shapes":  # an SDF model: meshes, occupancy and 3-D baselines
        sizes = tuple(int_list(a.sizes, "--sizes")) if a.sizes != DEFAULT_SIZES else None
        res = evaluate_volumes(a.checkpoint, a.out, a.shapes, sizes=sizes, seed=a.seed, bank=a.bank,
                               threads=a.threads)
        print(volumes_markdown(res), end="")
        return 0
    if ck["config"]["train"].get("data") == "moving-fashion":  # a video model: clips and 3-D baselines
        from export.evaluate.video import evaluate_video
        from export.evaluate.video import markdown as video_markdown

        sizes = tuple(int_list(a.sizes, "--sizes")) if a.sizes != DEFAULT_SIZES else None
        res = evaluate_video(a.checkpoint, a.out, a.clips, **({"sizes": sizes} if sizes else {}), seed=a.seed,
                             samples=a.samples, sample_clips=a.sample_images, gauss_train=a.gauss_train or 10000,
                             threads=a.threads)
        print(video_markdown(res), end="")
        return 0
    sizes = tuple(int_list(a.sizes, "--sizes"))
    if model.cfg.val_dim == 3:  # an RGB image model: its folder's test split, the kNN posterior as well
        from export.evaluate.rgb import SIZES, evaluate_rgb
        from export.evaluate.rgb import markdown as rgb_markdown

        res = evaluate_rgb(a.checkpoint, a.out, a.images, SIZES if a.sizes == DEFAULT_SIZES else sizes, a.seed,
                           a.samples, a.sample_images, a.ar_frac, a.data_dir, a.batch_size or 4, a.ridge,
                           a.gauss_train, a.tune_images, threads=a.threads)
        print(rgb_markdown(res), end="")
        return 0
    res = evaluate(a.checkpoint, a.out, a.images, sizes, a.seed, a.samples, a.sample_images, a.ar_frac,
                   a.data_dir or DATA_DIR, a.batch_size or 32, DEFAULT_RIDGE if a.ridge is None else a.ridge,
                   a.gauss_train, threads=a.threads)
    print(markdown(res), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
