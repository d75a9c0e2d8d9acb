"""Image evaluation helpers shared by export.evaluate.gray (gray), export.evaluate.rgb and export.evaluate.compose:
seeded observed pixels, model means / likelihoods / hybrid autoregressive samples, MSE / PSNR / SSIM,
baseline fills, report formatting. Kept apart so those modules do not import each other in a cycle."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from export.checkpoint import load_checkpoint, total_steps
from export.datasets.images import load_idx_images, pixel_centers
from export.errors import UsageError
from export.model import Mixture, PixelTransformer
from pt_plugin.images import samples_picture
from pt_plugin.sampling import step_sizes

METHODS = {"model": "PixelTransformer", "cond_gauss": "Cond. Gaussian", "linear": "Linear", "nearest": "Nearest"}
SSIM_WINDOW, SSIM_SIGMA = 7, 1.5
LN2 = math.log(2)


# ---------------------------------------------------------------------------- data and model

def load_model(path: str | Path, pos_dim: int = 2) -> tuple[PixelTransformer, int]:
    """PixelTransformer from an export.train checkpoint, in eval mode, and its training steps (with earlier runs)."""
    model, ck = load_checkpoint(path)
    if model.cfg.pos_dim != pos_dim or model.cfg.val_dim != 1:
        what = "grayscale image" if pos_dim == 2 else f"gray {pos_dim}-D"
        raise UsageError(f"{path}: evaluation needs a {what} model (pos_dim {pos_dim}, val_dim 1), "
                         f"got pos_dim {model.cfg.pos_dim}, val_dim {model.cfg.val_dim}")
    return model, total_steps(ck)


def test_images(data_dir: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """n seeded test images as [n, H*W] float32 values k/255, their test-split indices, H and W."""
    imgs = load_idx_images(data_dir, "test")[..., 0]
    if n > len(imgs):
        raise UsageError(f"--images {n} exceeds the {len(imgs)} test images; expected at most {len(imgs)}")
    which = np.random.default_rng(seed).permutation(len(imgs))[:n]  # nested: more images keep the first ones
    _, h, w = imgs.shape
    return imgs[which].reshape(n, h * w), which, h, w


def observed_indices(n: int, d: int, size: int, seed: int) -> np.ndarray:
    """[n, size] distinct observed pixel indices per image, a function of (seed, size) only."""
    return np.random.default_rng([seed, size]).random((n, d)).argsort(1)[:, :size]


def unobserved_mask(idx: np.ndarray, d: int) -> np.ndarray:
    """[n, d] True where a pixel is not in S."""
    mask = np.ones((len(idx), d), dtype=bool)
    np.put_along_axis(mask, idx, False, 1)
    return mask


def channels_last(images: torch.Tensor) -> torch.Tensor:
    """[n, D] gray or [n, D, V] values as [n, D, V]."""
    return images if images.dim() == 3 else images.unsqueeze(-1)


def take_pixels(values: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows idx [n, k] of values [n, D, V] -> [n, k, V]."""
    return values.gather(1, idx.unsqueeze(-1).expand(-1, -1, values.shape[-1]))


@torch.no_grad()
def model_predict(model: PixelTransformer, images: np.ndarray, idx: np.ndarray, centers: torch.Tensor,
                  batch_size: int, dtype: torch.dtype = torch.float32) -> tuple[np.ndarray, np.ndarray]:
    """Model mean [n, D] (gray images [n, D]) or [n, D, V] (images [n, D, V]) and the natural-log likelihood
    [n, D] of the true value at every pixel, 256 levels per channel; the mixture evaluated in `dtype`."""
    means, logps = [], []
    for i in range(0, len(images), batch_size):
        img = channels_last(torch.from_numpy(images[i:i + batch_size]))
        obs = torch.from_numpy(idx[i:i + batch_size])
        b, d, _ = img.shape
        mix = model(centers[obs], take_pixels(img, obs), torch.ones_like(obs, dtype=torch.bool),
                    centers.expand(b, d, centers.shape[-1]))
        mix = Mixture(*(t.to(dtype) for t in (mix.logits, mix.offsets, mix.log_sigma, mix.centers)))
        means.append(mix.mean().double().numpy())
        logps.append(mix.discretized_log_prob(img.to(dtype), 256, 0.0, 1.0).double().numpy())
    mean = np.concatenate(means)
    return (mean if images.ndim == 3 else mean[..., 0]), np.concatenate(logps)


