"""The `pt-plugin` command: sample, mean, acquire, models, download, info, serve, batch.

Every expected failure (missing image, wrong size, unknown model, ...) ends in one line on
stderr and a non-zero exit, never a traceback.
"""
from __future__ import annotations

import functools
import importlib.metadata as md
import math
import os
import platform
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from ._version import __version__
from .criteria import CRITERIA
from .errors import PtPluginError
from .inputs import MAX_THREADS
from .sampling import DEFAULT_AUTOREGRESSIVE, DEFAULT_STEP_FRACTION
from .text import article, duration, number, plural
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
                      help="model name (`pt-plugin models`), "
                           "or a folder with encoder.onnx, decoder.onnx, model.json")(fn)
    fn = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)(fn)
    fn = click.option("--threads", type=click.IntRange(0, MAX_THREADS), default=None,
                      help="CPU threads, 0 = onnxruntime's default [default: PT_PLUGIN_THREADS, else "
                           "OMP_NUM_THREADS]")(fn)
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
                      help="curves and volumes: a CSV of observed samples, one per row: curves x, y; volumes x, y, z, "
                           "sdf (positions in [-1, 1]; a header row may name the columns in any order)")(fn)
    fn = click.option("--resize", is_flag=True,
                      help="resize the input (and --mask) to the model's grid instead of refusing it")(fn)
    fn = click.option("--background", type=click.Choice(["white", "black"]), default="white", show_default=True,
                      help="images and videos: what transparent pixels are composited on")(fn)
    fn = click.option("--shape", "shape_text", default=None,
                      help="grid of the outputs, e.g. 112x112 (array order); "
                           "finer than the model's = super-resolution")(fn)
    fn = click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True)(fn)
    fn = click.option("--demo", is_flag=True, help="use the model's demo signal")(fn)
    fn = click.option("--yes", "-y", is_flag=True,
                      help=f"run even when the work is estimated to take longer than {MAX_MINUTES_ENV} "
                           f"(default {DEFAULT_MAX_MINUTES:g} minutes)")(fn)
    fn = click.argument("source", metavar="[INPUT]", required=False, type=click.Path())(fn)
    return fn


@dataclass
class Request:
    """What `sample`, `mean` or `acquire` was asked: the inputs, how to observe them, the outputs and the model."""
    source: str | None
    demo: bool
    points: str | None
    mask: str | None
    observed: int | None
    seed: int
    resize: bool
    background: str
    shape_text: str | None
    out: str | None
    out_dir: str | None
    scale: int | None
    yes: bool
    model: str
    device: str
    threads: int | None
    precision: str
    num_samples: int = 0  # 0: the mean command
    plan: bool = False    # the acquire command: a plan picture and its table (Kind.write_plan)

    def inputs(self) -> dict[str, str | None]:
        """Every file the command reads, by its option: none may be written over."""
        return {"INPUT": self.source, "--mask": self.mask, "--points": self.points}


def _check_sources(req: Request) -> None:
    """Usage errors that need no model: found before anything is loaded or written."""
    from .kinds import check_out_name
    from .kinds.pictures import picture_format

    if req.out is not None:
        (picture_format if req.plan else check_out_name)(Path(req.out))
    given = [n for n, v in (("INPUT", req.source), ("--demo", req.demo), ("--points", req.points)) if v]
    if len(given) != 1:
        got = f" (got {', '.join(given)})" if given else ""
        raise click.UsageError(f"give one of INPUT, --demo or --points{got}")
    if req.mask and req.observed is not None:
        raise click.UsageError("--mask and --observed both choose the observed samples: give one of them")
    if req.points and (req.mask or req.observed is not None):
        raise click.UsageError("--points gives the observed samples itself: drop --mask / --observed")
    for label, path in (("INPUT", req.source), ("mask", req.mask), ("points file", req.points)):
        if path and not Path(path).exists():
            raise click.UsageError(f"{label} not found: {path}")


def _check_outputs_early(req: Request) -> None:
    """Before the model is even found: --out is not an input and can be written, --out-dir can take files."""
    from .files import check_folder, check_outputs

    if req.out is not None:
        from .kinds.plans import plan_paths

        check_outputs(plan_paths(Path(req.out)) if req.plan else {"--out": Path(req.out)}, req.inputs())
    if req.out_dir is not None:
        check_folder(Path(req.out_dir))


