"""RGB image models (issue 12): `python -m export.evaluate MODEL` on a shipped image model with 3 channels.

The protocol of export.evaluate.gray, through pt_plugin, on seeded images of the test split of the
model's data set (training.data folder:DIR/train -> DIR/test): |S| ∈ {4, 16, 64, 256} observed pixels
with all three channels, the same draws for every method. Over the unobserved pixels: NLL in bits per
sub-pixel (256 levels per channel; each mixture component discretised per channel, the channels
independent given the component), MSE, PSNR from the MSE over all images, SSIM averaged over R, G, B
with the observed pixels pasted; the spread of the runtime sampler's images and their coherence over the whole
image (export.evaluate.coherence: total variation and isolated pixels against the truth's and independent
per-pixel draws').

Baselines are fitted on the model's own training images (the train split less the images training held
out: model.json training.val_images, else export.config's default) and tuned on (up to --tune-images of)
those held-out images, never on the test split:
cond_gauss, a Gaussian on the 3·H·W vector (ridge by select_ridge); knn, the posterior over training
images of baselines.KnnPosterior (per |S|: τ of its mean by held-out MSE, τ and σ of its density by
held-out NLL); linear and nearest fill per channel.
Targets, stored as booleans: model NLL at least 1 bit/sub-pixel below the CG's, and model MSE below the
best baseline's, at every |S|. Writes metrics.json, metrics.md, metrics.png, samples.png (Fig. 4 style)
and composition.png (Fig. 5 style: left half of one image, right half of another).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from export.config import TrainConfig
from export.datasets import split_spec
from export.datasets.emoji import sibling_groups
from export.datasets.images import holdout_split, image_files
from export.errors import DataError, int_list
from export.evaluate.baselines import (
    ConditionalGaussian,
    KnnPosterior,
    discretized_gaussian_log_prob,
    linear_fill,
    nearest_fill,
    select_knn,
    select_ridge,
)
from export.evaluate.coherence import coherence, coherence_log
from export.evaluate.compose import observed_picture, plot_rows, write_composition
from export.evaluate.images import (
    LABELS,
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
    sample_stats,
    sampler_settings,
    samples_lines,
    samples_table,
    score,
    split_images,
)
from export.evaluate.protocol import Shipped, write_report

NAME = "rgb"
METHODS = ("model", "cond_gauss", "knn", "linear", "nearest")
BASELINES = ("cond_gauss", "knn", "linear", "nearest")
DENSITIES = ("model", "cond_gauss", "knn")
SIZES = (4, 16, 64, 256)
RIDGES = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
NLL_MARGIN_BITS = 1.0  # target: model NLL at least this far below the conditional Gaussian's
FIG_IMAGES, PAIRS = 4, 3  # images in samples.png, pairs in composition.png


# ---------------------------------------------------------------------------------------- data

def subpixel_indices(idx: np.ndarray, channels: int = 3) -> np.ndarray:
    """Pixel indices [n, k] -> indices [n, k·C] into the pixel-major [D·C] vector."""
    return (idx[..., None] * channels + np.arange(channels)).reshape(len(idx), -1)


def tuning_split(keys: np.ndarray, spec: str, val_images: int, tune_images: int,
                 limit: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the model's training images (the train split less its held-out share, as export.train
    splits the data spec), of up to tune_images held-out images, and of the training images that share no
    group (sibling_groups) with those (the tuning database: a sibling would flatter sharp kNN weights)."""
    if val_images >= len(keys):
        raise DataError(f"{val_images} held-out images leave no training images of {spec} ({len(keys)} in all); "
                        "expected the model's own training split")
    held, train = holdout_split(np.arange(len(keys)), spec, val_images)
    train = train[:limit] if limit else train
    tune = held[:tune_images]
    return train, tune, train[~np.isin(keys[train], keys[tune])]


