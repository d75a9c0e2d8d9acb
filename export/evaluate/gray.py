"""Gray image models: `python -m export.evaluate MODEL [--out DIR] ...` on a shipped model with one channel.

The shipped graphs run through pt_plugin (fp32, or --precision int8), with the runtime's own sampler;
the test images are the test split of the model's own data set (model.json training.data).

Protocol (paper Fig. 6): for each |S| and each fixed, seeded test image, |S| pixel centres are
observed (the same draws for every method) and the unobserved pixels are predicted by the
model (decoding all pixel centres), the conditional Gaussian, the kNN posterior over the training images
(baselines.KnnPosterior: its mean, τ chosen per |S| by MSE on --tune-images held-out training images; no NLL), linear
and nearest fill.

Metrics over the UNOBSERVED pixels of all images: NLL in bits/pixel of the 256-level value
(model and conditional Gaussian only), MSE of the mean, PSNR = 10·log10(1 / MSE averaged over
all images); SSIM (Gaussian window 7, σ 1.5, data range 1, valid region) of the full image
with the observed pixels set to their known values, averaged over images.
At |S| = H·W nothing is unobserved: that row scores every method's own prediction at all
pixels (a reconstruction). The baselines then reproduce the input exactly (MSE 0, PSNR ∞,
SSIM 1, no conditional-Gaussian NLL); the model's NLL/MSE measure how well it reproduces S.

With --samples > 0, images are drawn for the first --sample-images test images by pt_plugin's
Model.sample with its defaults; reported: the per-pixel standard deviation across samples
(ddof 1) and the samples' MSE, both over unobserved pixels, and their coherence over the whole image
(export.evaluate.coherence: total variation and isolated pixels against the truth's and against
independent per-pixel draws). Writes metrics.json, metrics.md,
metrics.png, samples.png.
"""
from __future__ import annotations

import argparse
import time
from typing import Callable

import numpy as np

from export.config import TrainConfig
from export.datasets import FASHION_DIR
from export.datasets.images import holdout_split
from export.errors import int_list
from export.evaluate.baselines import (
    DEFAULT_RIDGE,
    ConditionalGaussian,
    KnnPosterior,
    linear_fill,
    nearest_fill,
    select_knn,
)
from export.evaluate.coherence import coherence, coherence_log
from export.evaluate.images import (
    LABELS,
    SSIM_SIGMA,
    SSIM_WINDOW,
    check_grid,
    check_sizes,
    evaluation_images,
    figure_sizes,
    fill,
    fmt,
    image_model,
    minus,
    model_line,
    model_pixels,
    model_samples,
    n_prime,
    observed_indices,
    paste,
    plot_metrics,
    plot_samples,
    sample_stats,
    sampler_settings,
    samples_lines,
    samples_table,
    score,
    split_images,
)
from export.evaluate.protocol import Shipped, write_report

NAME = "gray"
METHODS = ("model", "cond_gauss", "knn", "linear", "nearest")
DEFAULT_SIZES = (4, 16, 64, 256)  # and the whole image
FIG_IMAGES = 4  # images in samples.png


# ----------------------------------------------------------------------------------- protocol

def fit_gauss(spec: str, data_dir: str, d: int, ridge: float, limit: int,
              log: Callable[[str], None]) -> tuple[ConditionalGaussian, int]:
    """The conditional Gaussian on the training split (its first `limit` images; 0: all), and their number."""
    t0 = time.time()
    train = split_images(spec, data_dir, "train")[..., 0].reshape(-1, d)
    train = train[:limit] if limit else train
    log(f"conditional Gaussian fitted on {len(train)} training images ({time.time() - t0:.1f}s)")
    return ConditionalGaussian(ridge).fit(train), len(train)


def fit_knn(shipped: Shipped, data_dir: str, d: int, sizes: tuple[int, ...], args: argparse.Namespace,
            log: Callable[[str], None]) -> tuple[KnnPosterior, dict]:
    """The kNN posterior over the model's training images (the train split less the share its training held out,
    model.json training.val_images) and, per |S| < D, the τ of its mean chosen on the first --tune-images of the
    held-out ones."""
    t0 = time.time()
    images = split_images(shipped.data, data_dir, "train").reshape(-1, d, 1)
    held, train = holdout_split(images, shipped.data, shipped.meta.get("training", {}).get("val_images")
                                or TrainConfig.val_images)
    train = train[:args.gauss_train] if args.gauss_train else train
    knn = KnnPosterior(train)
    choice = select_knn(knn, held[:args.tune_images], tuple(s for s in sizes if s < d), args.seed, density=False)
    log(f"kNN posterior over {len(train)} training images, τ of its mean per |S| "
        + ", ".join(f"{s}: {c['tau_mean']:g}" for s, c in choice.items())
        + f" (chosen on {min(args.tune_images, len(held))} held-out images, {time.time() - t0:.1f}s)")
    return knn, {"train_images": len(train), "held_out_images": min(args.tune_images, len(held)), "choice": choice}


