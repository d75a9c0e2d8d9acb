"""The `pt-plugin` command: sample, mean, models, download, info.

Every expected failure (missing image, wrong size, unknown model, ...) ends in one line on
stderr and a non-zero exit, never a traceback.
"""
from __future__ import annotations

import functools
import importlib.metadata as md
import platform
import sys
from pathlib import Path

import click
import numpy as np

from ._version import __version__
from .errors import PtPluginError
from .weights import DEFAULT_MODEL

DEMO_IMAGE = Path(__file__).parent / "data" / "demo.png"


def friendly_errors(fn):
    """Turn pt-plugin's own errors into `error: ...` and exit code 2."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except PtPluginError as e:
            raise click.ClickException(str(e)) from None
    return wrapper


def model_options(fn):
    fn = click.option("--model", "model_name", default=DEFAULT_MODEL, show_default=True,
                      help="model name, or a folder with encoder.onnx, decoder.onnx, model.json")(fn)
    fn = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)(fn)
    fn = click.option("--threads", type=int, default=None, help="CPU threads (default PT_PLUGIN_THREADS)")(fn)
    fn = click.option("--precision", type=click.Choice(["fp32", "int8", "fp16"]), default="fp32", show_default=True,
                      help="graphs to run: int8 is faster on a CPU, fp16 is meant for CUDA")(fn)
    return fn


def observation_options(fn):
    fn = click.option("--observed", "-k", type=int, default=64, show_default=True,
                      help="number of random pixels observed")(fn)
    fn = click.option("--mask", "mask_path", type=click.Path(), default=None,
                      help="PNG whose white pixels are the observed ones (instead of --observed)")(fn)
    fn = click.option("--resize", is_flag=True, help="resize the image to the model's grid instead of refusing it")(fn)
    fn = click.option("--seed", type=int, default=0, show_default=True)(fn)
    fn = click.option("--demo", is_flag=True, help="use the bundled test image")(fn)
    fn = click.argument("image", required=False, type=click.Path())(fn)
    return fn


def _load_model(model_name, device, threads, precision="fp32"):
    from .model import load

    return load(model_name, device=device, threads=threads, precision=precision)


def _observe(model, image, demo, mask_path, observed, seed, resize):
    """(ground truth [H, W, C], positions, values) from the command-line arguments."""
    from .images import observe_mask, observe_random, read_image, resize_image

    if demo == bool(image):
        raise click.UsageError("give an IMAGE or --demo (one of them)")
    path = DEMO_IMAGE if demo else Path(image)
    img = read_image(path, model.val_dim)
    grid = model.grid
    if grid and img.shape[:2] != tuple(grid):
        if not resize:
            raise click.ClickException(f"{path} is {img.shape[1]}x{img.shape[0]} pixels but model "
                                       f"{model.meta['name']} works on {grid[1]}x{grid[0]}; pass --resize to resize it")
        img = resize_image(img, grid[0], grid[1])
    if mask_path:
        mask = read_image(mask_path, 1)[..., 0]
        if mask.shape != img.shape[:2]:
            raise click.ClickException(f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]}; it must match the "
                                       f"image, {img.shape[1]}x{img.shape[0]}")
        pos, val = observe_mask(img, mask)
    else:
        h, w = img.shape[:2]
        if observed > h * w or observed < 1:
            raise click.ClickException(f"--observed {observed} is not possible for a {w}x{h} image "
                                       f"({h * w} pixels): choose 1 to {h * w}")
        pos, val = observe_random(img, observed, seed)
    return img, pos, val


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pt-plugin")
def main() -> None:
    """PixelTransformer: infer and sample whole signals from a few (position, value) samples."""


@main.command()
@observation_options
@click.option("--num-samples", "-n", type=int, default=3, show_default=True)
@click.option("--autoregressive", type=int, default=2048, show_default=True,
              help="positions drawn one by one (N'); the rest take the mean")
@click.option("--step-fraction", type=float, default=0.05, show_default=True,
              help="draw ceil(f*|set|) positions per encoder pass; 0 = the paper's exact one-at-a-time sampler")
@click.option("--temperature", type=click.FloatRange(0, None, min_open=True), default=1.0, show_default=True,
              help="below 1: smoother, less varied samples; 1 samples the model as trained")
@click.option("--out", "out", type=click.Path(), default="samples.png", show_default=True,
              help="PNG grid: truth | observed | mean | samples")
@click.option("--out-dir", type=click.Path(), default=None, help="also write each image to this folder")
@click.option("--scale", type=int, default=4, show_default=True, help="enlargement of the PNG grid")
@model_options
@friendly_errors
def sample(image, demo, seed, resize, mask_path, observed, num_samples, autoregressive, step_fraction, temperature,
           out, out_dir, scale, model_name, device, threads, precision):
    """Draw images from p(image | observed pixels) by hybrid autoregressive sampling."""
    from .images import figure_grid, samples_picture, write_png

    if num_samples < 1:
        raise click.ClickException(f"--num-samples must be at least 1, got {num_samples}")
    model = _load_model(model_name, device, threads, precision)
    img, pos, val = _observe(model, image, demo, mask_path, observed, seed, resize)
    shape = img.shape[:2]
    mean = model.mean_image(pos, val, shape)
    with click.progressbar(length=min(autoregressive, img.shape[0] * img.shape[1] - len(pos)),
                           label=f"sampling {num_samples} image(s)", file=sys.stderr) as bar:
        state = {"done": 0}

        def progress(done, total):
            bar.update(done - state["done"])
            state["done"] = done

        samples = model.sample_images(pos, val, shape, num_samples, seed, autoregressive=autoregressive,
                                      step_fraction=step_fraction, temperature=temperature, progress=progress)
    picture = samples_picture(pos, val, shape)
    write_png(out, figure_grid([[img, picture, mean, *samples]], scale=scale))
    click.echo(f"wrote {out}: ground truth | {len(pos)} observed pixels | mean | {num_samples} samples")
    if out_dir:
        d = Path(out_dir)
        write_png(d / "truth.png", img)
        write_png(d / "observed.png", picture)
        write_png(d / "mean.png", mean)
        for i, s in enumerate(samples):
            write_png(d / f"sample_{i:02d}.png", s)
        click.echo(f"wrote {d}/truth.png, observed.png, mean.png, sample_00..{num_samples - 1:02d}.png")


@main.command()
@observation_options
@click.option("--out", "out", type=click.Path(), default="mean.png", show_default=True,
              help="PNG grid: truth | observed | mean | per-pixel std")
@click.option("--scale", type=int, default=4, show_default=True)
@model_options
@friendly_errors
def mean(image, demo, seed, resize, mask_path, observed, out, scale, model_name, device, threads, precision):
    """The mean image given the observed pixels, and its per-pixel standard deviation."""
    from .images import figure_grid, samples_picture, write_png

    model = _load_model(model_name, device, threads, precision)
    img, pos, val = _observe(model, image, demo, mask_path, observed, seed, resize)
    m, sd = model.mean_image(pos, val, img.shape[:2], return_std=True)
    sd_view = sd / max(float(sd.max()), 1e-6)
    write_png(out, figure_grid([[img, samples_picture(pos, val, img.shape[:2]), m, sd_view]], scale=scale))
    mse = float(np.mean((m - img) ** 2))
    click.echo(f"wrote {out}: ground truth | {len(pos)} observed | mean | std (scaled to its max "
               f"{float(sd.max()):.3f}); mean-image MSE {mse:.4f}")


@main.command()
@friendly_errors
def models():
    """Known models: bundled, cached or remote, and their size."""
    from .weights import cache_dir, describe_models

    for row in describe_models():
        size = f"{row['bytes'] / 1e6:.1f} MB" if row["bytes"] else "-"
        click.echo(f"{row['name']:<20} {row['where']:<8} {size}")
    click.echo(f"cache: {cache_dir()}")


@main.command()
@click.argument("names", nargs=-1)
@friendly_errors
def download(names):
    """Fetch models into the cache (all known ones when no NAME is given), for offline use."""
    from .weights import fetch, known_models

    for name in names or known_models():
        click.echo(f"{name}: {fetch(name)}")


@main.command()
@friendly_errors
def info():
    """Versions, providers, why CUDA is or is not used, cache folder."""
    import onnxruntime as ort

    from .sessions import cuda_driver_problem, installed_onnxruntime_packages
    from .weights import DEFAULT_MODEL, cache_dir, offline

    click.echo(f"pt-plugin {__version__}  python {platform.python_version()}  numpy {np.__version__}")
    pkgs = installed_onnxruntime_packages()
    click.echo(f"onnxruntime {ort.__version__} ({', '.join(pkgs) or 'unknown package'})")
    if len(pkgs) > 1:
        click.echo("warning: several onnxruntime packages are installed; keep only one")
    click.echo(f"providers available: {', '.join(ort.get_available_providers())}")
    problem = cuda_driver_problem()
    click.echo(f"CUDA: {'usable' if problem is None else 'not used: ' + problem}")
    try:
        model = _load_model(DEFAULT_MODEL, "auto", None)
        click.echo(f"default model {model.meta['name']}: providers in use {', '.join(model.info.providers)}, "
                   f"io_binding {model.info.io_binding}, attention budget {model.attention_budget}")
    except PtPluginError as e:
        click.echo(f"default model: not loadable ({e})")
    click.echo(f"cache: {cache_dir()}  offline: {offline()}")
    for dist in ("click", "pooch", "pillow"):
        try:
            click.echo(f"{dist} {md.version(dist)}")
        except md.PackageNotFoundError:
            click.echo(f"{dist} missing")


if __name__ == "__main__":
    main()
