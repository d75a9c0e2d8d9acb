"""The `pt-plugin` command: sample, mean, models, download, info, serve, batch.

Every expected failure (missing image, wrong size, unknown model, ...) ends in one line on
stderr and a non-zero exit, never a traceback.
"""
from __future__ import annotations

import functools
import importlib.metadata as md
import math
import platform
import sys
from pathlib import Path

import click
import numpy as np

from ._version import __version__
from .errors import PtPluginError
from .sampling import DEFAULT_STEP_FRACTION
from .weights import DEFAULT_MODEL



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
                      help="model name (`pt-plugin models`), or a folder with encoder.onnx, decoder.onnx, model.json")(fn)
    fn = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)(fn)
    fn = click.option("--threads", type=click.IntRange(0, 1024), default=None,
                      help="CPU threads (default PT_PLUGIN_THREADS)")(fn)
    fn = click.option("--precision", type=click.Choice(["fp32", "int8", "fp16"]), default="fp32", show_default=True,
                      help="graphs to run: int8 is smaller (static int8 also a little faster on a CPU; see the "
                           "model card), fp16 is meant for CUDA")(fn)
    return fn


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    """'112x112' -> (112, 112): a grid in array order (height x width; frames x height x width)."""
    if text is None:
        return None
    try:
        dims = tuple(int(t) for t in text.lower().replace(",", "x").split("x"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a grid like 112x112 (array order: height x width)",
                                 param_hint="--shape") from None
    if not dims or any(n < 1 or n > 4096 for n in dims):
        raise click.BadParameter(f"{text!r}: every length must be 1 to 4096", param_hint="--shape")
    return dims


def observation_options(fn):
    fn = click.option("--observed", "-k", type=click.IntRange(1, None), default=None,
                      help="number of random samples observed [default: 64, or the largest set the model was "
                           "trained on when that is smaller]")(fn)
    fn = click.option("--mask", "mask_path", type=click.Path(), default=None,
                      help="images: a picture whose white pixels are the observed ones (instead of --observed)")(fn)
    fn = click.option("--points", "points_path", type=click.Path(), default=None,
                      help="a CSV of observed samples, one per row: curves x, y; volumes x, y, z, sdf "
                           "(positions in [-1, 1])")(fn)
    fn = click.option("--resize", is_flag=True, help="resize the input to the model's grid instead of refusing it")(fn)
    fn = click.option("--shape", "shape_text", default=None,
                      help="grid of the outputs, e.g. 112x112 (array order); finer than the model's = super-resolution")(fn)
    fn = click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True)(fn)
    fn = click.option("--demo", is_flag=True, help="use the model's demo signal")(fn)
    fn = click.argument("source", metavar="[INPUT]", required=False, type=click.Path())(fn)
    return fn


def _check_sources(source, demo, mask_path, points_path, observed, out) -> None:
    """Usage errors that need no model: found before anything is loaded or written."""
    from .kinds import check_out_name

    if out is not None:
        check_out_name(Path(out))
    given = [n for n, v in (("INPUT", source), ("--demo", demo), ("--points", points_path)) if v]
    if len(given) != 1:
        raise click.UsageError("give one of INPUT, --demo or --points" + (f" (got {', '.join(given)})" if given else ""))
    if mask_path and observed is not None:
        raise click.UsageError("--mask and --observed both choose the observed samples: give one of them")
    if points_path and (mask_path or observed is not None):
        raise click.UsageError("--points gives the observed samples itself: drop --mask / --observed")
    for label, path in (("INPUT", source), ("mask", mask_path), ("points file", points_path)):
        if path and not Path(path).exists():
            raise click.UsageError(f"{label} not found: {path}")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _load_model(model_name, device, threads, precision="fp32"):
    from .model import load

    return load(model_name, device=device, threads=threads, precision=precision)


def default_observed(model) -> int:
    """64 samples, or fewer for a model trained on smaller sets (polynomials: 1…20), which would be asked
    to extrapolate beyond the set sizes it has seen."""
    trained = (model.meta.get("training") or {}).get("samples_range") or [None, None]
    top = trained[1] if len(trained) > 1 else None
    return min(64, top) if isinstance(top, int) and top > 0 else 64


def _observe(model, kind, source, demo, mask_path, points_path, observed, seed, resize, shape):
    """The Observation the command-line arguments describe, with the output grid set."""
    if points_path:
        obs = kind.read(model, Path(points_path), resize)
    elif demo:
        obs = kind.demo(model)
    else:
        obs = kind.read(model, Path(source), resize)
    if mask_path:
        if not hasattr(kind, "observe_mask"):
            raise click.UsageError(f"--mask is for images; model {model.meta['name']} is a {kind.name} model")
        obs = kind.observe_mask(obs, Path(mask_path))
    elif not len(obs.positions):
        obs = kind.observe(obs, default_observed(model) if observed is None else observed, seed)
    if shape is not None:
        obs.shape = model.grid_shape(shape)
    return obs