def _check_kind(kind, req: Request, name: str) -> None:
    """Options and inputs this model's kind does not take are refused, saying what it takes."""
    if req.source:
        kind.check_input(Path(req.source), False, name)
    if req.points:
        kind.check_input(Path(req.points), True, name)
    if req.mask and not hasattr(kind, "observe_mask"):
        raise click.UsageError(f"--mask is for images; model {name} is {article(kind.name)} {kind.name} model")
    if req.out_dir and not kind.writes_out_dir:
        writes = " and ".join(kind.output_paths(Path("OUT.png"), None, req.num_samples))
        raise click.UsageError(f"--out-dir is for image and volume models; model {name} is {article(kind.name)} "
                               f"{kind.name} model and writes its {writes} where --out says")
    if req.background != "white" and kind.name not in ("image", "video"):
        raise click.UsageError(f"--background is for images and videos; model {name} is {article(kind.name)} "
                               f"{kind.name} model")


def _load_model(model_name, device, threads, precision="fp32"):
    from .model import load

    return load(model_name, device=device, threads=threads, precision=precision)


def _locate(model_name: str, precision: str) -> Path:
    """The model's folder (registry, cache or a path), found without loading its graphs."""
    from .weights import graph_files, locate

    graph_files(precision)
    return locate(model_name, precision)


def default_observed(model) -> int:
    """64 samples, or fewer for a model trained on smaller sets (polynomials: 1…20), which would be asked
    to extrapolate beyond the set sizes it has seen."""
    trained = (model.meta.get("training") or {}).get("samples_range") or [None, None]
    top = trained[1] if len(trained) > 1 else None
    return min(64, top) if isinstance(top, int) and top > 0 else 64


def _observe(model, kind, req: Request, shape):
    """The Observation the command-line arguments describe, with the output grid set."""
    if req.points:
        obs = kind.read(model, Path(req.points), req.resize, req.background)
    elif req.demo:
        obs = kind.demo(model)
    else:
        obs = kind.read(model, Path(req.source), req.resize, req.background)
    if req.mask:
        obs = kind.observe_mask(obs, Path(req.mask), req.resize)
    elif not len(obs.positions):
        obs = kind.observe(obs, default_observed(model) if req.observed is None else req.observed, req.seed)
    if shape is not None:
        obs.shape = model.grid_shape(shape)
    return obs


def _prepare(req: Request, stem: str):
    """What `sample`, `mean` and `acquire` share: every argument checked, and every output location checked
    (writable, not an input) before the model loads; then the model, its signal kind, the observation and the
    output path (STEM + kind.default_suffix when --out is not given; a plan: STEM.png)."""
    from . import metadata
    from .files import check_outputs
    from .kinds import kind_for
    from .kinds.plans import plan_paths
    from .model import Model

    _check_sources(req)
    shape = parse_shape(req.shape_text)
    _check_outputs_early(req)
    folder = _locate(req.model, req.precision)
    meta = metadata.read(folder)
    kind = kind_for(metadata.signal(meta))
    _check_kind(kind, req, meta["name"])
    if req.plan:
        kind.check_plan_writer()
        out = Path(req.out) if req.out is not None else Path(f"{stem}.png")
        outputs = plan_paths(out)
    else:
        kind.check_writer()
        out = Path(req.out) if req.out is not None else Path(f"{stem}{kind.default_suffix}")
        kind.check_out(out)
        outputs = kind.output_paths(out, Path(req.out_dir) if req.out_dir else None, req.num_samples)
    check_outputs(outputs, req.inputs())
    model = Model(folder, req.device, None, req.threads, req.precision)
    return model, kind, _observe(model, kind, req, shape), out


# -- long work: an estimate up front, a progress bar on a terminal -------------------------------------------
MAX_MINUTES_ENV = "PT_PLUGIN_MAX_MINUTES"
DEFAULT_MAX_MINUTES = 5.0  # work estimated longer than this is refused without --yes
NOTE_SECONDS = 20          # work estimated longer than this is announced on stderr
OPTIMISTIC_FLOPS = 2e12    # faster than any CPU: work that even at this speed passes the bound is not timed ...
MEASURE_ABOVE_FLOPS = 5e10  # ... when it is also this small (about a second on a 2-core CPU)


