"""Sampling quality: what the fast modes cost, measured against the exact re-encoding sampler.

What runs: --images test images of the model's data (default 4; Fashion-MNIST, or the emoji test folder for an
RGB model: emoji never seen in training), each observed at |S| = 64 random pixels;
for each mode (exact = step_fraction 0 re-encoding the set at every step, then --fractions, re-encoding;
then, for a model with cache graphs, cached exact draws at each --buffers size: "default" = the model's,
"none" = one encoding, never again) Model.sample_images draws --samples images
(default 4) per observed set, with the same seed per image in every mode. Per mode, over the free
(unobserved) pixels:
  ll/px       log-likelihood of the drawn images under the model's exact autoregressive
              factorisation, in nats per pixel: for one random order of the free pixels (per image,
              shared by all modes, samples and the ground truth), the average of
              log p(v_n | S ∪ v_<n) with Distribution.log_prob (continuous density, natural log).
              One encoder pass per pixel, all chains of all modes batched (every chain has the same
              set size at each step). --ll-steps P < free pixels evaluates a random subset of P steps
              (the same for every chain): an unbiased estimate of the same average, P passes instead
              of 720. Higher is better; the ground-truth row shows where real images lie.
  mean MSE    MSE between the mean of the samples and the model's mean image (Eq. 4). Includes the
              sampling noise of an M-sample mean (about spread²/M); the JSON also holds
              bias2 = mean MSE - mean unbiased variance / M, an unbiased estimate of the squared
              bias of the mode's sample mean.
  spread      per-pixel standard deviation across the samples, averaged over free pixels
              (diversity; a mode that collapses to the mean has a smaller spread).
  sample MSE  MSE of the samples against the ground-truth image.
  TV, isolated  speckle (export.evaluate.coherence, whole images): mean distance between 4-neighbours and
              the share of pixels farther than 0.3 from every neighbour, as ratios to the ground truth's.
Relative columns: Δll = ll/px(mode) - ll/px(exact) with e^Δ, the ratio of the geometric-mean
per-pixel densities; the others are ratios mode / exact (1 = same as exact). ± values are standard
errors over images (for Δll paired per image); with a few images and samples they are wide, so read
differences smaller than about two standard errors as noise.

Cost: the ll evaluation dominates: one encoder pass per free pixel (720) over N·(M·modes + 1) chains
(84 by default, --ll-batch per call), which can take an hour or more on two CPU cores; progress and
an estimate of the time left go to stderr. --ll-steps 72 is about ten times cheaper.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import common
from common import fmt, fmt_se

Set = tuple[np.ndarray, np.ndarray]
METRICS = ("mean_mse", "spread", "sample_mse", "bias2", "tv", "isolated")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = common.parser(__doc__)
    p.add_argument("--images", type=int, default=4, help="test images (--start, --start + 1, ...)")
    p.add_argument("--start", type=int, default=0, help="the first test image")
    p.add_argument("--samples", type=int, default=4, help="samples per image and mode")
    p.add_argument("--observed", type=int, default=64, help="|S|: observed pixels per image")
    p.add_argument("--fractions", type=common.float_list, default=[0.02, 0.05, 0.1, 0.2],
                   help="step_fraction values compared with the exact mode (0)")
    p.add_argument("--buffers", default="default",
                   help="cached exact modes (model with cache graphs): comma-separated buffer sizes, 'default' "
                        "(the model's) or 'none' (never encode again); '' = no cached mode")
    p.add_argument("--autoregressive", type=int, default=2048, help="positions drawn autoregressively")
    p.add_argument("--ll-steps", type=int, default=0,
                   help="chain steps evaluated for ll/px (0 or >= free pixels: all, the exact sum)")
    p.add_argument("--ll-batch", type=int, default=32, help="chains per encoder call in the ll evaluation")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 1 image, 2 samples, --autoregressive <= 50, --ll-steps 20")
    args = p.parse_args(argv)
    if args.quick:
        args.images, args.samples = 1, 2
        args.autoregressive, args.ll_steps = min(args.autoregressive, 50), 20
    return args


def modes(model, args: argparse.Namespace) -> dict[str, dict]:
    """Mode name -> Model.sample options: exact re-encoding, the fractions, and the cached buffers."""
    out = {"exact": {"cache": False, "step_fraction": 0.0}}
    out.update({f"f={f:g}": {"cache": False, "step_fraction": f} for f in args.fractions if f != 0})
    never = 10 ** 9  # a buffer that never fills
    for b in [b.strip() for b in args.buffers.split(",") if b.strip()] if model.has_cache else []:
        size = {"default": model.buffer_plan(None), "none": never}[b] if b in ("default", "none") else int(b)
        size = never if size is None else size
        label = "none" if size == never else str(size)
        out[f"cached, buffer {label}" + (" (default)" if b == "default" else "")] = {
            "cache": True, "step_fraction": 0.0, "buffer_size": size}
    return out


# -- drawing and per-image metrics -------------------------------------------------------------
def draw(model, sets: list[Set], options: dict, args: argparse.Namespace) -> tuple[np.ndarray, float]:
    """[N, M, H*W, C] samples of every image for one mode, and seconds per image."""
    out, t0 = [], time.perf_counter()
    for i, (pos, val) in enumerate(sets):
        imgs = model.sample_images(pos, val, num_samples=args.samples, seed=args.seed + 1000 + i,
                                   autoregressive=args.autoregressive, **options)
        out.append(imgs.reshape(args.samples, -1, imgs.shape[-1]))
    return np.stack(out), (time.perf_counter() - t0) / len(sets)


def image_metrics(x: np.ndarray, mean_image: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Metrics of samples x [M, P, C] of one image (its free pixels) against its mean image and truth [P, C]."""
    m = len(x)
    var = x.var(0, ddof=1) if m > 1 else np.full(x.shape[1:], np.nan)
    mean_mse = float(((x.mean(0) - mean_image) ** 2).mean())
    return {"mean_mse": mean_mse, "spread": float(np.sqrt(var).mean()),
            "sample_mse": float(((x - truth) ** 2).mean()), "bias2": mean_mse - float(var.mean()) / m}