def measure(shipped: Shipped, gauss: ConditionalGaussian, knn: KnnPosterior, knn_choice: dict, imgs: np.ndarray,
            size: int, args: argparse.Namespace,
            n_sub: int) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray | None]:
    """One |S|: every method's scores (and the samples' statistics); the observed pixels, the model's mean
    and its samples [n_sub, samples, D] (None when not sampling)."""
    h, w = shipped.model.grid
    d = h * w
    idx = observed_indices(len(imgs), d, size, args.seed)
    obs_vals = np.take_along_axis(imgs, idx, 1)
    mean, logp = model_pixels(shipped.model, imgs[..., None], idx, args.batch_size or 32)
    mean = mean[..., 0]
    g_mean, _ = gauss.predict(idx, obs_vals)
    g_logp = gauss.log_prob(idx, obs_vals, imgs).numpy() if size < d else None
    choice = knn_choice.get(str(size))  # none at |S| = D: nothing to predict
    knn_mean = (np.stack([knn.posterior_mean(o, img[o, None], choice["tau_mean"])[:, 0] for img, o in zip(imgs, idx)])
                if choice else imgs.astype(np.float64))
    r = {"model": score(mean, logp, imgs, idx, h, w),
         "cond_gauss": score(g_mean.numpy(), g_logp, imgs, idx, h, w),
         "knn": score(knn_mean, None, imgs, idx, h, w),
         "linear": score(fill(linear_fill, imgs, idx, h, w), None, imgs, idx, h, w),
         "nearest": score(fill(nearest_fill, imgs, idx, h, w), None, imgs, idx, h, w)}
    m, g = r["model"], r["cond_gauss"]
    r["model_vs_gauss"] = {
        "mse_ratio": m["mse"] / g["mse"] if g["mse"] > 0 else None,
        "nll_diff_bits": m["nll_bits"] - g["nll_bits"] if g["nll_bits"] is not None else None}
    smp = None
    if n_sub and size < d:
        smp = model_samples(shipped.model, imgs[:n_sub, :, None], idx[:n_sub], args.samples, args.seed,
                            n_prime(args))[..., 0]
        r["samples"] = sample_stats(smp, imgs[:n_sub], idx[:n_sub], mean[:n_sub])
        r["samples"]["coherence"] = coherence(shipped.model, smp[..., None], imgs[:n_sub, :, None], idx[:n_sub],
                                              args.seed)
    return r, idx, mean, smp


def evaluate(shipped: Shipped, args: argparse.Namespace, log: Callable[[str], None] = print) -> dict:
    """Run the protocol of the module docstring on a shipped gray image model, write the reports into
    args.out, return the results."""
    model = image_model(shipped, 1, "gray", args.threads)
    h, w = model.grid
    d = h * w
    sizes = tuple(int_list(args.sizes, "--sizes")) if args.sizes else DEFAULT_SIZES + (d,)
    check_sizes(sizes, d)
    data_dir = args.data_dir or FASHION_DIR
    test = split_images(shipped.data, data_dir, "test")
    check_grid(test, (h, w), "the test images")
    imgs, which = evaluation_images(test, args.images, args.seed)
    imgs = imgs[..., 0]
    ridge = DEFAULT_RIDGE if args.ridge is None else args.ridge
    gauss, n_train = fit_gauss(shipped.data, data_dir, d, ridge, args.gauss_train, log)
    knn, knn_tuning = fit_knn(shipped, data_dir, d, sizes, args, log)

    n_sub = min(args.sample_images, args.images) if args.samples > 0 else 0
    results, panels = {}, []
    for size in sizes:
        t0 = time.time()
        r, idx, mean, smp = measure(shipped, gauss, knn, knn_tuning["choice"], imgs, size, args, n_sub)
        if size in figure_sizes(sizes, d):
            pasted = paste(mean, imgs, idx)
            for i in range(min(FIG_IMAGES, n_sub or len(imgs))):  # sampled images only, when sampling
                panels.append({"image": i, "size": size, "truth": imgs[i], "idx": idx[i], "mean": pasted[i],
                               "samples": smp[i] if smp is not None else []})
        results[str(size)] = r
        log(f"|S|={size}: model/CG/kNN/linear/nearest MSE " + " ".join(f"{r[k]['mse']:.4f}" for k in METHODS)
            + (f"; samples std {fmt(r['samples']['std'], 4)}; {coherence_log(r['samples'])}" if "samples" in r
               else "") + f" ({time.time() - t0:.1f}s)")

    settings = {**shipped.settings(), "protocol": NAME, "images": args.images, "seed": args.seed,
                "sizes": list(sizes), "pixels": d, "samples": args.samples, "sample_images": n_sub,
                **sampler_settings(model, n_prime(args)), "ridge": ridge, "gauss_train": n_train, "knn": knn_tuning,
                "ssim": {"window": SSIM_WINDOW, "sigma": SSIM_SIGMA, "data_range": 1.0},
                "psnr": "10*log10(1/MSE), MSE averaged over all images' unobserved pixels",
                "test_indices": which.tolist()}
    res = {"settings": settings, "sizes": results}
    out = write_report(res, args.out, markdown)
    plot_metrics(res, out / "metrics.png", METHODS, f"{shipped.data} test, {args.images} images, "
                                                    f"step {shipped.steps}, {shipped.precision}")
    if panels:
        panels.sort(key=lambda p: (p["image"], p["size"]))  # by image, then by |S|
        plot_samples(panels, h, w, args.samples if n_sub else 0, out / "samples.png")
    return res