def max_minutes() -> float:
    """PT_PLUGIN_MAX_MINUTES (a number of minutes > 0, or inf), else DEFAULT_MAX_MINUTES."""
    raw = os.environ.get(MAX_MINUTES_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_MINUTES
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise click.UsageError(f"{MAX_MINUTES_ENV}={raw!r} is not a positive number of minutes (e.g. 5, or inf)")
    return value


def work_flops(model, obs, num_samples: int = 0, autoregressive: int = 0, step_fraction: float = 0.0,
               cached: bool = False, buffer_size: int | None = None) -> float:
    """Floating-point operations of the mean (and std) of the output grid, and of the samples when asked (over
    cached keys and values when `cached`)."""
    from . import cost

    arch = cost.Architecture.of(model.meta)
    n, k = math.prod(obs.shape), len(obs.positions)
    flops = cost.mean_flops(arch, k, n)
    if num_samples and cached and min(autoregressive, n) > 0:
        flops += cost.cached_sample_flops(arch, k, n, num_samples, autoregressive, step_fraction, buffer_size)
    elif num_samples:
        flops += cost.sample_flops(arch, k, n, num_samples, autoregressive, step_fraction)
    return flops


SAMPLING_ADVICE = ("fewer samples (-n), a smaller --shape, a larger --step-fraction or a smaller "
                   "--autoregressive")


def check_cost(model, flops: float, yes: bool, what: str, advice: str = SAMPLING_ADVICE) -> None:
    """Refuse work estimated past max_minutes() unless --yes; announce long work on stderr. advice: what to ask
    for less of."""
    from . import cost

    limit = max_minutes() * 60
    if flops < MEASURE_ABOVE_FLOPS and flops / OPTIMISTIC_FLOPS < limit:
        return  # a second or so of work at most: not worth a timed call
    seconds = flops / cost.measured_speed(model)
    if seconds > limit and not yes:
        raise click.UsageError(f"{what} is estimated to take about {duration(seconds)} here ({flops / 1e12:,.3g} "
                               f"TFLOP), more than the {number(limit / 60)}-minute bound ({MAX_MINUTES_ENV}); "
                               f"pass --yes to run it anyway, or ask for less: {advice}")
    if seconds > NOTE_SECONDS:
        click.echo(f"note: {what} will take about {duration(seconds)} (estimated)", err=True)


class Progress:
    """fn(done, total) for Model calls that draws a click progress bar on stderr (made at the first call)."""

    def __init__(self, label: str) -> None:
        self.label, self.bar, self.done = label, None, 0

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(done - self.done)
        self.done = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


@contextmanager
def progress(label: str):
    """A Progress callback when stderr is a terminal, else None (no bar in logs and pipes)."""
    if not sys.stderr.isatty():
        yield None
        return
    bar = Progress(label)
    try:
        yield bar
    finally:
        bar.close()


def _write(kind, out: Path, obs, res, model, scale: int | None, out_dir) -> list[Path]:
    """The kind's files, all moved into place together at the end (files.staged) or none of them."""
    from .files import staged

    scale = scale or kind.default_scale(res.mean.shape[:-1])
    try:
        with staged():
            return kind.write(out, obs, res, model, scale, out_dir=Path(out_dir) if out_dir else None)
    except OSError as e:
        raise click.ClickException(f"could not write the outputs ({e}); nothing was written") from None


def _grid(obs) -> str:
    return "x".join(map(str, obs.shape))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pt-plugin")
def main() -> None:
    """PixelTransformer: infer and sample whole signals from a few (position, value) samples."""


SCALE_HELP = "enlargement of the picture [default: 4, less for large grids (panels up to 512 pixels)]"


@main.command()
@observation_options
@click.option("--num-samples", "-n", type=click.IntRange(1, 1000), default=3, show_default=True)
@click.option("--autoregressive", type=click.IntRange(0, None), default=None,
              help="positions drawn one by one (N'); the rest take the mean [default: every position for a model "
                   "with cache graphs (or its model.json cache.autoregressive where it records one), else "
                   f"{DEFAULT_AUTOREGRESSIVE}]")
@click.option("--step-fraction", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="draw ceil(f*|set|) positions per encoder pass; 0 = the paper's exact one-at-a-time sampler "
                   f"[default: 0 for a model with cache graphs, else {DEFAULT_STEP_FRACTION}]")
@click.option("--temperature", type=click.FloatRange(0, 100, min_open=True), default=1.0, show_default=True,
              help="below 1: smoother, less varied samples; 1 samples the model as trained")
@click.option("--cache/--no-cache", default=None,
              help="draw over cached keys and values (context.onnx + step.onnx) or re-encode the set at every "
                   "step (the reference) [default: cached when the model has the cache graphs]")
@click.option("--buffer-size", type=click.IntRange(0, None), default=None,
              help="cached: drawn values held in the causal buffer before the grown set is encoded again; 0 = "
                   "at every step [default: the model's, model.json cache.buffer_size, chosen by measurement]")
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None,
              help="picture to write (PNG grid for images, plot + CSV for curves, GIF + frame strip for videos, "
                   "PNG + PLY meshes for volumes: NAME.obj or NAME.ply picks the mesh format)")