def _prepare(source, demo, seed, shape_text, resize, points_path, mask_path, observed, out, stem: str, model_name,
             device, threads, precision):
    """What `sample` and `mean` share: every argument checked (and the output path writable) before the model
    runs, then the model, its signal kind, the observation and the output path (STEM + kind.default_suffix)."""
    from .kinds import kind_for

    _check_sources(source, demo, mask_path, points_path, observed, out)
    shape = parse_shape(shape_text)
    model = _load_model(model_name, device, threads, precision)
    kind = kind_for(model.signal)
    kind.check_writer()
    if out is not None:
        kind.check_out(Path(out))
    obs = _observe(model, kind, source, demo, mask_path, points_path, observed, seed, resize, shape)
    return model, kind, obs, out or f"{stem}{kind.default_suffix}"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pt-plugin")
def main() -> None:
    """PixelTransformer: infer and sample whole signals from a few (position, value) samples."""


@main.command()
@observation_options
@click.option("--num-samples", "-n", type=click.IntRange(1, 1000), default=3, show_default=True)
@click.option("--autoregressive", type=click.IntRange(0, None), default=2048, show_default=True,
              help="positions drawn one by one (N'); the rest take the mean")
@click.option("--step-fraction", type=click.FloatRange(0, 1, max_open=True), default=DEFAULT_STEP_FRACTION,
              show_default=True,
              help="draw ceil(f*|set|) positions per encoder pass; 0 = the paper's exact one-at-a-time sampler")
@click.option("--temperature", type=click.FloatRange(0, 100, min_open=True), default=1.0, show_default=True,
              help="below 1: smoother, less varied samples; 1 samples the model as trained")
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None,
              help="picture to write (PNG grid for images, plot + CSV for curves, GIF + frame strip for videos, "
                   "PNG + PLY meshes for volumes: NAME.obj or NAME.ply picks the mesh format)")
@click.option("--out-dir", type=click.Path(file_okay=False), default=None,
              help="images: also write each picture here; volumes: the meshes")
@click.option("--scale", type=click.IntRange(1, 32), default=4, show_default=True, help="enlargement of the picture")
@model_options
@friendly_errors
def sample(source, demo, seed, shape_text, resize, points_path, mask_path, observed, num_samples, autoregressive,
           step_fraction, temperature, out, out_dir, scale, model_name, device, threads, precision):
    """Draw whole signals from p(signal | observed samples) by hybrid autoregressive sampling."""
    from .kinds import Outputs

    model, kind, obs, out = _prepare(source, demo, seed, shape_text, resize, points_path, mask_path, observed, out,
                                     "samples", model_name, device, threads, precision)
    mean, std = model.mean_grid(obs.positions, obs.values, obs.shape, return_std=True)
    total = min(autoregressive, math.prod(obs.shape))
    with click.progressbar(length=total, label=f"sampling {_plural(num_samples, model.signal.kind)}",
                           file=sys.stderr) as bar:
        state = {"done": 0}

        def progress(done, _total):
            bar.update(done - state["done"])
            state["done"] = done

        samples = model.sample_grid(obs.positions, obs.values, obs.shape, num_samples, seed,
                                    autoregressive=autoregressive, step_fraction=step_fraction,
                                    temperature=temperature, progress=progress)
    written = kind.write(Path(out), obs, Outputs(mean, std, samples), model, scale, out_dir=out_dir)
    click.echo(f"wrote {', '.join(map(str, written))}: truth | {_plural(len(obs.positions), 'observed sample')} | "
               f"mean | {_plural(num_samples, 'sample')} on a {'x'.join(map(str, obs.shape))} grid")


@main.command()
@observation_options
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None,
              help="picture to write: truth | observed | mean | standard deviation (volumes: PNG + the mean's "
                   "mesh, NAME.obj or NAME.ply picks the mesh format)")
@click.option("--scale", type=click.IntRange(1, 32), default=4, show_default=True)
@model_options
@friendly_errors
def mean(source, demo, seed, shape_text, resize, points_path, mask_path, observed, out, scale, model_name, device,
         threads, precision):
    """The mean signal given the observed samples, and its standard deviation."""
    from .kinds import Outputs

    model, kind, obs, out = _prepare(source, demo, seed, shape_text, resize, points_path, mask_path, observed, out,
                                     "mean", model_name, device, threads, precision)
    m, sd = model.mean_grid(obs.positions, obs.values, obs.shape, return_std=True)
    empty = np.zeros((0,) + m.shape, np.float32)
    written = kind.write(Path(out), obs, Outputs(m, sd, empty), model, scale)
    msg = f"wrote {', '.join(map(str, written))}: truth | {_plural(len(obs.positions), 'observed sample')} | mean | std"
    if obs.truth is not None and obs.truth.shape == m.shape:
        msg += f" (max {float(sd.max()):.3f}); mean MSE {float(np.mean((m - obs.truth) ** 2)):.4f}"
    click.echo(msg)


