"""model.json: read it, validate it against its schema, check the graphs and files it describes.

The top-level pos_dim, val_dim, grid and value_range repeat the `signal` block (len(signal.axes),
len(signal.channels), signal.grid, signal.value_range): a model.json where they differ is refused, so a
client may read either.

A broken model folder is a WeightsError that names the file and what is wrong, raised at load,
never a KeyError, a ZeroDivisionError or an onnxruntime error on the first call.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from .errors import WeightsError
from .signal import KINDS, Signal, derived_signal, signal_from_json


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fail(path: Path, what: str) -> WeightsError:
    return WeightsError(f"{path}: {what}; re-export the model (python -m export.onnx in a pt-plugin source "
                        "checkout) or reinstall it")


def _int(meta: dict, key: str, path: Path, minimum: int = 1) -> int:
    v = meta.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise _fail(path, f"field {key!r} must be an integer >= {minimum}, got {v!r}")
    return v


def _number_list(v: Any, length: int | None) -> bool:
    return (isinstance(v, list) and (length is None or len(v) == length)
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v))


def validate(meta: Any, path: Path) -> dict:
    """Check the fields the runtime uses; returns meta. path names the file in messages."""
    if not isinstance(meta, dict):
        raise _fail(path, f"expected a JSON object, got {type(meta).__name__}")
    for key in ("name", "version"):
        if not isinstance(meta.get(key), str):
            raise _fail(path, f"field {key!r} must be a string, got {meta.get(key)!r}")
    pos_dim, val_dim, bins = _int(meta, "pos_dim", path), _int(meta, "val_dim", path), _int(meta, "bins", path)
    vr = meta.get("value_range")
    if not _number_list(vr, 2) or not vr[1] > vr[0]:
        raise _fail(path, f"field 'value_range' must be [low, high] with high > low, got {vr!r}")
    centers = meta.get("bin_centers")
    if not isinstance(centers, list) or len(centers) != bins or not all(_number_list(c, val_dim) for c in centers):
        raise _fail(path, f"field 'bin_centers' must be a [bins={bins}, val_dim={val_dim}] list of finite numbers")
    grid = meta.get("grid")
    if grid is not None and not (isinstance(grid, list) and len(grid) == pos_dim and all(
            isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in grid)):
        raise _fail(path, f"field 'grid' must be null or {pos_dim} positive integers (pos_dim), got {grid!r}")
    arch = meta.get("architecture", {})
    if not isinstance(arch, dict):
        raise _fail(path, "field 'architecture' must be an object")
    if "n_heads" in arch:
        _int(arch, "n_heads", path)
    if "signal" in meta:
        _validate_signal(meta["signal"], pos_dim, val_dim, path)
        if meta["signal"].get("grid") != grid:
            raise _fail(path, f"signal.grid {meta['signal'].get('grid')!r} and grid {grid!r} differ")
        if [float(x) for x in meta["signal"]["value_range"]] != [float(x) for x in vr]:
            raise _fail(path, f"signal.value_range {meta['signal']['value_range']!r} and value_range {vr!r} differ")
    files = meta.get("files", {})
    if not isinstance(files, dict) or not all(isinstance(v, str) and v.startswith("sha256:") for v in files.values()):
        raise _fail(path, "field 'files' must map file names to 'sha256:<hex>'")
    return meta


def _validate_signal(sig: Any, pos_dim: int, val_dim: int, path: Path) -> None:
    if not isinstance(sig, dict) or sig.get("kind") not in KINDS:
        raise _fail(path, f"signal.kind must be one of {', '.join(KINDS)}")
    if not isinstance(sig.get("axes"), list) or len(sig["axes"]) != pos_dim:
        raise _fail(path, f"signal.axes must name the {pos_dim} position columns")
    if not isinstance(sig.get("channels"), list) or len(sig["channels"]) != val_dim:
        raise _fail(path, f"signal.channels must name the {val_dim} value dimensions")
    grid = sig.get("grid")
    if grid is not None and not (isinstance(grid, list) and len(grid) == pos_dim and all(
            isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in grid)):
        raise _fail(path, f"signal.grid must be null or {pos_dim} positive integers")
    if not _number_list(sig.get("value_range"), 2):
        raise _fail(path, "signal.value_range must be [low, high]")


def read(folder: Path) -> dict:
    """model.json of a model folder, validated."""
    path = folder / "model.json"
    try:
        meta = json.loads(path.read_text())
    except OSError as e:
        raise WeightsError(f"{path} could not be read: {e}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _fail(path, f"not valid JSON ({e})") from None
    return validate(meta, path)


def signal(meta: dict) -> Signal:
    """The model's Signal: its `signal` block, or one derived from an older export."""
    if "signal" in meta:
        return signal_from_json(meta["signal"])
    return derived_signal(meta["pos_dim"], meta["val_dim"], meta.get("grid"), meta["value_range"])


