"""RGB image models (issue 12): `python -m export.evaluate CHECKPOINT` on a model with val_dim 3.

The protocol of export.evaluate.gray on seeded images of the test split of the model's image folder
(train.data folder:DIR/train -> DIR/test, or --data-dir DIR): |S| ∈ {4, 16, 64, 256} observed pixels
with all three channels, the same draws for every method. Over the unobserved pixels: NLL in bits per
sub-pixel (256 levels per channel; each mixture component discretised per channel, the channels
independent given the component), MSE, PSNR from the MSE over all images, SSIM averaged over R, G, B
with the observed pixels pasted; the spread of hybrid autoregressive samples.

Baselines are fitted on the model's own training images (the train split less the images training held
out) and tuned on (up to --tune-images of) those held-out images, never on the test split:
cond_gauss, a Gaussian on the 3·H·W vector (ridge by select_ridge); knn, the posterior over training
images of baselines.KnnPosterior (per |S|: τ of its mean by held-out MSE, τ and σ of its density by
held-out NLL); linear and nearest fill per channel.
Targets, stored as booleans: model NLL at least 1 bit/sub-pixel below the CG's, and model MSE below the
best baseline's, at every |S|. Writes metrics.json, metrics.md, metrics.png, samples.png (Fig. 4 style)
and composition.png (Fig. 5 style: left half of one emoji, right half of another).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from export.checkpoint import load_checkpoint, total_steps
from export.datasets.emoji import PACKAGES, split_key
from export.datasets.images import holdout_split, image_files, load_image_folder, pixel_centers
from export.errors import DataError, UsageError
from export.evaluate.baselines import (
    ConditionalGaussian,
    KnnPosterior,
    discretized_gaussian_log_prob,
    linear_fill,
    nearest_fill,
    select_knn,
    select_ridge,
)
from export.evaluate.compose import observed_picture, plot_rows, write_composition
from export.evaluate.images import (
    fill,
    finite_or_none,
    fmt,
    model_predict,
    observed_indices,
    paste,
    plot_metrics,
    sample_and_score,
    samples_lines,
    score,
)

METHODS = {"model": "PixelTransformer", "cond_gauss": "Cond. Gaussian", "knn": "kNN posterior",
           "linear": "Linear", "nearest": "Nearest"}
BASELINES = ("cond_gauss", "knn", "linear", "nearest")
DENSITIES = ("model", "cond_gauss", "knn")
SIZES = (4, 16, 64, 256)
RIDGES = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
NLL_MARGIN_BITS = 1.0  # target: model NLL at least this far below the conditional Gaussian's


# ---------------------------------------------------------------------------------------- data

def data_folder(config: dict, data_dir: str | Path | None) -> Path:
    """The folder holding train/ and test/: data_dir, or the parent of the checkpoint's folder:DIR/train."""
    if data_dir:
        return Path(data_dir)
    spec = config["train"].get("data") or ""
    kind, _, where = spec.partition(":")
    if kind != "folder" or Path(where).name != "train":
        raise UsageError(f"the checkpoint was trained on {spec!r}, not folder:DIR/train: "
                         "pass --data-dir DIR (a folder with train/ and test/)")
    return Path(where).parent


def load_split(folder: Path, split: str) -> tuple[np.ndarray, int, int]:
    """[N, H·W, 3] float32 images of folder/split (values k/255), H and W."""
    imgs = load_image_folder(folder / split, channels=3)
    n, h, w, c = imgs.shape
    return imgs.reshape(n, h * w, c), h, w


def subpixel_indices(idx: np.ndarray, channels: int = 3) -> np.ndarray:
    """Pixel indices [n, k] -> indices [n, k·C] into the pixel-major [D·C] vector."""
    return (idx[..., None] * channels + np.arange(channels)).reshape(len(idx), -1)


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


def emoji_groups(folder: Path) -> np.ndarray:
    """Per image of folder (in load order): the emoji it shows, one key for both vendors and every skin tone
    (export.datasets.emoji.split_key of `vendor_name.png`); any other file name is a group of its own."""
    keys = []
    for f in image_files(folder):
        vendor, _, rest = f.name.partition("_")
        keys.append(split_key(rest) if vendor in PACKAGES and rest else f.name)
    return np.array(keys)