# ------------------------------------------------------------------------------------ reports

def markdown(res: dict) -> str:
    """Markdown tables of the results: one row per |S|."""
    st = res["settings"]
    lines = [f"# PixelTransformer evaluation (step {st['step']})", "",
             f"{model_line(st)}. {st['images']} seeded test images (seed {st['seed']}); metrics over unobserved "
             f"pixels; NLL in bits/pixel (256 levels); PSNR from the MSE over all images; SSIM window "
             f"{SSIM_WINDOW}, σ {SSIM_SIGMA}, observed pixels pasted; conditional-Gaussian ridge {st['ridge']:g}.", ""]
    head = [r"\|S\|"]
    for m in METHODS:
        head += [f"{LABELS[m]} NLL", f"{LABELS[m]} MSE", f"{LABELS[m]} PSNR", f"{LABELS[m]} SSIM"]
    head += ["MSE model/CG", "NLL model−CG"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for size, r in res["sizes"].items():
        row = [size]
        for m in METHODS:
            row += [fmt(r[m]["nll_bits"], 3), fmt(r[m]["mse"], 5), fmt(r[m]["psnr"], 2), fmt(r[m]["ssim"], 4)]
        row += [fmt(r["model_vs_gauss"]["mse_ratio"], 3), fmt(r["model_vs_gauss"]["nll_diff_bits"], 3)]
        lines.append("| " + " | ".join(row) + " |")
    lines += samples_lines(res)
    if st["pixels"] in st["sizes"]:
        lines += ["", f"Row |S| = {st['pixels']} (everything observed): every method scored on all pixels without "
                  "pasting; the baselines reproduce the input exactly, the model's numbers are a reconstruction."]
    return "\n".join(lines) + "\n"


def evaluation_table(report: dict) -> str:
    """The model card's evaluation block: the model against the baselines, per |S| below the full image."""
    head = [r"\|S\|", "PT NLL", "CG NLL", "PT − CG (bits)", "PT MSE", "CG MSE", "PT/CG MSE", "kNN MSE", "PT/kNN MSE",
            "linear MSE", "nearest MSE", "PT PSNR", "CG PSNR", "PT SSIM", "CG SSIM"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    pixels = report["settings"]["pixels"]
    for size, r in report["sizes"].items():
        if int(size) >= pixels:
            continue
        m, g, vs = r["model"], r["cond_gauss"], r["model_vs_gauss"]
        row = [size, fmt(m["nll_bits"], 3), fmt(g["nll_bits"], 3), minus(fmt(vs["nll_diff_bits"], 2)),
               fmt(m["mse"], 4), fmt(g["mse"], 4), fmt(vs["mse_ratio"], 3), *knn_columns(r),
               fmt(r["linear"]["mse"], 4),
               fmt(r["nearest"]["mse"], 4), fmt(m["psnr"], 2), fmt(g["psnr"], 2), fmt(m["ssim"], 3),
               fmt(g["ssim"], 3)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def knn_columns(r: dict) -> list[str]:
    """kNN MSE and PT/kNN MSE of one |S| (dashes in a report from before the kNN baseline)."""
    k = r.get("knn")
    return [fmt(k["mse"], 4), fmt(r["model"]["mse"] / k["mse"], 3)] if k else ["—", "—"]


def card_blocks(report: dict) -> dict[str, str]:
    """The MODEL_CARD.md blocks of a gray report: the evaluation table and the samples table."""
    return {"evaluation": evaluation_table(report), "samples": samples_table(report)}


def summary(report: dict) -> dict:
    """The part of a report that model.json carries: per |S|, the model's figures and the CG's."""
    sizes = {}
    for size, r in report["sizes"].items():
        m, g = r["model"], r["cond_gauss"]
        sizes[size] = {"nll_bits": m["nll_bits"], "mse": m["mse"], "psnr": m["psnr"], "ssim": m["ssim"],
                       "cond_gauss_nll_bits": g["nll_bits"], "cond_gauss_mse": g["mse"]}
    st = report["settings"]
    return {"protocol": f"python -m export.evaluate ({st['images']} seeded test images, unobserved pixels, "
                        f"{st['precision']} graphs)", "sizes": sizes}