@torch.no_grad()
def ar_sample(model: PixelTransformer, images: np.ndarray, idx: np.ndarray, centers: torch.Tensor,
              n_samples: int, frac: float, gen: torch.Generator, autoregressive: int | None = None) -> np.ndarray:
    """[n, n_samples, D(, V)] hybrid autoregressive samples of images [n, D] or [n, D, V]: the unobserved
    pixels in a random order, in steps of max(1, ceil(frac·|current set|)) pixels, each step conditioned
    on S plus all drawn so far. With `autoregressive` = N' only the first N' are drawn; the rest take the
    mean given the grown set (the runtime's hybrid sampler)."""
    img = channels_last(torch.from_numpy(images).double()).repeat_interleave(n_samples, 0)
    obs = torch.from_numpy(idx).repeat_interleave(n_samples, 0)
    b, d, v = img.shape
    k = obs.shape[1]
    score = torch.rand(b, d, generator=gen).scatter_(1, obs, math.inf)
    order = score.argsort(1)[:, :d - k]                  # unobserved pixels, random order per sample
    pos, val = centers[obs], take_pixels(img, obs).float()
    out, t = img.clone(), 0
    drawn = d - k if autoregressive is None else min(autoregressive, d - k)
    for step in step_sizes(k, drawn, frac):  # the runtime's schedule (pt_plugin.sampling)
        q = order[:, t:t + step]
        mix = model(pos, val, torch.ones(pos.shape[:2], dtype=torch.bool), centers[q])
        s = mix.sample(gen).clamp(0.0, 1.0)
        out.scatter_(1, q.unsqueeze(-1).expand(-1, -1, v), s.double())
        pos, val, t = torch.cat([pos, centers[q]], 1), torch.cat([val, s], 1), t + step
    if t < d - k:  # the rest: the mean given S and the N' drawn values
        q = order[:, t:]
        mean = model(pos, val, torch.ones(pos.shape[:2], dtype=torch.bool), centers[q]).mean()
        out.scatter_(1, q.unsqueeze(-1).expand(-1, -1, v), mean.double())
    out = out.view(-1, n_samples, d, v).numpy()
    return out if images.ndim == 3 else out[..., 0]


# ------------------------------------------------------------------------------------- metrics

def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """[1, 1, size, size] normalised Gaussian window."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(x: np.ndarray, y: np.ndarray, h: int, w: int, data_range: float = 1.0) -> np.ndarray:
    """Per-image SSIM (Wang et al. 2004) of [n, H*W] images: Gaussian window, mean over the valid region."""
    a = torch.as_tensor(x, dtype=torch.float64).reshape(-1, 1, h, w)
    b = torch.as_tensor(y, dtype=torch.float64).reshape(-1, 1, h, w)
    win = gaussian_window()
    mu_a, mu_b = F.conv2d(a, win), F.conv2d(b, win)
    var_a = F.conv2d(a * a, win) - mu_a ** 2
    var_b = F.conv2d(b * b, win) - mu_b ** 2
    cov = F.conv2d(a * b, win) - mu_a * mu_b
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return s.mean((1, 2, 3)).numpy()


def psnr(mse: float) -> float:
    """10·log10(1 / MSE) for values in [0, 1]; ∞ for an exact prediction."""
    return 10 * math.log10(1 / mse) if mse > 0 else math.inf


def paste(pred: np.ndarray, images: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """A copy of pred [n, D(, V)] with the observed pixels idx [n, k] set to their known values."""
    ix = idx if images.ndim == 2 else idx[..., None]
    out = pred.copy()
    np.put_along_axis(out, ix, np.take_along_axis(images, ix, 1), 1)
    return out


def score(pred: np.ndarray, logp: np.ndarray | None, images: np.ndarray, idx: np.ndarray,
          h: int, w: int) -> dict[str, float | None]:
    """NLL (bits/px), MSE, PSNR over unobserved pixels and SSIM of the image with S pasted in.

    Images [n, D] or [n, D, V] (logp [n, D] summed over channels): NLL in bits per sub-pixel, MSE over
    sub-pixels, SSIM the mean over channels. With no unobserved pixel (S = every pixel) the prediction
    is scored as is, on all pixels.
    """
    target = unobserved_mask(idx, h * w)
    full = not target.any()
    if full:
        target = np.ones_like(target)
    else:
        pred = paste(pred, images, idx)
    err = ((pred - images) ** 2)[target].mean()
    ch = images.shape[2] if images.ndim == 3 else 1
    nll = None if logp is None else float(-logp[target].mean() / (ch * LN2))
    sim = ssim(pred, images, h, w) if ch == 1 else np.mean([ssim(pred[..., c], images[..., c], h, w)
                                                            for c in range(ch)], 0)
    return {"nll_bits": nll, "mse": float(err), "psnr": psnr(err), "ssim": float(sim.mean())}


def fill(fn: Callable, images: np.ndarray, idx: np.ndarray, h: int, w: int) -> np.ndarray:
    """Apply a per-image baseline fill (nearest_fill or linear_fill) to every image [n, D], or to every
    channel of images [n, D, V]."""
    if images.ndim == 3:
        return np.stack([fill(fn, images[..., c], idx, h, w) for c in range(images.shape[2])], -1)
    if idx.shape[1] == h * w:
        return images.astype(np.float64)  # everything observed: both fills return the input
    return np.stack([fn(img[o], o, h, w) for img, o in zip(images, idx)])


def sample_stats(samples: np.ndarray, images: np.ndarray, idx: np.ndarray) -> dict[str, float | None]:
    """Per-pixel std across samples (ddof 1; None for a single sample) and the samples' MSE, over unobserved
    pixels (and channels: samples [n, S, D(, V)])."""
    target = unobserved_mask(idx, images.shape[1])
    std = float(samples.std(1, ddof=1)[target].mean()) if samples.shape[1] > 1 else None
    mse = ((samples - images[:, None]) ** 2).mean(1)
    return {"std": std, "mse": float(mse[target].mean()), "images": len(images),
            "samples": samples.shape[1]}


# ------------------------------------------------------------------------------------ reports

def fmt(v: float | None, digits: int) -> str:
    """A table cell: '—' for no value, '∞' for an infinite one."""
    if v is None:
        return "—"
    if math.isinf(v):
        return "∞"
    return f"{v:.{digits}f}"


def samples_lines(res: dict) -> list[str]:
    """The report's samples table (markdown lines), or nothing when no samples were drawn."""
    st, lines = res["settings"], []
    if any("samples" in r for r in res["sizes"].values()):
        lines += ["", f"Samples ({st['samples']} per image, first {st['sample_images']} images, "
                  f"hybrid autoregressive, ar_frac {st['ar_frac']}):", "",
                  r"| \|S\| | per-pixel std | sample MSE | mean MSE (same images) |", "|---:|---:|---:|---:|"]
        for size, r in res["sizes"].items():
            if "samples" in r:
                s = r["samples"]
                lines.append(f"| {size} | {fmt(s['std'], 4)} | {s['mse']:.5f} | {s['mean_mse']:.5f} |")
    return lines


