"""Model weights: bundled models, a pooch cache with sha256 checks, custom exports.

A model is a folder with encoder.onnx, decoder.onnx and model.json, and optionally reduced-precision graphs
encoder.<p>.onnx / decoder.<p>.onnx (p = int8, fp16; written by export.quantize), the causal buffer's graphs
context[.<p>].onnx / step[.<p>].onnx and a demo signal (demo.npz). A registered name resolves through
weights/registry.txt only: the copy bundled in the package, else the cache (PT_PLUGIN_HOME, default pooch's OS
cache folder for "pt-plugin"), else a download from PT_PLUGIN_WEIGHTS_URL (never when PT_PLUGIN_OFFLINE=1;
there is no default server). A folder is loaded only when given as a path (model_path=, or a name with a path
separator); model.json's sha256 of each graph is checked at load (pt_plugin.metadata). Every file of a named
model is checked against the registry before use; a variant is fetched only when asked for and listed there.
"""
from __future__ import annotations

import os
from pathlib import Path

import pooch

from . import metadata
from .errors import InputError, ModelNotFoundError, WeightsError
from .metadata import sha256

MODEL_FILES = ("encoder.onnx", "decoder.onnx", "model.json")
OPTIONAL_FILES = ("demo.npz",)  # fetched with the model when registered
PRECISIONS = ("fp32", "int8", "fp16")
DEFAULT_MODEL = "fashion-mnist"


def graph_files(precision: str = "fp32") -> tuple[str, str]:
    """(encoder, decoder) file names of a precision: encoder.onnx or encoder.<precision>.onnx."""
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    suffix = "" if precision == "fp32" else f".{precision}"
    return f"encoder{suffix}.onnx", f"decoder{suffix}.onnx"


def cache_graph_files(precision: str = "fp32") -> tuple[str, str]:
    """(context, step) file names of the causal buffer's graphs at a precision: context.onnx or
    context.<precision>.onnx (pt_plugin.cached_sampling)."""
    suffix = graph_files(precision)[0][len("encoder"):]  # "" or ".int8" (a bad precision refused there)
    return f"context{suffix}", f"step{suffix}"


def bundled_root() -> Path:
    """weights/ inside the installed package, or the repository's weights/ in a source checkout."""
    inside = Path(__file__).parent / "weights"
    if (inside / "registry.txt").is_file():
        return inside
    return Path(__file__).resolve().parent.parent / "weights"


def registry() -> dict[str, str]:
    """{'MODEL/FILE': 'sha256:...'} from registry.txt."""
    path = bundled_root() / "registry.txt"
    entries: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and not parts[0].startswith("#"):
                entries[parts[0]] = parts[1]
    return entries


def known_models() -> list[str]:
    return sorted({key.split("/")[0] for key in registry()})


def cache_dir() -> Path:
    return Path(os.environ.get("PT_PLUGIN_HOME") or pooch.os_cache("pt-plugin"))