@click.option("--out-dir", type=click.Path(file_okay=False), default=None,
              help="images: also write each picture here; volumes: the meshes")
@click.option("--scale", type=click.IntRange(1, 32), default=None, help=SCALE_HELP)
@model_options
@friendly_errors
def sample(source, demo, seed, shape_text, resize, background, points_path, mask_path, observed, yes, num_samples,
           autoregressive, step_fraction, temperature, cache, buffer_size, out, out_dir, scale, model_name, device,
           threads, precision):
    """Draw whole signals from p(signal | observed samples) by hybrid autoregressive sampling."""
    from .kinds import Outputs

    req = Request(source, demo, points_path, mask_path, observed, seed, resize, background, shape_text, out, out_dir,
                  scale, yes, model_name, device, threads, precision, num_samples)
    model, kind, obs, out = _prepare(req, "samples")
    cached, autoregressive, step_fraction = model.sampling_plan(autoregressive, step_fraction, cache)
    buffer_size = model.buffer_plan(buffer_size, cached)
    check_cost(model, work_flops(model, obs, num_samples, autoregressive, step_fraction, cached, buffer_size), yes,
               f"drawing {plural(num_samples, 'sample')} on a {_grid(obs)} grid")
    with progress(f"mean on a {_grid(obs)} grid") as bar:
        mean, std = model.mean_grid(obs.positions, obs.values, obs.shape, return_std=True, progress=bar)
    with progress(f"sampling {plural(num_samples, model.signal.kind)}") as bar:
        samples = model.sample_grid(obs.positions, obs.values, obs.shape, num_samples, seed,
                                    autoregressive=autoregressive, step_fraction=step_fraction,
                                    temperature=temperature, progress=bar, cache=cached,
                                    buffer_size=buffer_size if cached else None)
    written = _write(kind, out, obs, Outputs(mean, std, samples), model, scale, out_dir)
    click.echo(f"wrote {', '.join(map(str, written))}: {kind.caption(obs, num_samples)} on a {_grid(obs)} grid")


@main.command()
@observation_options
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None,
              help="picture to write: truth | observed | mean | standard deviation (volumes: PNG + the mean's "
                   "mesh, NAME.obj or NAME.ply picks the mesh format)")
@click.option("--scale", type=click.IntRange(1, 32), default=None, help=SCALE_HELP)
@model_options
@friendly_errors
def mean(source, demo, seed, shape_text, resize, background, points_path, mask_path, observed, yes, out, scale,
         model_name, device, threads, precision):
    """The mean signal given the observed samples, and its standard deviation."""
    from .kinds import Outputs

    req = Request(source, demo, points_path, mask_path, observed, seed, resize, background, shape_text, out, None,
                  scale, yes, model_name, device, threads, precision)
    model, kind, obs, out = _prepare(req, "mean")
    check_cost(model, work_flops(model, obs), yes, f"the mean on a {_grid(obs)} grid")
    with progress(f"mean on a {_grid(obs)} grid") as bar:
        m, sd = model.mean_grid(obs.positions, obs.values, obs.shape, return_std=True, progress=bar)
    empty = np.zeros((0,) + m.shape, np.float32)
    written = _write(kind, out, obs, Outputs(m, sd, empty), model, scale, None)
    msg = f"wrote {', '.join(map(str, written))}: {kind.caption(obs, 0)} on a {_grid(obs)} grid"
    if obs.truth is not None and obs.truth.shape == m.shape:
        msg += f" (max std {float(sd.max()):.3g}); mean MSE {float(np.mean((m - obs.truth) ** 2)):.4g}"
    click.echo(msg)


PICKS_HELP = ("positions to acquire, picked one by one (short -n: -k is --observed, the samples already "
              "observed)")


