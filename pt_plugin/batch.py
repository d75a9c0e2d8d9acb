"""Complete a folder of images: mean image and N samples per image, in-process or in parallel on Ray Data.

`complete_image` is the one recipe both paths run (the model's kind reads and observes the image, as
`pt-plugin sample` does; mean_grid, sample_grid; one PNG each), so a Ray job's pictures equal a plain
loop's for the same seed. `complete_folder` runs it with
`ray.data.from_items(...).map_batches(<callable class>)`: one model per actor, loaded once. Ray Data
comes with the `serve` extra (pip install 'pt-plugin[serve]').
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .files import check_outputs
from .images import IMAGE_SUFFIXES, observe_mask
from .kinds import Kind, Observation, kind_for
from .kinds.extras import require
from .kinds.pictures import save_picture
from .sampling import DEFAULT_AUTOREGRESSIVE, DEFAULT_STEP_FRACTION
from .text import article


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The images of a folder (not recursive), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{folder} holds no image ({', '.join(IMAGE_SUFFIXES)})")
    return files


def planned_outputs(files: list[Path], out: str | os.PathLike, num_samples: int) -> dict[str, Path]:
    """Every picture complete_image writes for these files into `out`, by name (checked before any work)."""
    out = Path(out)
    names = [f"{p.stem}_mean.png" for p in files]
    names += [f"{p.stem}_sample{j}.png" for p in files for j in range(num_samples)]
    return {f"output {n}": out / n for n in names}


def complete_image(model, path: str | os.PathLike, out: str | os.PathLike, observed: int | None = 64,
                   mask=None, num_samples: int = 1, seed: int = 0, resize: bool = False,
                   **sample_options: Any) -> list[Path]:
    """Write OUT/<stem>_mean.png and OUT/<stem>_sample<j>.png for one image; returns the paths.

    The observed pixels are `observed` random ones (seeded by `seed`) or those of `mask` (an [H, W]
    array or an image file); samples use `seed` too, so the result is that of Model.mean_grid /
    sample_grid on the same set.
    """
    kind = batch_kind(model)
    path, out = Path(path), Path(out)
    obs = observe(kind, kind.read(model, path, resize), observed, mask, seed, resize)
    pos, val, shape = obs.positions, obs.values, obs.shape
    written = [save_picture(out / f"{path.stem}_mean.png", model.mean_grid(pos, val, shape))]
    if num_samples:
        samples = model.sample_grid(pos, val, shape, num_samples, seed, **sample_options)
        written += [save_picture(out / f"{path.stem}_sample{j}.png", s) for j, s in enumerate(samples)]
    return written


def batch_kind(model) -> Kind:
    """The model's kind, when batch completion takes it (Kind.batchable: one picture per mean and sample)."""
    kind = kind_for(model.signal)
    if not kind.batchable:
        raise InputError(f"batch completion is for image models; {model.meta['name']} is "
                         f"{article(kind.name)} {kind.name} model")
    return kind


def observe(kind: Kind, obs: Observation, observed: int | None, mask, seed: int, resize: bool) -> Observation:
    """S of one read image: the pixels of `mask` (an image file, resized with resize, or an [H, W] array), else
    `observed` random ones (64 when None) drawn with `seed`."""
    if mask is None:
        return kind.observe(obs, 64 if observed is None else observed, seed)
    if isinstance(mask, (str, os.PathLike)):
        return kind.observe_mask(obs, Path(mask), resize)
    obs.positions, obs.values = observe_mask(obs.truth, np.asarray(mask))
    return obs


class _Completer:
    """map_batches callable class: one model per Ray actor, loaded once."""

    def __init__(self, model: str, precision: str, threads: int | None, options: dict[str, Any]) -> None:
        from .model import load

        self.model = load(model, device="cpu", threads=threads, precision=precision)
        self.options = options

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        written = [";".join(map(str, complete_image(self.model, p, **self.options))) for p in batch["path"]]
        return {"path": np.asarray(batch["path"]), "written": np.asarray(written)}


# Ray Serve gives a new proxy 5 s to come up and kills it after that; on a busy 2-core machine that is not
# enough, and the proxy dies before it starts. Patient defaults (a caller's own settings win).
PATIENT_RAY_SERVE = {"RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "120", "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S": "60"}


def init_local_ray(num_cpus: int | None = None) -> None:
    """A local Ray bound to the loopback only (no traffic leaves 127.0.0.1), with patient Serve timeouts."""
    ray = require("ray", "serve", "a local Ray")
    for key, value in PATIENT_RAY_SERVE.items():
        os.environ.setdefault(key, value)
    ray.init(num_cpus=num_cpus, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False,
             _node_ip_address="127.0.0.1")


def complete_folder(model: str, folder: str | os.PathLike, out: str | os.PathLike, observed: int | None = 64,
                    mask=None, num_samples: int = 1, seed: int = 0, resize: bool = False,
                    step_fraction: float = DEFAULT_STEP_FRACTION, autoregressive: int = DEFAULT_AUTOREGRESSIVE,
                    temperature: float = 1.0, precision: str = "fp32", threads: int | None = 1,
                    workers: int = 2, num_cpus: float = 0.5) -> list[Path]:
    """Complete every image of `folder` with Ray Data (`workers` actors, each with its own model) into `out`.

    model: a model name or export folder (each actor loads it). Uses a running Ray, or starts a local
    one. Returns the written PNGs, sorted; they equal complete_image's in-process results.
    """
    files = image_files(folder)
    check_outputs(planned_outputs(files, out, num_samples), {**{f"input {f.name}": f for f in files},
                                                             "--mask": mask if isinstance(mask, (str, os.PathLike))
                                                             else None})
    ray = require("ray", "serve", "pt_plugin.serve.complete_folder (Ray Data)")
    data = require("ray.data", "serve", "pt_plugin.serve.complete_folder (Ray Data)")
    Path(out).mkdir(parents=True, exist_ok=True)
    options = dict(out=str(out), observed=observed, mask=str(mask) if isinstance(mask, (str, os.PathLike)) else mask,
                   num_samples=num_samples, seed=seed, resize=resize, step_fraction=step_fraction,
                   autoregressive=autoregressive, temperature=temperature)
    if not ray.is_initialized():
        init_local_ray()
    ds = data.from_items([{"path": str(p)} for p in files], override_num_blocks=len(files))
    rows = ds.map_batches(_Completer, fn_constructor_args=(str(model), precision, threads, options),
                          batch_size=1, concurrency=max(1, min(int(workers), len(files))),
                          num_cpus=num_cpus).take_all()
    return sorted(Path(w) for r in rows for w in str(r["written"]).split(";") if w)