def training_split(shipped: Shipped, data_dir: str, train: np.ndarray,
                   args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """tuning_split of the model's training folder, with the held-out share and limit its training used
    (model.json training.val_images / limit) and --gauss-train."""
    folder = Path(split_spec(shipped.data)[1] or data_dir)
    keys = sibling_groups([f.name for f in image_files(folder)])
    if len(keys) != len(train):
        raise DataError(f"{folder} holds {len(keys)} image files but {len(train)} images were read; expected "
                        "one image per file")
    training = shipped.meta.get("training", {})
    limit = min((x for x in (training.get("limit"), args.gauss_train) if x), default=0)
    return tuning_split(keys, shipped.data, training.get("val_images") or TrainConfig.val_images,
                        args.tune_images, limit)


# ----------------------------------------------------------------------------------- baselines

def gauss_predict(gauss: ConditionalGaussian, images: np.ndarray, idx: np.ndarray,
                  chunk: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Conditional-Gaussian mean [n, D, C] and per-pixel log-likelihood [n, D] (256 levels, channels summed)."""
    n, d, c = images.shape
    flat = images.reshape(n, d * c).astype(np.float64)
    sub = subpixel_indices(idx, c)
    mean, var = gauss.predict(sub, np.take_along_axis(flat, sub, 1), chunk)
    lp = discretized_gaussian_log_prob(torch.from_numpy(flat), mean, var.clamp_min(1e-12).sqrt())
    return mean.numpy().reshape(n, d, c), lp.numpy().reshape(n, d, c).sum(-1)


def knn_predict(knn: KnnPosterior, images: np.ndarray, idx: np.ndarray, choice: dict) -> tuple[np.ndarray, np.ndarray]:
    """kNN-posterior mean [n, D, C] and per-pixel log-likelihood [n, D] with the held-out choice of τ and σ."""
    out = [knn.predict(o, img[o], img, choice["tau_mean"], choice["tau"], choice["sigma"])
           for img, o in zip(images, idx)]
    return np.stack([m for m, _ in out]), np.stack([lp for _, lp in out])


def fit_baselines(images: np.ndarray, split: tuple[np.ndarray, np.ndarray, np.ndarray], sizes: tuple[int, ...],
                  seed: int, ridge: float | None,
                  log: Callable[[str], None]) -> tuple[ConditionalGaussian, KnnPosterior, dict]:
    """The conditional Gaussian and the kNN posterior on the training images of split (tuning_split), the
    ridge (unless given) and the kNN's τ, σ chosen on its held-out images against its tuning database."""
    train, tune, db = (images[i] for i in split)
    t0 = time.time()
    scores = None
    if ridge is None:
        scores = select_ridge(db.reshape(len(db), -1), tune.reshape(len(tune), -1), RIDGES, sizes, seed,
                              channels=3, chunk=8)
        ridge = min(scores, key=scores.get)
    choice = select_knn(KnnPosterior(db), tune, sizes, seed)
    log(f"baselines tuned on {len(tune)} held-out training images against {len(db)}: ridge {ridge:g}; kNN "
        "(τ mean, τ, σ) per |S| " + ", ".join(f"{s}: ({c['tau_mean']:g}, {c['tau']:g}, {c['sigma']:g})"
                                             for s, c in choice.items()) + f" ({time.time() - t0:.1f}s)")
    gauss = ConditionalGaussian(ridge).fit(train.reshape(len(train), -1))
    tuning = {"train_images": len(train), "held_out_images": len(tune), "tuning_database_images": len(db),
              "ridge": ridge, "ridge_held_out_nll_bits": scores and {f"{r:g}": v for r, v in scores.items()},
              "knn": choice}
    return gauss, KnnPosterior(train), tuning


# -------------------------------------------------------------------------------------- protocol

def measure(shipped: Shipped, baselines: tuple[ConditionalGaussian, KnnPosterior, dict], imgs: np.ndarray,
            size: int, args: argparse.Namespace, n_sub: int) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray | None]:
    """One |S|: every method's scores, the targets (and the samples' statistics); the observed pixels, the
    model's mean and its samples [n_sub, samples, D, 3] (None when not sampling)."""
    gauss, knn, tuning = baselines
    h, w = shipped.model.grid
    idx = observed_indices(len(imgs), h * w, size, args.seed)
    mean, logp = model_pixels(shipped.model, imgs, idx, args.batch_size or 4)
    preds = {"model": (mean, logp), "cond_gauss": gauss_predict(gauss, imgs, idx),
             "knn": knn_predict(knn, imgs, idx, tuning["knn"][str(size)]),
             "linear": (fill(linear_fill, imgs, idx, h, w), None),
             "nearest": (fill(nearest_fill, imgs, idx, h, w), None)}
    r = {m: score(p, lp, imgs, idx, h, w) for m, (p, lp) in preds.items()}
    r["model_vs_gauss"] = {"mse_ratio": r["model"]["mse"] / r["cond_gauss"]["mse"],
                           "nll_diff_bits": r["model"]["nll_bits"] - r["cond_gauss"]["nll_bits"]}
    r["targets"] = targets(r)
    smp = None
    if n_sub:
        smp = model_samples(shipped.model, imgs[:n_sub], idx[:n_sub], args.samples, args.seed,
                            n_prime(args))
        r["samples"] = sample_stats(smp, imgs[:n_sub], idx[:n_sub], mean[:n_sub])
        r["samples"]["coherence"] = coherence(shipped.model, smp, imgs[:n_sub], idx[:n_sub], args.seed)
    return r, idx, mean, smp


def load_images(shipped: Shipped, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """The seeded test images [n, D, 3] and their indices, the train split [N, D, 3], and the data folder
    used when the spec names none."""
    data_dir = args.data_dir or ""
    test, train = (split_images(shipped.data, data_dir, split) for split in ("test", "train"))
    for images, what in ((test, "the test images"), (train, "the training images")):
        check_grid(images, shipped.model.grid, what)
    imgs, which = evaluation_images(test, args.images, args.seed)
    return imgs, which, train.reshape(len(train), -1, 3), data_dir


def evaluate(shipped: Shipped, args: argparse.Namespace, log: Callable[[str], None] = print) -> dict:
    """Run the protocol of the module docstring on a shipped RGB image model, write the reports into args.out,
    return the results."""
    model = image_model(shipped, 3, "RGB", args.threads)
    h, w = model.grid
    sizes = tuple(int_list(args.sizes, "--sizes")) if args.sizes else SIZES
    check_sizes(sizes, h * w - 1)
    imgs, which, train, data_dir = load_images(shipped, args)
    baselines = fit_baselines(train, training_split(shipped, data_dir, train, args), sizes, args.seed, args.ridge,
                              log)
    del train

    n_sub = min(args.sample_images, args.images) if args.samples > 0 else 0
    results, rows = {}, []
    for size in sizes:
        t0 = time.time()
        r, idx, mean, smp = measure(shipped, baselines, imgs, size, args, n_sub)
        if size in figure_sizes(sizes, h * w):
            pasted = paste(mean, imgs, idx)
            for i in range(min(FIG_IMAGES, n_sub or len(imgs))):  # sampled images only, when sampling
                rows.append((i, size, [imgs[i], observed_picture(imgs[i], idx[i], h, w), pasted[i]]
                             + (list(smp[i]) if smp is not None else [])))
        results[str(size)] = r
        log(f"|S|={size}: NLL model/CG/kNN " + " ".join(f"{r[m]['nll_bits']:.3f}" for m in DENSITIES)
            + "; MSE " + " ".join(f"{r[m]['mse']:.4f}" for m in METHODS)
            + (f"; samples std {fmt(r['samples']['std'], 4)}; {coherence_log(r['samples'])}" if "samples" in r
               else "") + f" ({time.time() - t0:.1f}s)")

    settings = {**shipped.settings(), "protocol": NAME, "images": args.images, "seed": args.seed,
                "sizes": list(sizes), "pixels": h * w, "height": h, "width": w, "channels": 3,
                "nll_unit": "bits per sub-pixel (256 levels per channel)", "samples": args.samples,
                "sample_images": n_sub, **sampler_settings(model, n_prime(args)), "tuning": baselines[2],
                "psnr": "10*log10(1/MSE), MSE averaged over all images' unobserved sub-pixels",
                "ssim": "mean over R, G, B of the gray SSIM (Gaussian window 7, σ 1.5, data range 1)",
                "test_indices": which.tolist()}
    res = {"settings": settings, "sizes": results,
           "targets": {k: all(r["targets"][k] for r in results.values())
                       for k in ("nll_1bit_below_cond_gauss", "mse_below_best_baseline")}}
    res["targets"]["pass"] = all(res["targets"].values())
    write_figures(shipped, res, imgs, rows, write_report(res, args.out, markdown), log)
    return res


def write_figures(shipped: Shipped, res: dict, imgs: np.ndarray, rows: list, out: Path,
                  log: Callable[[str], None]) -> None:
    """metrics.png, samples.png (rows of truth | S | mean | samples) and composition.png (PAIRS pairs)."""
    st = res["settings"]
    h, w = shipped.model.grid
    n_samples = st["samples"] if st["sample_images"] else 0
    plot_metrics(res, out / "metrics.png", METHODS, f"{shipped.data} test, {st['images']} images, step "
                 f"{st['step']}, {st['precision']}", "bits/sub-pixel")
    titles = ["ground truth", "observed S", "mean"] + [f"sample {j + 1}" for j in range(n_samples)]
    rows.sort(key=lambda r: (r[0], r[1]))  # by image, then by |S|
    if rows:
        plot_rows([(f"|S|={s}", p) for _, s, p in rows], titles, h, w, out / "samples.png")
    if PAIRS and len(imgs) >= 2:
        t0 = time.time()
        pairs = [(2 * k, 2 * k + 1) for k in range(min(PAIRS, len(imgs) // 2))]
        write_composition(shipped.model, imgs, pairs, out / "composition.png", size=min(256, h * w - 1),
                          samples=n_samples, seed=st["seed"])
        log(f"composition.png: {len(pairs)} pairs ({time.time() - t0:.1f}s)")


# ---------------------------------------------------------------------------------------- report

def targets(r: dict) -> dict:
    """The two targets at one |S|: NLL ≥ NLL_MARGIN_BITS below the CG's, MSE below every baseline's."""
    best = min(BASELINES, key=lambda m: r[m]["mse"])
    m, g = r["model"], r["cond_gauss"]
    return {"nll_margin_bits": g["nll_bits"] - m["nll_bits"],
            "nll_1bit_below_cond_gauss": bool(m["nll_bits"] <= g["nll_bits"] - NLL_MARGIN_BITS),
            "best_baseline": best, "best_baseline_mse": r[best]["mse"],
            "mse_below_best_baseline": bool(m["mse"] < r[best]["mse"])}


def markdown(res: dict) -> str:
    """Markdown tables of an RGB report: densities, mean images, samples, the baselines' tuning, targets."""
    st, tu = res["settings"], res["settings"]["tuning"]
    lines = [f"# PixelTransformer evaluation, RGB (step {st['step']})", "",
             f"{model_line(st)}. {st['images']} seeded images of its test split (seed {st['seed']}, "
             f"{st['height']}×{st['width']}); metrics over unobserved pixels; NLL in bits per sub-pixel (256 levels "
             "per channel); PSNR from the MSE over all images; SSIM averaged over R, G, B, observed pixels pasted. "
             f"Baselines fitted on {tu['train_images']} training images, tuned on {tu['held_out_images']} held-out "
             "training images.", "",
             r"| \|S\| | PT NLL | CG NLL | kNN NLL | CG − PT (bits) | ≥ 1 bit |",
             "|---:|---:|---:|---:|---:|:---:|"]
    for size, r in res["sizes"].items():
        t = r["targets"]
        lines.append(f"| {size} | " + " | ".join(fmt(r[m]["nll_bits"], 3) for m in DENSITIES)
                     + f" | {fmt(t['nll_margin_bits'], 3)} | {'pass' if t['nll_1bit_below_cond_gauss'] else 'FAIL'} |")
    head = [r"\|S\|"] + [f"{LABELS[m]} {k}" for m in METHODS for k in ("MSE", "PSNR", "SSIM")] + ["PT < best"]
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---:|" * (len(head) - 1) + ":---:|"]
    for size, r in res["sizes"].items():
        row = [size] + [c for m in METHODS for c in (fmt(r[m]["mse"], 5), fmt(r[m]["psnr"], 2), fmt(r[m]["ssim"], 4))]
        t = r["targets"]
        row.append(("pass" if t["mse_below_best_baseline"] else "FAIL") + f" ({LABELS[t['best_baseline']]})")
        lines.append("| " + " | ".join(row) + " |")
    lines += samples_lines(res)
    lines += ["", f"Baselines: conditional-Gaussian ridge {tu['ridge']:g}; kNN posterior per |S| (τ of the mean, "
              "τ and σ of the density; held-out MSE and NLL):", "",
              r"| \|S\| | τ mean | τ | σ | held-out MSE | held-out NLL | on grid edge |",
              "|---:|---:|---:|---:|---:|---:|:---:|"]
    for size, c in tu["knn"].items():
        lines.append(f"| {size} | {c['tau_mean']:g} | {c['tau']:g} | {c['sigma']:g} | {c['held_out_mse']:.5f} | "
                     f"{c['held_out_nll_bits']:.3f} | {'yes' if c['edge'] else 'no'} |")
    tg = res["targets"]
    lines += ["", f"Targets at every |S|: NLL ≥ {NLL_MARGIN_BITS:g} bit/sub-pixel below the CG: "
              f"{'pass' if tg['nll_1bit_below_cond_gauss'] else 'FAIL'}; mean MSE below the best baseline: "
              f"{'pass' if tg['mse_below_best_baseline'] else 'FAIL'}."]
    return "\n".join(lines) + "\n"


def evaluation_table(report: dict) -> str:
    """The model card's evaluation block: the model against the three baselines with a density or the best
    mean, per |S|."""
    head = [r"\|S\|", "PT NLL", "CG NLL", "kNN NLL", "PT − CG (bits)", "PT MSE", "CG MSE", "kNN MSE", "linear MSE",
            "nearest MSE", "PT/best MSE", "PT PSNR", "PT SSIM", "CG SSIM", "kNN SSIM"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for size, r in report["sizes"].items():
        m, t = r["model"], r["targets"]
        row = [size] + [fmt(r[k]["nll_bits"], 3) for k in DENSITIES]
        row += [minus(fmt(r["model_vs_gauss"]["nll_diff_bits"], 2))] + [fmt(r[k]["mse"], 4) for k in METHODS]
        row += [fmt(m["mse"] / t["best_baseline_mse"], 3), fmt(m["psnr"], 2)]
        row += [fmt(r[k]["ssim"], 3) for k in DENSITIES]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def card_blocks(report: dict) -> dict[str, str]:
    """The MODEL_CARD.md blocks of an RGB report: the evaluation table and the samples table."""
    return {"evaluation": evaluation_table(report), "samples": samples_table(report)}


def summary(report: dict) -> dict:
    """What model.json carries of an RGB report: per |S|, the model's figures, the CG's, the kNN's, the targets."""
    st = report["settings"]
    sizes = {}
    for size, r in report["sizes"].items():
        m, g, k, t = r["model"], r["cond_gauss"], r["knn"], r["targets"]
        sizes[size] = {"nll_bits": m["nll_bits"], "mse": m["mse"], "psnr": m["psnr"], "ssim": m["ssim"],
                       "cond_gauss_nll_bits": g["nll_bits"], "cond_gauss_mse": g["mse"],
                       "knn_nll_bits": k["nll_bits"], "knn_mse": k["mse"],
                       "best_baseline": t["best_baseline"], "best_baseline_mse": t["best_baseline_mse"]}
    return {"protocol": f"python -m export.evaluate ({st['images']} seeded RGB test images, unobserved pixels, "
                        f"NLL in bits per sub-pixel, {st['precision']} graphs)", "sizes": sizes,
            "targets": report["targets"]}