@main.command()
@friendly_errors
def models():
    """Known models: name, signal kind, axes -> channels, size of the fp32 files, graph precisions (the
    `--precision` values it has), and where each is (bundled, cached, remote)."""
    from .weights import cache_dir, describe_models

    click.echo(f"{'name':<18} {'kind':<7} {'axes -> channels':<22} {'size':>8}  {'precisions':<11} where")
    for row in describe_models():
        size = f"{row['bytes'] / 1e6:.1f} MB" if row["bytes"] else "-"
        sig = row["signal"]
        io = f"{','.join(sig.get('axes', []))} -> {','.join(sig.get('channels', []))}" if sig else "-"
        precisions = ",".join(row["precisions"]) or "-"
        click.echo(f"{row['name']:<18} {sig.get('kind', '-'):<7} {io:<22} {size:>8}  {precisions:<11} "
                   f"{row['where']}")
    click.echo(f"cache: {cache_dir()}")


@main.command()
@click.argument("names", nargs=-1)
@friendly_errors
def download(names):
    """Make models available offline: bundled ones are already; others are fetched into the cache
    from PT_PLUGIN_WEIGHTS_URL (all known models when no NAME is given)."""
    from .weights import available, bundled_path, known_models

    for name in names or known_models():
        folder = available(name)
        click.echo(f"{name}: {'bundled' if folder == bundled_path(name) else 'cached'} at {folder}")


@main.command()
@friendly_errors
def info():
    """Versions, providers, why CUDA is or is not used, cache folder."""
    import onnxruntime as ort

    from .sessions import check_onnxruntime, cuda_driver_problem, installed_onnxruntime_packages
    from .weights import DEFAULT_MODEL, cache_dir, offline

    check_onnxruntime()  # a half-removed onnxruntime: one line with the repair command
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


@main.command("serve")
@click.option("--model", "model_name", default=DEFAULT_MODEL, show_default=True, help="model name or export folder")
@click.option("--replicas", type=click.IntRange(1, 64), default=1, show_default=True, help="Ray Serve replicas")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "int8", "fp16"]), default="fp32", show_default=True)
@click.option("--threads", type=click.IntRange(0, 1024), default=1, show_default=True, help="CPU threads per replica")
@friendly_errors
def serve_command(model_name, replicas, host, port, precision, threads):
    """Serve a model over HTTP with Ray Serve (needs pip install 'pt-plugin[serve]'):
    POST /mean, /query, /sample and GET /info, JSON in and out."""
    from .serve import run_server

    run_server(model_name, replicas, host, port, precision, threads or None, echo=click.echo)


@main.command()
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--out", "out", type=click.Path(file_okay=False), required=True, help="folder for the PNGs")
@click.option("--model", "model_name", default=DEFAULT_MODEL, show_default=True, help="model name or export folder")
@click.option("--observed", "-k", type=click.IntRange(1, None), default=None,
              help="number of random pixels observed per image [default: 64]")
@click.option("--mask", "mask_path", type=click.Path(dir_okay=False), default=None,
              help="a picture whose white pixels are the observed ones, for every image")
@click.option("--num-samples", "-n", type=click.IntRange(0, 1000), default=1, show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True)
@click.option("--step-fraction", type=click.FloatRange(0, 1, max_open=True), default=DEFAULT_STEP_FRACTION,
              show_default=True)
@click.option("--resize", is_flag=True, help="resize images to the model's grid instead of refusing them")
@click.option("--workers", type=click.IntRange(1, 256), default=2, show_default=True, help="Ray actors (one model each)")
@click.option("--precision", type=click.Choice(["fp32", "int8", "fp16"]), default="fp32", show_default=True)
@click.option("--threads", type=click.IntRange(0, 1024), default=1, show_default=True, help="CPU threads per actor")
@friendly_errors
def batch(folder, out, model_name, observed, mask_path, num_samples, seed, step_fraction, resize, workers, precision,
          threads):
    """Complete every image of FOLDER with Ray Data: OUT/<name>_mean.png and OUT/<name>_sample<j>.png
    (needs pip install 'pt-plugin[serve]')."""
    from .batch import complete_folder

    if mask_path and observed is not None:
        raise click.UsageError("--mask and --observed both choose the observed samples: give one of them")
    written = complete_folder(model_name, folder, out, observed=observed, mask=mask_path, num_samples=num_samples,
                              seed=seed, resize=resize, step_fraction=step_fraction, precision=precision,
                              threads=threads or None, workers=workers)
    click.echo(f"wrote {_plural(len(written), 'picture')} into {out}")


if __name__ == "__main__":
    main()
