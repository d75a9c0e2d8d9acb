"""Model weights: the bundled default, a pooch cache with sha256 checks, custom exports.

A model is a folder with encoder.onnx, decoder.onnx and model.json, and optionally reduced-precision
graphs encoder.<p>.onnx / decoder.<p>.onnx (p = int8, fp16; written by export.quantize). Where they come
from, in order: a path given by the user; the copy bundled in the package; the cache (PT_PLUGIN_HOME,
default pooch's OS cache folder for "pt-plugin"); a download from PT_PLUGIN_WEIGHTS_URL (never when
PT_PLUGIN_OFFLINE=1). Every file of a named model is checked against weights/registry.txt before use;
a variant is fetched only when asked for and listed there.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pooch

from ._version import __version__
from .errors import InputError, ModelNotFoundError, WeightsError

MODEL_FILES = ("encoder.onnx", "decoder.onnx", "model.json")
PRECISIONS = ("fp32", "int8", "fp16")
DEFAULT_MODEL = "fashion-mnist"
DEFAULT_BASE_URL = f"https://github.com/pt-plugin/pt-plugin/releases/download/v{__version__}/"


def graph_files(precision: str = "fp32") -> tuple[str, str]:
    """(encoder, decoder) file names of a precision: encoder.onnx or encoder.<precision>.onnx."""
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    suffix = "" if precision == "fp32" else f".{precision}"
    return f"encoder{suffix}.onnx", f"decoder{suffix}.onnx"


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


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _matches(path: Path, key: str) -> bool:
    want = registry()[key].split(":")[-1]
    return path.is_file() and sha256(path) == want


def _check_known(name: str) -> None:
    if name not in known_models():
        raise ModelNotFoundError(f"unknown model {name!r}; known models: {', '.join(known_models()) or 'none'} "
                                 "(or pass a folder holding encoder.onnx, decoder.onnx and model.json)")


def _listed(name: str) -> list[str]:
    """Files registered for a model: MODEL_FILES and any reduced-precision graphs."""
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


def fetch(name: str, extra: tuple[str, ...] = ()) -> Path:
    """Download a registered model (and registered files `extra`) into the cache through pooch
    (hash-checked); returns its folder."""
    _check_known(name)
    if offline():
        hit = cached_path(name, extra)
        if hit:
            return hit
        raise WeightsError(f"model {name!r} is not in the cache {cache_dir()} and PT_PLUGIN_OFFLINE=1 forbids "
                           "downloading it; run `pt-plugin download` on a connected machine and copy the cache, "
                           "or unset PT_PLUGIN_OFFLINE")
    base = os.environ.get("PT_PLUGIN_WEIGHTS_URL") or DEFAULT_BASE_URL
    fetcher = pooch.create(path=cache_dir(), base_url=base.rstrip("/") + "/", registry=registry(),
                           retry_if_failed=1)
    for f in (*MODEL_FILES, *extra):
        key = f"{name}/{f}"
        try:
            fetcher.fetch(key, progressbar=False)
        except ValueError as e:  # pooch: hash mismatch (the bad download is deleted, never used)
            raise WeightsError(f"download of {key} from {base} failed its sha256 check ({e}); the server holds "
                               "a different file: check PT_PLUGIN_WEIGHTS_URL and try again") from None
        except Exception as e:  # noqa: BLE001 - requests' connection and HTTP errors
            raise WeightsError(f"could not download {key} from {base}: {type(e).__name__}: {e}. Check the network "
                               "or PT_PLUGIN_WEIGHTS_URL, or use a bundled or cached model "
                               "(PT_PLUGIN_OFFLINE=1 to never download)") from None
    return cache_dir() / name


def locate(name_or_path: str | os.PathLike, precision: str = "fp32") -> Path:
    """The folder of a model: a user path, the bundled copy, the cache, or a download.

    For a named model and precision int8/fp16, the variant's graphs must be in the registry; they are
    taken from the bundled folder when there, else from the cache or downloaded with the model.
    A user path is returned as it is (Model says if the variant's files are missing).
    """
    extra = () if precision == "fp32" else graph_files(precision)
    p = Path(name_or_path)
    if p.is_dir() or any(s in str(name_or_path) for s in ("/", os.sep)) or p.suffix:
        missing = [f for f in MODEL_FILES if not (p / f).is_file()]
        if missing:
            raise ModelNotFoundError(f"{p} is not a pt-plugin model folder: missing {', '.join(missing)} "
                                     "(write one with `python -m export.onnx CHECKPOINT --out DIR`)")
        return p
    name = str(name_or_path)
    _check_known(name)
    unlisted = [f for f in extra if f not in _listed(name)]
    if unlisted:
        raise InputError(f"model {name!r} has no registered {precision} graphs ({', '.join(unlisted)} not in "
                         f"registry.txt); use precision='fp32', or make them with `python -m export.quantize "
                         f"DIR --{precision}` on a copy of the model folder and load it with model_path=DIR")
    bundled = bundled_path(name)
    if bundled and all((bundled / f).is_file() for f in extra):
        return bundled
    return cached_path(name, extra) or fetch(name, extra)


def describe_models() -> list[dict]:
    """One row per registered model: where it is available and its size in bytes."""
    rows = []
    reg = registry()
    for name in known_models():
        where = "bundled" if bundled_path(name) else "cached" if cached_path(name) else "remote"
        folder = bundled_root() / name if where == "bundled" else cache_dir() / name
        size = sum((folder / f).stat().st_size for f in MODEL_FILES if (folder / f).is_file())
        rows.append({"name": name, "where": where, "bytes": size or None,
                     "files": [k for k in reg if k.startswith(name + "/")]})
    return rows
