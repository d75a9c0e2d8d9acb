"""Report of export.evaluate.acquisition: Markdown tables with the issue's targets, and a plan picture."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

import pt_plugin
from pt_plugin.acquisition import acquire

NAMES = {"variance": "variance-greedy", "entropy": "entropy-greedy", "random": "random", "stratified": "stratified",
         "variance-sampled": "variance-greedy, sampled fantasy", "variance-exact": "variance-greedy, lazy=False",
         "entropy-exact": "entropy-greedy, lazy=False", "entropy-sampled": "entropy-greedy, sampled fantasy",
         "oracle": "oracle variance-greedy"}


def mean_se(xs) -> tuple[float, float]:
    a = np.asarray(xs, np.float64)
    return float(a.mean()), (float(a.std(ddof=1) / math.sqrt(len(a))) if len(a) > 1 else math.nan)


def cell(xs, digits: int = 4) -> str:
    m, se = mean_se(xs)
    return f"{m:.{digits}f}" if math.isnan(se) else f"{m:.{digits}f} ± {se:.{digits}f}"


def table(headers, rows) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows])


def ratio(res: dict, a: str, b: str, size: str, key: str | None = None) -> float:
    """mean(a) / mean(b) at one size (key: the metric, for image results)."""
    pick = (lambda m: res[m][size][key]) if key else (lambda m: res[m][size])
    return float(np.mean(pick(a)) / np.mean(pick(b)))


def image_section(res: dict, st: dict) -> list[str]:
    sizes = [str(st["image_start"])] + [str(s) for s in st["image_sizes"]]
    out = [f"## Images ({st['image_model']}, data {st['image_data']}): {st['images']} held-out test images, "
           f"{st['image_start']} random pixels, then acquired",
           "", "Mean-image MSE on the unobserved pixels (mean ± standard error over images):", "",
           table(["method"] + [f"|S| = {s}" for s in sizes], [[NAMES.get(m, m)] + [cell(r[s]["mse"]) for s in sizes]
                                                               for m, r in res.items()]),
           "", "NLL on the unobserved pixels, bits per pixel (256 levels):", "",
           table(["method"] + [f"|S| = {s}" for s in sizes],
                 [[NAMES.get(m, m)] + [cell(r[s]["nll_bits"], 3) for s in sizes] for m, r in res.items()])]
    if "random" in res:
        out += ["", "MSE relative to random picks (ratio of the means):", "",
                table(["method"] + [f"|S| = {s}" for s in sizes[1:]],
                      [[NAMES.get(m, m)] + [f"{ratio(res, m, 'random', s, 'mse'):.3f}" for s in sizes[1:]]
                       for m in res if m != "random"])]
    if {"variance", "random", "stratified"} <= set(res):
        r, s = ratio(res, "variance", "random", "64", "mse"), ratio(res, "variance", "stratified", "64", "mse")
        wins = int(np.sum(np.asarray(res["variance"]["64"]["mse"]) < np.asarray(res["random"]["64"]["mse"])))
        out += ["", f"Targets at |S| = 64: variance-greedy MSE / random = **{r:.3f}** (target ≤ 0.6: "
                    f"{'met' if r <= 0.6 else 'missed'}; lower on {wins} of {st['images']} images); "
                    f"/ stratified = **{s:.3f}** (target < 1: {'met' if s < 1 else 'missed'})."]
    return out


def curve_section(res: dict, st: dict) -> list[str]:
    sizes = [str(s) for s in st["curve_sizes"]]
    rows = [[NAMES.get(m, m)] + [f"{np.mean(r[s]):.4f} ({ratio(res, m, 'oracle', s):.3f}×)" for s in sizes]
            for m, r in res.items()]
    worst = max(ratio(res, "variance", "oracle", s) for s in sizes)
    return [f"## Curves ({st['curve_model']}, data {st['curve_data']}): {st['curves']} curves, {st['curve_start']} "
            f"random cells of {st['curve_cells']}, then acquired", "",
            "The exact GP's posterior variance of y averaged over [−1, 1] at the chosen sets (mean over curves; in "
            "brackets relative to the oracle's own variance-greedy sets):", "",
            table(["method"] + [f"|S| = {s}" for s in sizes], rows), "",
            f"Target: the model's variance-greedy sets within 1.10× of the oracle-greedy ones at 4, 8 and 16: "
            f"worst **{worst:.3f}×** ({'met' if worst <= 1.10 else 'missed'}). With one bin the model's value law "
            "is one Gaussian, so entropy ranks like variance."]


def markdown(res: dict) -> str:
    st = res["settings"]
    lines = ["# Acquisition: where to observe next (issue 30)", "",
             f"`python -m export.evaluate.acquisition --out docs/acquisition --image-model {st['image_model']} "
             f"--curve-model {st['curve_model']} --images {st['images']} --curves {st['curves']} --seed {st['seed']}` "
             f"(pt-plugin {st['pt_plugin']}, {st['threads']} threads, {st.get('minutes', '?')} min). fp32 exports "
             "through pt_plugin. Each loop acquires in rounds of "
             f"{st['round']} picks (fewer to land on the next size), each round followed by observing the true "
             "values there; within a round the greedy picks are lazy (pt_plugin.acquisition) and the model's mean is "
             "the fantasy value unless the row says otherwise.", ""]
    if res.get("images"):
        lines += image_section(res["images"], st) + [""]
    if res.get("curves"):
        lines += curve_section(res["curves"], st) + [""]
    if res.get("images"):
        lines += ["![plan](plan.png)", "",
                  "plan.png: a held-out image; its 16 random pixels (red); the model's std given them with the 16 "
                  "variance-greedy picks numbered in order; the mean after observing those 16; the mean after 16 "
                  "random picks instead.", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ picture

def plan_picture(model, image: np.ndarray, seed: int, path: Path, k: int = 16, scale: int = 10) -> None:
    """A strip: truth with S marked | std given S with the picks numbered | mean after them | mean after random."""
    from PIL import Image, ImageDraw, ImageFont

    h, w = model.grid
    grid = pt_plugin.grid_positions(h, w)
    obs = np.random.default_rng([seed, 0]).permutation(h * w)[:16]
    pos, val = grid[obs], image[obs, None]
    _, std = model.mean_grid(pos, val, return_std=True)
    plan = acquire(model, pos, val, k=k)
    rand = acquire(model, pos, val, k=k, criterion="random", seed=seed)
    after = lambda idx: model.mean_grid(grid[np.r_[obs, idx]], image[np.r_[obs, idx], None])[..., 0]  # noqa: E731
    panels = [image.reshape(h, w), std[..., 0] / max(float(std.max()), 1e-9), after(plan.indices), after(rand.indices)]
    gray = [Image.fromarray((np.clip(p, 0, 1) * 255).astype(np.uint8)).resize((w * scale, h * scale), Image.NEAREST)
            .convert("RGB") for p in panels]
    strip = Image.new("RGB", (len(gray) * (w * scale + 8) - 8, h * scale), "white")
    for i, g in enumerate(gray):
        strip.paste(g, (i * (w * scale + 8), 0))
    draw = ImageDraw.Draw(strip)
    try:
        font, anchor = ImageFont.load_default(size=scale + 4), "mm"
    except TypeError:  # Pillow < 10.1: the small bitmap font, which knows no anchors
        font, anchor = ImageFont.load_default(), None
    centre = lambda c, x0: (x0 + (c % w + 0.5) * scale, (c // w + 0.5) * scale)  # noqa: E731
    for c in obs:
        x, y = centre(int(c), 0)
        draw.rectangle([x - 2, y - 2, x + 2, y + 2], outline=(255, 0, 0))
    for n, c in enumerate(plan.indices, 1):
        x, y = centre(int(c), w * scale + 8)
        draw.text((x, y) if anchor else (x - 4, y - 6), str(n), fill=(255, 40, 40), font=font, anchor=anchor)
    for panel, idx in ((2, plan.indices), (3, rand.indices)):
        for c in idx:
            x, y = centre(int(c), panel * (w * scale + 8))
            draw.rectangle([x - 2, y - 2, x + 2, y + 2], outline=(0, 200, 255))
    path.parent.mkdir(parents=True, exist_ok=True)
    strip.save(path)