def sample_and_score(model: PixelTransformer, imgs: np.ndarray, idx: np.ndarray, mean: np.ndarray,
                     centers: torch.Tensor, n_samples: int, ar_frac: float, gen: torch.Generator):
    """Hybrid autoregressive samples of imgs given idx, and their stats (sample_stats plus the mean's MSE on
    the same images and unobserved pixels)."""
    smp = ar_sample(model, imgs, idx, centers, n_samples, ar_frac, gen)
    sub_mask = unobserved_mask(idx, imgs.shape[1])
    stats = {**sample_stats(smp, imgs, idx), "mean_mse": float(((mean - imgs) ** 2)[sub_mask].mean())}
    return smp, stats


def markdown(res: dict) -> str:
    """Markdown tables of the results: one row per |S|."""
    st = res["settings"]
    lines = [f"# PixelTransformer evaluation (step {st['step']})", "",
             f"{st['images']} Fashion-MNIST test images (seed {st['seed']}); metrics over unobserved pixels; "
             f"NLL in bits/pixel (256 levels); PSNR from the MSE over all images; SSIM window "
             f"{SSIM_WINDOW}, σ {SSIM_SIGMA}, observed pixels pasted; conditional-Gaussian ridge {st['ridge']:g}.", ""]
    head = [r"\|S\|"]
    for name in METHODS.values():
        head += [f"{name} NLL", f"{name} MSE", f"{name} PSNR", f"{name} SSIM"]
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


def plot_metrics(res: dict, path: Path, methods: dict[str, str] = METHODS, title: str | None = None,
                 nll_unit: str = "bits/pixel") -> None:
    """NLL, MSE, PSNR and SSIM against |S| (log x), one line per method (paper Fig. 6)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [int(s) for s in res["sizes"]]
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
    for ax, (key, label) in zip(axes, [("nll_bits", f"NLL ({nll_unit})"), ("mse", "MSE"),
                                       ("psnr", "PSNR (dB)"), ("ssim", "SSIM")]):
        for m, name in methods.items():
            pts = [(s, r[m][key]) for s, r in zip(sizes, res["sizes"].values())
                   if r[m][key] is not None and math.isfinite(r[m][key]) and not (key == "mse" and r[m][key] <= 0)]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=name)
        ax.set_xscale("log")
        if key == "mse":
            ax.set_yscale("log")
        ax.set_xlabel("|S| observed pixels")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    fig.legend(*axes[1].get_legend_handles_labels(), loc="upper right", ncol=len(methods), fontsize=9)
    title = title or f"Fashion-MNIST test, {res['settings']['images']} images, step {res['settings']['step']}"
    fig.suptitle(title, x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_samples(panels: list[dict], h: int, w: int, n_samples: int, path: Path) -> None:
    """Rows of ground truth | S | mean | samples, nearest-neighbour enlarged (paper Fig. 4 style)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 3 + n_samples
    fig, axes = plt.subplots(len(panels), cols, figsize=(1.3 * cols, 1.3 * len(panels)), squeeze=False)
    titles = ["ground truth", "observed S", "mean"] + [f"sample {j + 1}" for j in range(n_samples)]
    for r, p in enumerate(panels):
        observed = samples_picture(pixel_centers(h, w)[p["idx"]], p["truth"][p["idx"]], (h, w))
        pics = [p["truth"], observed, p["mean"], *p["samples"]]
        for c, ax in enumerate(axes[r]):
            pic = pics[c]
            ax.imshow(pic if pic.ndim == 3 else pic.reshape(h, w), cmap="gray", vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=8)
        axes[r][0].set_ylabel(f"|S|={p['size']}", fontsize=8)
    fig.tight_layout(pad=0.3)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def finite_or_none(obj):
    """JSON-safe copy: infinities and NaNs become null."""
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [finite_or_none(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
