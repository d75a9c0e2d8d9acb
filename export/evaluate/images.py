"""Image evaluation helpers shared by export.evaluate.gray, export.evaluate.rgb and export.evaluate.compose:
seeded test images and observed pixels, the shipped model's means, 256-level likelihoods and samples (through
pt_plugin), MSE / PSNR / SSIM, baseline fills, report formatting. Kept apart so those modules do not import
each other in a cycle."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

import pt_plugin
from export.datasets import split_spec
from export.datasets.images import load_dataset
from export.errors import DataError, UsageError
from export.evaluate import protocol
from export.model import Mixture
from pt_plugin.images import samples_picture

# every method an image protocol scores, by its key in the reports (each protocol picks its own)
LABELS = {"model": "PixelTransformer", "cond_gauss": "Cond. Gaussian", "knn": "kNN posterior", "linear": "Linear",
          "nearest": "Nearest"}
SSIM_WINDOW, SSIM_SIGMA = 7, 1.5
LEVELS = 256  # values k/255: likelihoods are of the value's 8-bit level
LN2 = math.log(2)


# ---------------------------------------------------------------------------------------- data

def image_model(shipped: protocol.Shipped, channels: int, name: str, threads: int | None) -> pt_plugin.Model:
    """The shipped model, checked to be an image model of `channels` values per pixel (the `name` protocol's);
    torch's thread count set for the baselines and SSIM."""
    model = shipped.model
    if shipped.kind != "image" or model.val_dim != channels:
        raise UsageError(f"{shipped.source}: the {name} protocol needs a {channels}-channel image model, got a "
                         f"{shipped.kind} model with {model.val_dim} values per position")
    if threads:
        torch.set_num_threads(threads)
    return model


def split_images(spec: str, data_dir: str, split: str) -> np.ndarray:
    """[N, H, W, C] images of one split of a data spec. A data set kept in folders (NAME:DIR/train) has its
    other splits in the sibling folders (DIR/test); every other spec reads its splits from one place."""
    name, where = split_spec(spec)
    if where and Path(where).name == "train":
        spec = f"{name}:{Path(where).parent / split}"
    return load_dataset(spec, data_dir, split)


def evaluation_images(images: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n seeded images of a split [N, H, W, C] as [n, H·W, C] values, and their indices in the split
    (nested: more images keep the first ones)."""
    if n > len(images):
        raise UsageError(f"--images {n} exceeds the {len(images)} test images; expected at most {len(images)}")
    which = np.random.default_rng(seed).permutation(len(images))[:n]
    _, h, w, c = images.shape
    return images[which].reshape(n, h * w, c), which


def check_grid(images: np.ndarray, grid: tuple[int, ...], what: str) -> None:
    """Refuse images [N, H, W, C] whose size is not the model's training grid."""
    if tuple(images.shape[1:3]) != tuple(grid):
        raise DataError(f"{what} are {images.shape[1]}×{images.shape[2]}; the model's grid is "
                        f"{'×'.join(map(str, grid))}: expected images of its own data set")


def check_sizes(sizes: tuple[int, ...], top: int) -> None:
    """Refuse set sizes outside 1..top."""
    bad = [s for s in sizes if not 1 <= s <= top]
    if bad:
        raise UsageError(f"--sizes {bad} outside 1..{top}: expected set sizes between 1 and {top} pixels")


def observed_indices(n: int, d: int, size: int, seed: int) -> np.ndarray:
    """[n, size] distinct observed pixel indices per image, a function of (seed, size) only."""
    return np.random.default_rng([seed, size]).random((n, d)).argsort(1)[:, :size]


def unobserved_mask(idx: np.ndarray, d: int) -> np.ndarray:
    """[n, d] True where a pixel is not in S."""
    mask = np.ones((len(idx), d), dtype=bool)
    np.put_along_axis(mask, idx, False, 1)
    return mask


# ------------------------------------------------------------------------- the shipped model

def level_log_prob(dist: pt_plugin.Distribution, values: np.ndarray, levels: int = LEVELS) -> np.ndarray:
    """Natural log of the mixture's mass on the level of each value [..., V] in [0, 1] (edge levels take the
    tails, channels independent given a component): export.model.Mixture.discretized_log_prob, the definition
    the torch evaluation used, on the graphs' outputs in float64."""
    as_t = lambda a: torch.from_numpy(np.asarray(a, np.float64))  # noqa: E731
    mix = Mixture(as_t(dist.logits), as_t(dist.offsets), as_t(dist.log_sigma), as_t(dist.centers))
    return mix.discretized_log_prob(as_t(values), levels, 0.0, 1.0).numpy()


def predict_levels(model: pt_plugin.Model, positions: np.ndarray, values: np.ndarray, queries: np.ndarray,
                   truth: np.ndarray, batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Means [n, q, V] and level log-likelihoods [n, q] (level_log_prob of truth [n, q, V]): protocol.predict
    with the 256-level likelihood in place of the density."""
    return protocol.predict(model, positions, values, queries, truth, batch, log_prob=level_log_prob)


def model_pixels(model: pt_plugin.Model, images: np.ndarray, idx: np.ndarray, batch: int) -> tuple[np.ndarray, ...]:
    """The model's mean [n, D, C] at every pixel centre of images [n, D, C] given the pixels idx [n, k] (centres
    and true values), and the level log-likelihood [n, D] of every true pixel."""
    n, d, c = images.shape
    grid = pt_plugin.grid_positions(*model.grid)
    values = np.take_along_axis(images, idx[..., None], 1)
    return predict_levels(model, grid[idx], values, np.broadcast_to(grid, (n, d, 2)), images, batch)


def sample_seed(seed: int, size: int, image: int) -> int:
    """The sampler's seed for one image at one |S|: the same draws whichever other images are sampled."""
    return int(np.random.SeedSequence([seed, size, image]).generate_state(1)[0])


def model_samples(model: pt_plugin.Model, images: np.ndarray, idx: np.ndarray, num_samples: int,
                  seed: int, autoregressive: int | None = None) -> np.ndarray:
    """[n, num_samples, D, C] images drawn by the runtime's sampler (protocol.sample, its defaults, N′ =
    autoregressive when given) given the pixels idx [n, k] of images [n, D, C]: the unobserved pixels drawn, the
    observed ones kept (as Model.sample_images does)."""
    n, d, c = images.shape
    grid = pt_plugin.grid_positions(*model.grid)
    free = unobserved_mask(idx, d)
    out = np.repeat(images[:, None], num_samples, 1)
    for i, (img, obs) in enumerate(zip(images, idx)):
        out[i][:, free[i]] = protocol.sample(model, grid[obs], img[obs], grid[free[i]], num_samples,
                                             sample_seed(seed, idx.shape[1], i), autoregressive=autoregressive)
    return out


def n_prime(args) -> int | None:
    """export.evaluate's --autoregressive (None: the model's default N′)."""
    return getattr(args, "autoregressive", None)


def sampler_settings(model: pt_plugin.Model, autoregressive: int | None = None) -> dict:
    """What the report records of the sampler: the path and defaults the runtime takes for this model
    (Model.sampling_plan: cached exact over the causal buffer when the model has cache graphs, else hybrid
    re-encoding) and the buffer bound of the cached path (Model.buffer_plan; None: never encoded again)."""
    cached, autoregressive, step_fraction = model.sampling_plan(autoregressive)
    return {"sampler": "pt_plugin.Model.sample (" + ("cached exact" if cached else "hybrid autoregressive") + ")",
            "cache": bool(cached), "autoregressive": int(autoregressive), "step_fraction": float(step_fraction),
            "buffer_size": model.buffer_plan(None) if cached else None}


def sampler_phrase(st: dict, positions: int, what: str = "pixel") -> str:
    """How the samples were drawn, from a report's settings (sampler_settings; an older report without "cache"
    was drawn by re-encoding): the cached exact path or hybrid re-encoding, N′ as "every position" when it
    covers all `positions` (what: the name of one position, "pixel" or "voxel")."""
    count = st["autoregressive"]
    every = count >= positions
    if st.get("cache"):
        buffer = st.get("buffer_size")
        again = ("never encoded again" if buffer is None else "encoded again at every draw" if buffer == 0
                 else f"encoded again every {buffer} draws")
        drawn = f"every {what} drawn" if every else f"the first {count} {what}s drawn"
        rest = "" if every else ", the rest the mean"
        fraction = f", step_fraction {st['step_fraction']:g}" if st.get("step_fraction") else ""
        return (f"cached exact ({drawn} one at a time over cached keys and values, the set {again}{rest}"
                f"{fraction})")
    return (f"hybrid re-encoding: step_fraction {st['step_fraction']:g}, N′ "
            + ("every position" if every else str(count)))


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


def sample_stats(samples: np.ndarray, images: np.ndarray, idx: np.ndarray, mean: np.ndarray) -> dict:
    """Per-pixel std across samples (ddof 1; None for a single sample), the samples' MSE and the mean's MSE on
    the same images, over unobserved pixels (and channels: samples [n, S, D(, V)], images and mean [n, D(, V)])."""
    target = unobserved_mask(idx, images.shape[1])
    std = float(samples.std(1, ddof=1)[target].mean()) if samples.shape[1] > 1 else None
    mse = ((samples - images[:, None]) ** 2).mean(1)
    return {"std": std, "mse": float(mse[target].mean()), "images": len(images), "samples": samples.shape[1],
            "mean_mse": float(((mean - images) ** 2)[target].mean())}


# ------------------------------------------------------------------------------------ reports

def fmt(v: float | None, digits: int) -> str:
    """A table cell: '—' for no value, '∞' for an infinite one."""
    if v is None:
        return "—"
    if math.isinf(v):
        return "∞"
    return f"{v:.{digits}f}"


def minus(cell: str) -> str:
    """A typographic minus, as in the cards' prose."""
    return cell.replace("-", "−")


def has_coherence(res: dict) -> bool:
    """Whether any |S| of a report carries the samples' coherence (export.evaluate.coherence)."""
    return any(r.get("samples", {}).get("coherence") for r in res["sizes"].values())


def coherence_cells(s: dict) -> list[str]:
    """The coherence cells of one |S|'s samples entry: TV and isolated fraction of the samples against the
    truth's ('samples / truth (ratio×)'), and independent draws / truth ('TV ratio×, isolated ratio×');
    '—' where not measured."""
    c = s.get("coherence")
    if not c:
        return ["—"] * 3

    def ratio(v: float | None) -> str:
        return "—" if v is None else f"{v:.2f}×"

    pair = [f"{c[k]['samples']:.3f} / {c[k]['truth']:.3f} ({ratio(c[k]['samples_over_truth'])})"
            for k in ("tv", "isolated")]
    return pair + [f"{ratio(c['tv']['independent_over_truth'])}, {ratio(c['isolated']['independent_over_truth'])}"]


COHERENCE_HEAD = ["TV samples / truth", "isolated samples / truth", "independent draws / truth (TV, isolated)"]


def samples_lines(res: dict) -> list[str]:
    """The report's samples table (markdown lines), or nothing when no samples were drawn; coherence columns when
    the report has them."""
    st, lines = res["settings"], []
    if any("samples" in r for r in res["sizes"].values()):
        coh = has_coherence(res)
        head = [r"\|S\|", "per-pixel std", "sample MSE", "mean MSE (same images)"] + (COHERENCE_HEAD if coh else [])
        lines += ["", f"Samples ({st['samples']} per image, first {st['sample_images']} images, the runtime's "
                  f"sampler with the model's defaults: {sampler_phrase(st, st['pixels'])}):", "",
                  "| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
        for size, r in res["sizes"].items():
            if "samples" in r:
                s = r["samples"]
                row = [size, fmt(s["std"], 4), f"{s['mse']:.5f}", f"{s['mean_mse']:.5f}"]
                lines.append("| " + " | ".join(row + (coherence_cells(s) if coh else [])) + " |")
        if coh:
            lines += ["", coherence_note(res)]
    return lines


def coherence_note(res: dict, signal: str = "image") -> str:
    """What the coherence columns measure (export.evaluate.coherence); signal: what one sample is ("image", or
    "clip, frame by frame" for video)."""
    threshold = next(r["samples"]["coherence"]["threshold"] for r in res["sizes"].values()
                     if r.get("samples", {}).get("coherence"))
    return (f"TV: mean distance between 4-neighbours over the whole {signal}; isolated: share of pixels farther "
            f"than {threshold:g} from every neighbour; independent draws: every unobserved pixel drawn on its own "
            "from the model's per-pixel law given S, as many as samples.")


def samples_table(report: dict) -> str:
    """The model card's samples block: spread and error of the samples per |S| (and their coherence against the
    truth and independent draws, when the report has it)."""
    coh = has_coherence(report)
    head = [r"\|S\|", "per-pixel std across samples", "sample MSE", "mean-image MSE (same images)"]
    head += COHERENCE_HEAD if coh else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for size, r in report["sizes"].items():
        if "samples" in r:
            s = r["samples"]
            row = [size, fmt(s["std"], 3), fmt(s["mse"], 3), fmt(s["mean_mse"], 3)]
            lines.append("| " + " | ".join(row + (coherence_cells(s) if coh else [])) + " |")
    return "\n".join(lines)


def model_line(st: dict) -> str:
    """What was measured, for a report's first paragraph."""
    return (f"{st['model']} ({st['precision']} graphs through {st['runtime']}, trained {st['step']} steps on "
            f"{st['data']})")


def plot_metrics(res: dict, path: Path, methods: tuple[str, ...], title: str, nll_unit: str = "bits/pixel") -> None:
    """NLL, MSE, PSNR and SSIM against |S| (log x), one line per method (paper Fig. 6)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [int(s) for s in res["sizes"]]
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
    for ax, (key, label) in zip(axes, [("nll_bits", f"NLL ({nll_unit})"), ("mse", "MSE"),
                                       ("psnr", "PSNR (dB)"), ("ssim", "SSIM")]):
        for m in methods:
            pts = [(s, r[m][key]) for s, r in zip(sizes, res["sizes"].values())
                   if r[m][key] is not None and math.isfinite(r[m][key]) and not (key == "mse" and r[m][key] <= 0)]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=LABELS[m])
        ax.set_xscale("log")
        if key == "mse":
            ax.set_yscale("log")
        ax.set_xlabel("|S| observed pixels")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    fig.legend(*axes[1].get_legend_handles_labels(), loc="upper right", ncol=len(methods), fontsize=9)
    fig.suptitle(title, x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_samples(panels: list[dict], h: int, w: int, n_samples: int, path: Path) -> None:
    """Rows of ground truth | S | mean | samples of gray images [D], nearest-neighbour enlarged (paper Fig. 4)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 3 + n_samples
    fig, axes = plt.subplots(len(panels), cols, figsize=(1.3 * cols, 1.3 * len(panels)), squeeze=False)
    titles = ["ground truth", "observed S", "mean"] + [f"sample {j + 1}" for j in range(n_samples)]
    for r, p in enumerate(panels):
        observed = samples_picture(pt_plugin.grid_positions(h, w)[p["idx"]], p["truth"][p["idx"]], (h, w))
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


def figure_sizes(sizes: tuple[int, ...], d: int) -> list[int]:
    """The |S| rows of the samples figure: 16, 64 and 256 where measured, else the first three below D."""
    return [s for s in (16, 64, 256) if s in sizes and s < d] or [s for s in sizes if s < d][:3]
