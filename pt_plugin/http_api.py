"""JSON request handling for the HTTP endpoints (/mean, /query, /sample, /acquire, /info), free of Ray.

The Ray Serve deployment (pt_plugin.serve) only routes bodies here: parsing, validation and limits
live in one place that tests and other servers can reuse. Bad input raises InputError (HTTP 400);
a request over a limit raises TooLargeError (HTTP 413).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import inputs
from .errors import InputError

MAX_BODY_BYTES = 8 * 1024 * 1024   # a request body over this is refused with 413
MAX_SET_SIZE = 4096                # observed samples per request
MAX_QUERIES = 65536                # query positions per request
MAX_NUM_SAMPLES = 16               # /sample: signals per request
MAX_SAMPLE_CELLS = 16384           # /sample: num_samples x query positions
MAX_ACQUIRE = 64                   # /acquire: positions picked per request (each pick encodes the grown set)


class TooLargeError(InputError):
    """A request over a documented size limit (HTTP 413)."""


@dataclass
class MeanRequest:
    positions: np.ndarray      # [K, pos_dim] float32, validated
    values: np.ndarray         # [K, val_dim]
    queries: np.ndarray        # [Q, pos_dim]
    return_std: bool


def limits() -> dict[str, int]:
    return {"max_body_bytes": MAX_BODY_BYTES, "max_set_size": MAX_SET_SIZE, "max_queries": MAX_QUERIES,
            "max_num_samples": MAX_NUM_SAMPLES, "max_sample_cells": MAX_SAMPLE_CELLS, "max_acquire": MAX_ACQUIRE}


def parse_body(raw: bytes) -> dict[str, Any]:
    """The JSON object of a request body; 413 over MAX_BODY_BYTES, 400 if not a JSON object."""
    if len(raw) > MAX_BODY_BYTES:
        raise TooLargeError(f"request body of {len(raw)} bytes is over the limit of {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"request body is not valid JSON ({e})") from None
    if not isinstance(body, dict):
        raise InputError("request body must be a JSON object like {\"positions\": [[x, y], ...], "
                         "\"values\": [[v], ...], \"query_positions\": [[x, y], ...]}")
    return body


def _field(body: dict, name: str, default: Any = ...) -> Any:
    if name in body:
        return body[name]
    if default is ...:
        raise InputError(f"request body has no {name!r} field")
    return default


def _count(a: Any) -> int:
    return len(a) if isinstance(a, list) else 0


def sample_set(model, body: dict) -> tuple[np.ndarray, np.ndarray]:
    pos, val = _field(body, "positions"), _field(body, "values")
    if _count(pos) > MAX_SET_SIZE:
        raise TooLargeError(f"{len(pos)} observed samples is over the limit of {MAX_SET_SIZE} per request")
    return model.check_set(pos, val)


def query_positions(model, body: dict, limit: int = MAX_QUERIES, name: str = "query_positions") -> np.ndarray:
    q = _field(body, name)
    if _count(q) > limit:
        raise TooLargeError(f"{len(q)} {name.replace('_', ' ')} is over the limit of {limit} per request")
    q = inputs.positions(inputs.as_float32(q, name), model.pos_dim, name)
    if len(q) == 0:
        raise InputError(f"no {name.replace('_', ' ')} given; expected at least one")
    return q


def _flag(body: dict, name: str) -> bool:
    v = body.get(name, False)
    if not isinstance(v, bool):
        raise InputError(f"{name} must be true or false, not {v!r}")
    return v


def mean_request(model, body: dict) -> MeanRequest:
    p, v = sample_set(model, body)
    return MeanRequest(p, v, query_positions(model, body), _flag(body, "return_std"))


def mean_batch(model, requests: list[MeanRequest]) -> list[dict[str, Any]]:
    """Answers of several /mean requests from one encoder and one decoder pass (sets and queries padded).

    Each answer equals the request's own unbatched answer up to float rounding: no set attends to
    another, and padded samples are masked (tests/runtime/test_serve.py checks 1e-5).
    """
    ctx = model.encode_batch([(r.positions, r.values) for r in requests])
    qmax = max(len(r.queries) for r in requests)
    q = np.zeros((len(requests), qmax, model.pos_dim), np.float32)
    for i, r in enumerate(requests):
        q[i, :len(r.queries)] = r.queries
    mean, std = model.mean(ctx, q, return_std=True)
    out = []
    for i, r in enumerate(requests):
        n = len(r.queries)
        ans = {"mean": mean[i, :n].tolist()}
        if r.return_std:
            ans["std"] = std[i, :n].tolist()
        out.append(ans)
    return out


def query(model, body: dict) -> dict[str, Any]:
    """/query: the value law at each query position: bin probabilities, mean and std."""
    p, v = sample_set(model, body)
    q = query_positions(model, body)
    dist = model.query((p, v), q)
    return {"probs": dist.probs.tolist(), "mean": dist.mean().tolist(), "std": np.sqrt(dist.variance()).tolist()}


def sample(model, body: dict) -> dict[str, Any]:
    """/sample: num_samples signals at the query positions, [num_samples, Q, val_dim]."""
    p, v = sample_set(model, body)
    n = inputs.positive_int(body.get("num_samples", 1), "num_samples")
    if n > MAX_NUM_SAMPLES:
        raise TooLargeError(f"num_samples {n} is over the limit of {MAX_NUM_SAMPLES} per request")
    q = query_positions(model, body, MAX_SAMPLE_CELLS // n)
    out = model.sample(p, v, q, n, body.get("seed"), autoregressive=body.get("autoregressive"),
                       step_fraction=body.get("step_fraction"),  # absent: the model's defaults (Model.sample)
                       temperature=body.get("temperature", 1.0), cache=body.get("cache"),
                       buffer_size=body.get("buffer_size"))
    return {"samples": out.tolist()}


def acquire(model, body: dict) -> dict[str, Any]:
    """/acquire: the k positions worth observing next (Model.acquire, lazy greedy, the mean as fantasy):
    positions [k, pos_dim], indices [k] into candidates (or flat cells of the grid), scores [k], and for grid
    candidates the grid (array order) and each pick's cell. Candidates: "candidates" [N, pos_dim], else the
    free cells of "shape" or of the model's grid; either way at most MAX_QUERIES."""
    p, v = sample_set(model, body)
    k = inputs.positive_int(body.get("k", 1), "k")
    if k > MAX_ACQUIRE:
        raise TooLargeError(f"k {k} is over the limit of {MAX_ACQUIRE} positions per request")
    cand = query_positions(model, body, name="candidates") if body.get("candidates") is not None else None
    shape = _grid_shape(model, body.get("shape"), cand is None)
    a = model.acquire(p, v, k, cand, body.get("criterion", "variance"), body.get("seed"), shape=shape)
    out = {"positions": a.positions.tolist(), "indices": a.indices.tolist(), "scores": a.scores.tolist(),
           "criterion": a.criterion}
    if a.grid is not None:
        out.update(grid=list(a.grid), cells=a.cells().tolist())
    return out


def _grid_shape(model, shape, used: bool) -> tuple[int, ...] | None:
    """The "shape" field of /acquire as a grid within MAX_QUERIES cells, or None (the model's grid)."""
    if shape is None:
        if used and model.grid is not None and int(np.prod(model.grid)) > MAX_QUERIES:
            raise TooLargeError(f"the model's {'x'.join(map(str, model.grid))} grid is over the limit of "
                                f"{MAX_QUERIES} candidates per request; give candidates or a coarser shape")
        return None
    if not used:
        raise InputError("give candidates or shape, not both: shape takes the cells of a grid as the candidates")
    shape = model.grid_shape(shape)
    if int(np.prod(shape, dtype=np.float64)) > MAX_QUERIES:
        raise TooLargeError(f"a {'x'.join(map(str, shape))} grid is over the limit of {MAX_QUERIES} candidates "
                            "per request")
    return shape


def info(model) -> dict[str, Any]:
    return {"name": model.meta["name"], "signal": model.signal.to_json(), "pos_dim": model.pos_dim,
            "val_dim": model.val_dim, "value_range": list(model.value_range), "precision": model.info.precision,
            "limits": limits()}