# -- the exact autoregressive log-likelihood ---------------------------------------------------
def chain_steps(n_free: int, ll_steps: int, rng: np.random.Generator) -> np.ndarray:
    """Which chain steps to evaluate: all, or a sorted random subset of ll_steps."""
    if ll_steps <= 0 or ll_steps >= n_free:
        return np.arange(n_free)
    return np.sort(rng.choice(n_free, ll_steps, replace=False))


def chain_log_likelihood(model, sets: list[Set], pos: np.ndarray, val: np.ndarray, steps: np.ndarray,
                         max_batch: int) -> np.ndarray:
    """Per chain, the mean over `steps` n of log p(val[:, n] | S ∪ (pos, val)[:, :n]), [B].

    sets: the observed set of each chain; pos [B, F, P] and val [B, F, C]: its free pixels in the
    order of the factorisation. One encoder pass per step (batched over the chains).
    """
    b_all = len(sets)
    total = np.zeros(b_all)
    t0 = time.perf_counter()
    for j, n in enumerate(steps):
        for lo in range(0, b_all, max_batch):
            hi = min(b_all, lo + max_batch)
            ctx = model.encode_batch([(np.concatenate([sets[b][0], pos[b, :n]]),
                                       np.concatenate([sets[b][1], val[b, :n]])) for b in range(lo, hi)])
            total[lo:hi] += model.query(ctx, pos[lo:hi, n:n + 1]).log_prob(val[lo:hi, n:n + 1])[:, 0]
        if j in (0, 9) or (j + 1) % max(1, len(steps) // 10) == 0:
            el = time.perf_counter() - t0
            left = el / (j + 1) * (len(steps) - j - 1)
            common.log(f"  ll: step {j + 1}/{len(steps)}, {el:.0f} s, ~{left:.0f} s left")
    return total / len(steps)


def log_likelihoods(model, sets: list[Set], free: np.ndarray, chains: dict[str, np.ndarray], grid: np.ndarray,
                    args: argparse.Namespace) -> dict[str, np.ndarray]:
    """ll/px per mode, [N, M]: chains maps mode -> values [N, M, H*W, C] (truth as [N, 1, ...]) at grid."""
    rng = np.random.default_rng(args.seed + 7777)
    n_img, n_free = len(sets), int(free[0].sum())
    orders = [np.flatnonzero(free[i])[rng.permutation(n_free)] for i in range(n_img)]  # per image, shared
    steps = chain_steps(n_free, args.ll_steps, rng)
    c_sets, c_pos, c_val, where = [], [], [], []
    for name, x in chains.items():
        for i in range(n_img):
            for s in range(x.shape[1]):
                c_sets.append(sets[i])
                c_pos.append(grid[orders[i]])
                c_val.append(x[i, s, orders[i]])
                where.append((name, i, s))
    common.log(f"ll: {len(c_sets)} chains, {len(steps)} of {n_free} steps")
    ll = chain_log_likelihood(model, c_sets, np.stack(c_pos), np.stack(c_val), steps, args.ll_batch)
    out = {name: np.zeros(x.shape[:2]) for name, x in chains.items()}
    for (name, i, s), v in zip(where, ll):
        out[name][i, s] = v
    return out


# -- aggregation and table ---------------------------------------------------------------------
def summarise(per_image: dict[str, dict[str, np.ndarray]], ll: dict[str, np.ndarray]) -> dict[str, dict]:
    """Per mode: mean and standard error over images of each metric; Δll paired with exact."""
    out = {}
    for name, mets in per_image.items():
        row = {k: common.mean_se(v) for k, v in mets.items()}
        row["ll"] = common.mean_se(ll[name].mean(1))
        row["dll"] = common.mean_se(ll[name].mean(1) - ll["exact"].mean(1))
        out[name] = row
    return out


def ratio_cell(row: dict, exact: dict, key: str) -> str:
    return fmt(row[key][0] / exact[key][0] if exact[key][0] else None)


def render(summary: dict[str, dict]) -> str:
    headers = ["mode", "ll/px (nats)", "Δll vs exact (e^Δ)", "mean MSE", "×exact", "spread", "×exact",
               "sample MSE", "×exact", "TV / truth", "isolated / truth"]
    ex, truth = summary["exact"], summary["truth"]
    speckle = [lambda r, k=k: fmt(r[k][0] / truth[k][0] if truth[k][0] else None) for k in ("tv", "isolated")]
    body = []
    for name, r in summary.items():
        dll = "0 (1)" if name == "exact" else f"{fmt_se(*r['dll'])} ({fmt(float(np.exp(r['dll'][0])))})"
        cells = [name, fmt_se(*r["ll"]), dll, fmt_se(*r["mean_mse"], 2)]
        if name == "truth":
            cells += ["-", "-", "-", "-", "-"]
        else:
            cells += [ratio_cell(r, ex, "mean_mse"), fmt_se(*r["spread"], 2), ratio_cell(r, ex, "spread"),
                      fmt_se(*r["sample_mse"], 2), ratio_cell(r, ex, "sample_mse")]
        body.append(cells + [f(r) for f in speckle])
    return common.table(headers, body)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import pt_plugin
    from export.evaluate.coherence import isolated_fraction, total_variation

    machine = common.machine_line(args.threads)
    model = common.load_model(args.model_path, args.threads, device=args.device)
    images = common.model_test_images(model, args.images, args.data_dir, args.start)
    n_img, h, w, c = images.shape
    sets = common.observed_sets(images, args.observed, args.seed)
    free = np.stack([common.free_pixels(p, h, w) for p, _ in sets])
    truth = images.reshape(n_img, 1, h * w, c)
    means = np.stack([model.mean_image(p, v).reshape(h * w, c) for p, v in sets])

    chains, per_image, timing = {}, {}, {}
    for name, options in modes(model, args).items():
        common.log(f"drawing {args.samples} samples x {n_img} images, {name}")
        chains[name], timing[name] = draw(model, sets, options, args)
    chains["truth"] = truth
    for name, x in chains.items():
        mets = [image_metrics(x[i][:, free[i]], means[i][free[i]], truth[i, 0][free[i]]) for i in range(n_img)]
        for i, m in enumerate(mets):  # speckle over whole images (observed pixels included, as in the truth)
            m["tv"] = float(total_variation(x[i], (h, w)).mean())
            m["isolated"] = float(isolated_fraction(x[i], (h, w)).mean())
        per_image[name] = {k: np.array([m[k] for m in mets]) for k in METRICS}
    ll = log_likelihoods(model, sets, free, chains, pt_plugin.grid_positions(h, w), args)
    summary = summarise(per_image, ll)

    steps = "all" if args.ll_steps <= 0 or args.ll_steps >= free[0].sum() else f"{args.ll_steps} random"
    print(f"# Sampling quality: fast modes vs the exact re-encoding sampler ({n_img} images x {args.samples} samples, "
          f"|S|={args.observed})\n")
    print(f"{machine}; model {args.model_path}; {min(args.autoregressive, int(free[0].sum()))} of "
          f"{int(free[0].sum())} free pixels drawn autoregressively; ll over {steps} chain steps; "
          "'truth' = the ground-truth images (its mean MSE is truth vs mean image)\n")
    print(render(summary))
    common.save_json(args.json, {"benchmark": "sampling_quality", "machine": machine, "args": vars(args),
                                 "summary": summary, "seconds_per_image": timing,
                                 "per_image": per_image, "ll_per_sample": ll})
    return 0


if __name__ == "__main__":
    sys.exit(main())