@main.command()
@observation_options
@click.option("--picks", "-n", type=click.IntRange(1, None), default=16, show_default=True, help=PICKS_HELP)
@click.option("--criterion", default="variance", show_default=True, metavar="[" + "|".join(CRITERIA) + "]",
              help="what makes a position worth observing: the predictive variance, the value law's entropy, the "
                   "expected improvement over the best value (maximisation, scalar values) or random (seeded)")
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None,
              help="picture to write [default: plan.png]: the std given S with the picks numbered (images: truth | "
                   "S | mean | std; curves: a plot; videos and volumes: the frames or z slices holding picks); "
                   "NAME.csv next to it lists the picks")
@click.option("--scale", type=click.IntRange(1, 32), default=None,
              help="enlargement of the picture [default: panels up to 384 pixels; curves: 4]")
@model_options
@friendly_errors
def acquire(source, demo, seed, shape_text, resize, background, points_path, mask_path, observed, yes, picks,
            criterion, out, scale, model_name, device, threads, precision):
    """Where to observe next: the positions whose value the model knows least given the observed samples,
    picked greedily (each pick joins S with the model's mean as its value before the next is chosen).
    Candidates are the cells of the model's grid (or --shape; curves: 256 points) not already observed."""
    from . import cost
    from .criteria import check
    from .kinds import Outputs

    check(criterion)  # a misspelt criterion is refused before anything is read or loaded
    req = Request(source, demo, points_path, mask_path, observed, seed, resize, background, shape_text, out, None,
                  scale, yes, model_name, device, threads, precision, plan=True)
    model, kind, obs, out = _prepare(req, "plan")
    check(criterion, model.val_dim)
    free = _free_cells(obs)
    if picks > free:
        raise click.UsageError(f"--picks {picks} is more than the {free} cells of the {_grid(obs)} grid not yet "
                               f"observed; ask for at most {free}, observe fewer (--observed) or give a finer "
                               "--shape")
    flops = work_flops(model, obs) + cost.acquire_flops(cost.Architecture.of(model.meta), len(obs.positions), free,
                                                        picks, criterion)
    check_cost(model, flops, yes, f"acquiring {plural(picks, 'position')} among {free:,} cells",
               "fewer --picks, a coarser --shape, or --criterion variance (entropy is slower)")
    with progress(f"std on a {_grid(obs)} grid") as bar:
        m, sd = model.mean_grid(obs.positions, obs.values, obs.shape, return_std=True, progress=bar)
    plan = model.acquire(obs.positions, obs.values, k=picks, criterion=criterion, seed=seed, shape=obs.shape)
    written = _write_plan(kind, out, obs, plan, Outputs(m, sd, np.zeros((0,) + m.shape, np.float32)), model, scale)
    first = ", ".join(f"{a}={number(round(float(v), 4))}" for a, v in zip(model.signal.axes, plan.positions[0]))
    grid = f"{_grid(obs)} grid" if len(obs.shape) > 1 else f"{obs.shape[0]}-point grid"
    click.echo(f"wrote {', '.join(map(str, written))}: {kind.plan_caption(plan)}; {plural(picks, 'pick')} "
               f"({criterion}) among {free:,} free cells of the {grid} given "
               f"{plural(len(obs.positions), 'observed sample')}; first at {first}")


def _free_cells(obs) -> int:
    """Cells of the output grid whose centre holds no observed sample: the candidates of `acquire`."""
    from .grids import cell_index

    cell, on_centre = cell_index(obs.positions, obs.shape)
    return math.prod(obs.shape) - len(np.unique(cell[on_centre]))


def _write_plan(kind, out: Path, obs, plan, res, model, scale: int | None) -> list[Path]:
    """The plan's picture and table, moved into place together (files.staged) or neither."""
    from .files import staged

    scale = scale or kind.plan_scale(res.mean.shape[:-1])
    try:
        with staged():
            return kind.write_plan(out, obs, plan, res, model, scale)
    except OSError as e:
        raise click.ClickException(f"could not write the outputs ({e}); nothing was written") from None


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
    POST /mean, /query, /sample, /acquire and GET /info, JSON in and out."""
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
@click.option("--workers", type=click.IntRange(1, 256), default=2, show_default=True,
              help="Ray actors (one model each)")
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
    click.echo(f"wrote {plural(len(written), 'picture')} into {out}")


if __name__ == "__main__":
    main()
