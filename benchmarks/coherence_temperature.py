"""Speckle against sampling temperature (issue 33): how coherent an image model's samples are at each temperature,
side by side in one run, with what coherence costs in fidelity.

What runs: the first --images test images (by file name) of the model's data (emoji: data/emoji/test;
Fashion-MNIST otherwise), each observed at |S| = --observed random pixels (seed + image), drawn --samples times
per temperature with the model's default sampler (`Model.sample_images(..., temperature=T)`, the same seed at
every temperature). Per temperature, over all images and samples (export.evaluate.coherence, ratios to the
ground truth of the same images):
  TV / truth         mean distance between 4-neighbours, samples over truth (1 = as smooth as real images)
  isolated / truth   share of pixels farther than 0.3 from every neighbour, samples over truth
  spread             per-pixel standard deviation across the samples, over free pixels (diversity)
  sample MSE         MSE of the samples against the truth over free pixels
The issue's targets: TV within 1.15x and isolated within 1.3x of the truth. Temperature 1 samples the model as
trained; below 1 every draw is sharpened (bin choice and sigma).
"""
from __future__ import annotations

import sys

import numpy as np

import common


def main(argv: list[str] | None = None) -> int:
    from export.evaluate.coherence import isolated_fraction, total_variation

    p = common.parser(__doc__)
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--samples", type=int, default=2)
    p.add_argument("--observed", type=int, default=64)
    p.add_argument("--temperatures", type=common.float_list, default=[1.0, 0.9, 0.8, 0.7])
    a = p.parse_args(argv)
    import pt_plugin

    model = common.load_model(a.model_path, a.threads)
    shape = tuple(model.grid)
    images = common.model_test_images(model, a.images, a.data_dir)
    truth = images.reshape(len(images), -1, model.val_dim)
    rows, payload = [], {}
    tv_truth = total_variation(truth, shape).mean()
    iso_truth = isolated_fraction(truth, shape).mean()
    for temp in a.temperatures:
        draws, free = [], []
        for i, img in enumerate(images):
            pos, val = pt_plugin.observe_random(img, a.observed, a.seed + i)
            s = model.sample_images(pos, val, num_samples=a.samples, seed=a.seed + i, temperature=temp)
            s = np.asarray(s, np.float64).reshape(a.samples, -1, model.val_dim)
            draws.append(s)
            free.append(common.free_pixels(pos, *shape))
        draws_all = np.stack(draws)  # [images, samples, D, C]
        free_all = np.stack(free)[:, None, :, None]
        tv = total_variation(draws_all, shape).mean() / tv_truth
        iso = isolated_fraction(draws_all, shape).mean() / iso_truth
        cells = free_all.sum() * model.val_dim  # free sub-pixels of one sample of every image
        variance = (draws_all.var(1, ddof=1)[:, None] * free_all).sum() / cells if a.samples > 1 else float("nan")
        spread = float(np.sqrt(variance))
        mse = float((((draws_all - truth[:, None]) ** 2) * free_all).sum() / (cells * a.samples))
        rows.append([f"{temp:g}", common.fmt(tv, 3), common.fmt(iso, 3), common.fmt(spread, 3), common.fmt(mse, 3)])
        payload[f"{temp:g}"] = {"tv_ratio": tv, "isolated_ratio": iso, "spread": spread, "sample_mse": mse}
        common.log(f"  temperature {temp:g}: TV {tv:.3f}x, isolated {iso:.3f}x, spread {spread:.3f}, MSE {mse:.4f}")
    print(common.machine_line(a.threads))
    print(f"{model.path.name}: {a.images} test images, |S| = {a.observed}, {a.samples} samples each, the default "
          f"sampler (cached: {model.has_cache}); truth TV {tv_truth:.3f}, isolated {iso_truth:.4f}\n")
    print(common.table(["temperature", "TV / truth", "isolated / truth", "spread", "sample MSE"], rows))
    common.save_json(a.json, {"model": str(model.path), "observed": a.observed, "images": a.images,
                              "samples": a.samples, "cached": model.has_cache, "truth_tv": tv_truth,
                              "truth_isolated": iso_truth, "temperatures": payload})
    return 0


if __name__ == "__main__":
    sys.exit(main())