def verify_files(folder: Path, meta: dict, names: tuple[str, ...]) -> dict[str, str]:
    """Each of `names` matches the sha256 model.json records for it (exports from before the 'files' block
    record none; nothing to check then); returns {name: sha256} of the files."""
    recorded = meta.get("files", {})
    digests = {}
    for name in names:
        if not (folder / name).is_file():
            raise WeightsError(f"{folder / name} is missing; export or download the model again")
        digests[name] = sha256(folder / name)
        if name in recorded and digests[name] != recorded[name].split(":", 1)[1]:
            raise WeightsError(f"{folder / name} does not match the sha256 recorded in {folder / 'model.json'}: the "
                               "file was changed or damaged after export; export or download it again")
    return digests


def identity(digests: dict[str, str], precision: str) -> str:
    """One model's identity: the sha256 of its graph files' digests and the precision they run at."""
    text = ";".join(f"{name}={digest}" for name, digest in sorted(digests.items())) + f";precision={precision}"
    return hashlib.sha256(text.encode()).hexdigest()


def check_graph(session, role: str, meta: dict, path: Path) -> None:
    """The session's declared inputs and outputs are those model.json promises (names and fixed sizes)."""
    arch = meta.get("architecture", {})
    layers = [int(arch.get(k, 0)) for k in ("enc_layers", "enc_layers", "dec_layers", "dec_layers")]
    caches = {f"{c}_{i}": None for c, n in zip(("enc_keys", "enc_values", "dec_keys", "dec_values"), layers)
              for i in range(n)}  # step.onnx takes one input per layer
    want = {"encoder": {"sample_positions": meta["pos_dim"], "sample_values": meta["val_dim"], "sample_mask": None},
            "decoder": {"memory": None, "sample_mask": None, "query_positions": meta["pos_dim"]},
            "context": {"sample_positions": meta["pos_dim"], "sample_values": meta["val_dim"], "sample_mask": None,
                        "query_positions": meta["pos_dim"]},
            "step": {"token_positions": meta["pos_dim"], "token_values": meta["val_dim"], **caches,
                     "cache_mask": None, "query_positions": meta["pos_dim"]}}[role]
    inputs = {i.name: i.shape for i in session.get_inputs()}
    if list(inputs) != list(want):
        raise _fail(path, f"the {role} graph takes inputs {list(inputs)}, expected {list(want)}")
    for name, size in want.items():
        last = inputs[name][-1]
        if size is not None and isinstance(last, int) and last != size:
            raise _fail(path, f"{name} of the {role} graph ends in {last}, but model.json says {size}")
    if role != "encoder":
        outs = {o.name: o.shape for o in session.get_outputs()}
        expect = {"logits": (meta["bins"],), "offsets": (meta["bins"], meta["val_dim"]), "log_sigma": (meta["bins"],)}
        outs = {k: v for k, v in outs.items() if k in expect or role == "decoder"}  # the caches' shapes vary
        if list(outs) != list(expect):
            raise _fail(path, f"the {role} graph gives outputs {list(outs)}, expected {list(expect)}")
        for name, tail in expect.items():
            got = tuple(outs[name][-len(tail):])
            if all(isinstance(d, int) for d in got) and got != tail:
                raise _fail(path, f"{role} output {name} ends in {list(got)}, but model.json says {list(tail)} "
                                  "(bins, val_dim)")