def tuning_split(keys: np.ndarray, val_images: int, tune_images: int,
                 limit: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the model's training images (the train split less its held-out share, as export.train
    splits it), of up to tune_images held-out images, and of the training images that show none of their
    emoji (the tuning database: a sibling in another skin tone or vendor would flatter sharp kNN weights)."""
    held, train = holdout_split(np.arange(len(keys)), "folder:", val_images)
    train = train[:limit] if limit else train
    tune = held[:tune_images]
    return train, tune, train[~np.isin(keys[train], keys[tune])]


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
             f"{st['images']} test images of {st['data']} (seed {st['seed']}, {st['height']}×{st['width']}); metrics "
             "over unobserved pixels; NLL in bits per sub-pixel (256 levels per channel); PSNR from the MSE over "
             f"all images; SSIM averaged over R, G, B, observed pixels pasted. Baselines fitted on "
             f"{tu['train_images']} training images, tuned on {tu['held_out_images']} held-out training images.", "",
             r"| \|S\| | PT NLL | CG NLL | kNN NLL | CG − PT (bits) | ≥ 1 bit |",
             "|---:|---:|---:|---:|---:|:---:|"]
    for size, r in res["sizes"].items():
        t = r["targets"]
        lines.append(f"| {size} | " + " | ".join(fmt(r[m]["nll_bits"], 3) for m in DENSITIES)
                     + f" | {fmt(t['nll_margin_bits'], 3)} | {'pass' if t['nll_1bit_below_cond_gauss'] else 'FAIL'} |")
    head = [r"\|S\|"] + [f"{name} {k}" for name in METHODS.values() for k in ("MSE", "PSNR", "SSIM")] + ["PT < best"]
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---:|" * (len(head) - 1) + ":---:|"]
    for size, r in res["sizes"].items():
        row = [size] + [c for m in METHODS for c in (fmt(r[m]["mse"], 5), fmt(r[m]["psnr"], 2), fmt(r[m]["ssim"], 4))]
        t = r["targets"]
        row.append(("pass" if t["mse_below_best_baseline"] else "FAIL") + f" ({METHODS[t['best_baseline']]})")
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
                        "NLL in bits per sub-pixel)", "sizes": sizes, "targets": report["targets"]}


# -------------------------------------------------------------------------------------- protocol

def evaluate_rgb(checkpoint_path: str | Path, out: str | Path = "runs/eval", images: int = 64,
                 sizes: tuple[int, ...] = SIZES, seed: int = 0, samples: int = 3, sample_images: int = 4,
                 ar_frac: float = 0.05, data_dir: str | Path | None = None, batch_size: int = 4,
                 ridge: float | None = None, train_limit: int = 0, tune_images: int = 32, fig_images: int = 4,
                 pairs: int = 3, threads: int = 2, log: Callable[[str], None] = print) -> dict:
    """Run the protocol of the module docstring, write the reports into `out`, return the results."""
    if threads:
        torch.set_num_threads(threads)
    model, ck = load_checkpoint(checkpoint_path)
    if model.cfg.pos_dim != 2 or model.cfg.val_dim != 3:
        raise UsageError(f"{checkpoint_path}: needs an RGB image model (pos_dim 2, val_dim 3), "
                         f"got pos_dim {model.cfg.pos_dim}, val_dim {model.cfg.val_dim}")
    folder = data_folder(ck["config"], data_dir)
    test, h, w = load_split(folder, "test")
    d = h * w
    if images > len(test):
        raise UsageError(f"--images {images} exceeds the {len(test)} test images in {folder / 'test'}; "
                         f"expected at most {len(test)}")
    bad = [s for s in sizes if not 1 <= s < d]
    if bad:
        raise UsageError(f"--sizes {bad} outside 1..{d - 1}: expected set sizes below the {d} pixels of an image")
    which = np.random.default_rng(seed).permutation(len(test))[:images]  # nested: more images keep the first ones
    imgs = test[which]

    tc = ck["config"]["train"]
    all_train, th, tw = load_split(folder, "train")
    if (th, tw) != (h, w):
        raise DataError(f"train images are {th}×{tw}, test images {h}×{w}; expected one size in {folder}")
    split = tuning_split(emoji_groups(folder / "train"), tc.get("val_images") or tune_images, tune_images,
                         min((x for x in (tc.get("limit"), train_limit) if x), default=0))
    gauss, knn, tuning = fit_baselines(all_train, split, sizes, seed, ridge, log)
    del all_train

    centers = torch.from_numpy(pixel_centers(h, w))
    n_sub = min(sample_images, images) if samples > 0 else 0
    gen = torch.Generator().manual_seed(seed)
    results, rows = {}, []
    fig_sizes = [s for s in (16, 64, 256) if s in sizes] or list(sizes[:3])
    for size in sizes:
        t0 = time.time()
        idx = observed_indices(images, d, size, seed)
        mean, logp = model_predict(model, imgs, idx, centers, batch_size, torch.float64)
        preds = {"model": (mean, logp), "cond_gauss": gauss_predict(gauss, imgs, idx),
                 "knn": knn_predict(knn, imgs, idx, tuning["knn"][str(size)]),
                 "linear": (fill(linear_fill, imgs, idx, h, w), None),
                 "nearest": (fill(nearest_fill, imgs, idx, h, w), None)}
        r = {m: score(p, lp, imgs, idx, h, w) for m, (p, lp) in preds.items()}
        r["model_vs_gauss"] = {"mse_ratio": r["model"]["mse"] / r["cond_gauss"]["mse"],
                               "nll_diff_bits": r["model"]["nll_bits"] - r["cond_gauss"]["nll_bits"]}
        r["targets"] = targets(r)
        msg = f"|S|={size}: NLL model/CG/kNN " + " ".join(f"{r[m]['nll_bits']:.3f}" for m in DENSITIES)
        msg += "; MSE " + " ".join(f"{r[m]['mse']:.4f}" for m in METHODS)
        if n_sub:
            smp, r["samples"] = sample_and_score(model, imgs[:n_sub], idx[:n_sub], mean[:n_sub], centers, samples,
                                                 ar_frac, gen)
            msg += f"; samples std {fmt(r['samples']['std'], 4)}"
        if size in fig_sizes:
            pasted = paste(mean, imgs, idx)
            for i in range(min(fig_images, n_sub or images)):  # sampled images only, when sampling
                panels = [imgs[i], observed_picture(imgs[i], idx[i], h, w), pasted[i]] + (list(smp[i]) if n_sub else [])
                rows.append((i, size, panels))
        results[str(size)] = r
        log(f"{msg} ({time.time() - t0:.1f}s)")

    res = {"settings": {"checkpoint": str(checkpoint_path), "step": total_steps(ck), "data": str(folder / "test"),
                        "images": images, "seed": seed, "sizes": list(sizes), "pixels": d, "height": h, "width": w,
                        "channels": 3, "nll_unit": "bits per sub-pixel (256 levels per channel)",
                        "samples": samples, "sample_images": n_sub, "ar_frac": ar_frac, "tuning": tuning,
                        "psnr": "10*log10(1/MSE), MSE averaged over all images' unobserved sub-pixels",
                        "ssim": "mean over R, G, B of the gray SSIM (Gaussian window 7, σ 1.5, data range 1)",
                        "test_indices": which.tolist()},
           "sizes": results,
           "targets": {k: all(r["targets"][k] for r in results.values())
                       for k in ("nll_1bit_below_cond_gauss", "mse_below_best_baseline")}}
    res["targets"]["pass"] = all(res["targets"].values())
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(finite_or_none(res), indent=1, ensure_ascii=False))
    (out / "metrics.md").write_text(markdown(res))
    plot_metrics(res, out / "metrics.png", METHODS,
                 f"{folder.name} test, {images} images, step {res['settings']['step']}", "bits/sub-pixel")
    titles = ["ground truth", "observed S", "mean"] + [f"sample {j + 1}" for j in range(samples if n_sub else 0)]
    rows.sort(key=lambda r: (r[0], r[1]))  # by image, then by |S|
    if rows:
        plot_rows([(f"|S|={s}", p) for _, s, p in rows], titles, h, w, out / "samples.png")
    if pairs and images >= 2:
        t0 = time.time()
        pair_list = [(2 * k, 2 * k + 1) for k in range(min(pairs, images // 2))]
        write_composition(model, imgs, pair_list, h, w, out / "composition.png", size=min(256, d - 1),
                          samples=samples, ar_frac=ar_frac, seed=seed)
        log(f"composition.png: {len(pair_list)} pairs ({time.time() - t0:.1f}s)")
    return res