def offline() -> bool:
    return os.environ.get("PT_PLUGIN_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _matches(path: Path, key: str) -> bool:
    want = registry()[key].split(":")[-1]
    return path.is_file() and sha256(path) == want


def _check_known(name: str) -> None:
    if name not in known_models():
        hint = (f"; to load the folder {name!r}, give it as a path (./{name}) or model_path="
                if Path(name).is_dir() else "")
        raise ModelNotFoundError(f"unknown model {name!r}; known models: {', '.join(known_models()) or 'none'} "
                                 f"(or give the path of a folder holding encoder.onnx, decoder.onnx and model.json"
                                 f"{hint})")


def _listed(name: str) -> list[str]:
    """Files registered for a model: MODEL_FILES, any reduced-precision graphs, its demo."""
    return [key.split("/", 1)[1] for key in registry() if key.startswith(name + "/")]


def bundled_path(name: str) -> Path | None:
    """The bundled folder if it holds the model; checks MODEL_FILES and every other registered file present."""
    folder = bundled_root() / name
    if all((folder / f).is_file() for f in MODEL_FILES):
        extra = [f for f in _listed(name) if f not in MODEL_FILES and (folder / f).is_file()]
        for f in (*MODEL_FILES, *extra):
            if not _matches(folder / f, f"{name}/{f}"):
                raise WeightsError(f"bundled file {folder / f} does not match its sha256 in registry.txt: the "
                                   "installation is damaged; reinstall pt-plugin")
        return folder
    return None


def cached_path(name: str, extra: tuple[str, ...] = ()) -> Path | None:
    folder = cache_dir() / name
    if all(_matches(folder / f, f"{name}/{f}") for f in (*MODEL_FILES, *extra)):
        return folder
    return None


def _damaged_in_cache(name: str, files: tuple[str, ...]) -> list[Path]:
    """Cached files of a model that are present but do not match their registered sha256."""
    folder = cache_dir() / name
    return [folder / f for f in files if (folder / f).is_file() and not _matches(folder / f, f"{name}/{f}")]


def _optional(name: str) -> tuple[str, ...]:
    return tuple(f for f in OPTIONAL_FILES if f in _listed(name))


def fetch(name: str, extra: tuple[str, ...] = ()) -> Path:
    """Download a registered model (and registered files `extra`) into the cache through pooch
    (hash-checked); returns its folder. Needs PT_PLUGIN_WEIGHTS_URL: there is no default server."""
    _check_known(name)
    files = (*MODEL_FILES, *_optional(name), *extra)
    hit = cached_path(name, (*_optional(name), *extra))
    if hit:
        return hit
    if offline():
        damaged = _damaged_in_cache(name, files)
        if damaged:
            raise WeightsError(f"cached {', '.join(map(str, damaged))} of model {name!r} does not match its sha256 in "
                               "registry.txt (damaged or changed); delete it and run `pt-plugin download "
                               f"{name}` with the network, or unset PT_PLUGIN_OFFLINE")
        raise WeightsError(f"model {name!r} is not in the cache {cache_dir()} and PT_PLUGIN_OFFLINE=1 forbids "
                           "downloading it; run `pt-plugin download` on a connected machine and copy the cache, "
                           "or unset PT_PLUGIN_OFFLINE")
    base = os.environ.get("PT_PLUGIN_WEIGHTS_URL", "").strip()
    if not base:
        raise WeightsError(f"model {name!r} is neither bundled nor in the cache {cache_dir()}, and no download "
                           "location is set: set PT_PLUGIN_WEIGHTS_URL to a server holding <model>/<file> as listed "
                           "in registry.txt")
    folder_existed = (cache_dir() / name).exists()
    fetcher = pooch.create(path=cache_dir(), base_url=base.rstrip("/") + "/", registry=registry(),
                           retry_if_failed=1)
    try:
        for f in files:
            key = f"{name}/{f}"
            try:
                fetcher.fetch(key, progressbar=False)
            except ValueError as e:  # pooch: hash mismatch (the bad download is deleted, never used)
                raise WeightsError(f"download of {key} from {base} failed its sha256 check ({e}); the server holds "
                                   "a different file: check PT_PLUGIN_WEIGHTS_URL and try again") from None
            except Exception as e:  # noqa: BLE001 - requests' connection and HTTP errors
                raise WeightsError(f"could not download {key} from {base}: {type(e).__name__}: {e}. Check the "
                                   "network or PT_PLUGIN_WEIGHTS_URL, or use a bundled or cached model "
                                   "(PT_PLUGIN_OFFLINE=1 to never download)") from None
    except WeightsError:
        _remove_if_empty(cache_dir() / name, keep=folder_existed)
        raise
    return cache_dir() / name


def _remove_if_empty(folder: Path, keep: bool) -> None:
    """A failed first download leaves no empty folders behind in the cache."""
    for d in (folder, folder.parent):
        if not keep and d.is_dir() and not any(d.iterdir()):
            d.rmdir()


def available(name: str) -> Path:
    """The folder of a registered model that is already here (bundled or cached), or a download."""
    _check_known(name)
    return bundled_path(name) or fetch(name)


def is_path(name_or_path) -> bool:
    """Whether a model argument names a folder (a path object, or text with a path separator or a suffix)
    rather than a registered name."""
    if isinstance(name_or_path, os.PathLike):
        return True
    text = str(name_or_path)
    return any(sep in text for sep in ("/", os.sep)) or text in (".", "..") or text.startswith("~")


def locate(name_or_path: str | os.PathLike, precision: str = "fp32", path: bool | None = None) -> Path:
    """The folder of a model: a user path (model_path=, or a path-like argument), or a registered name
    through the registry only (bundled copy, cache, download).

    For a named model and precision int8/fp16, the variant's graphs must be in the registry; they are
    taken from the bundled folder when there, else from the cache or downloaded with the model, with the cache
    graphs of that precision where they are registered.
    A user path is returned as it is (Model checks its files against model.json).
    """
    extra = () if precision == "fp32" else graph_files(precision)
    if path or (path is None and is_path(name_or_path)):
        p = Path(name_or_path).expanduser()
        missing = [f for f in MODEL_FILES if not (p / f).is_file()]
        if missing:
            raise ModelNotFoundError(f"{p} is not a pt-plugin model folder: missing {', '.join(missing)} "
                                     "(write one with `python -m export.onnx CHECKPOINT --out DIR` "
                                     "in a pt-plugin source checkout)")
        return p
    if not isinstance(name_or_path, str):
        raise InputError(f"a model is named by a string or given as a path, got {type(name_or_path).__name__}")
    name = name_or_path
    _check_known(name)
    unlisted = [f for f in extra if f not in _listed(name)]
    if unlisted:
        raise InputError(f"model {name!r} has no registered {precision} graphs ({', '.join(unlisted)} not in "
                         "registry.txt); use precision='fp32', or make them with (pt-plugin source checkout) "
                         "`python -m export.quantize "
                         f"DIR --{precision}` on a copy of the model folder and load it with model_path=DIR")
    extra += tuple(f for f in cache_graph_files(precision) if f in _listed(name))
    bundled = bundled_path(name)
    if bundled and all((bundled / f).is_file() for f in extra):
        return bundled
    return fetch(name, extra)


def describe_models() -> list[dict]:
    """One row per registered model: where it is (bundled / cached / remote), its signal and size in bytes."""
    rows = []
    reg = registry()
    for name in known_models():
        where = "bundled" if bundled_path(name) else "cached" if cached_path(name) else "remote"
        folder = bundled_root() / name if where == "bundled" else cache_dir() / name
        size = sum((folder / f).stat().st_size for f in MODEL_FILES if (folder / f).is_file())
        signal = metadata.signal(metadata.read(folder)).to_json() if where != "remote" else {}
        files = [k for k in reg if k.startswith(name + "/")]
        rows.append({"name": name, "where": where, "bytes": size or None, "signal": signal, "files": files,
                     "precisions": precisions_in(files)})
    return rows


def precisions_in(files: list[str]) -> list[str]:
    """The graph precisions a model's registered files provide: fp32 (encoder.onnx), then each
    encoder.<precision>.onnx (int8, fp16) in the order listed."""
    found = ["fp32"] if any(f.endswith("/encoder.onnx") for f in files) else []
    for f in files:
        stem = f.rsplit("/", 1)[-1]
        if stem.startswith("encoder.") and stem.endswith(".onnx") and stem.count(".") == 2:
            found.append(stem.split(".")[1])
    return found
