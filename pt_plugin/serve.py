"""Ray Serve deployment of one pt-plugin model: JSON endpoints /mean, /query, /sample, /acquire, /info.

Needs the `serve` extra (pip install 'pt-plugin[serve]'); importing this module without Ray raises
MissingExtraError naming it. Each replica loads its model once, in __init__. /mean requests are
batched with @serve.batch (one encoder and one decoder pass for several requests), which is exact
because a set's answer does not depend on the rest of the batch (fp32 and int8 alike; checked in
tests/runtime/test_serve.py). Bad input is HTTP 400 `{"error": "..."}`; a body over MAX_BODY_BYTES or a set,
query, sample or acquisition count over its limit (pt_plugin.http_api) is 413.

    pt-plugin serve --model fashion-mnist --replicas 2 --port 8000
    serve run pt_plugin.serve:app model=gp-curves replicas=2      # Ray's own launcher
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

from . import http_api
from .batch import complete_folder, complete_image, init_local_ray  # noqa: F401  (re-exported)
from .errors import InputError, PtPluginError
from .kinds.extras import require
from .weights import DEFAULT_MODEL

serve = require("ray.serve", "serve", "pt_plugin.serve (Ray Serve deployment)")
_responses = require("starlette.responses", "serve", "pt_plugin.serve (Ray Serve deployment)")

MAX_BATCH_SIZE = 8          # /mean requests encoded and decoded together
BATCH_WAIT_S = 0.005        # how long the first request of a batch waits for others
REPLICA_CPUS = 0.5          # Ray CPUs reserved per replica (the model runs threads=1 by default)


def _json(body: Any, status: int = 200):
    return _responses.JSONResponse(body, status_code=status)


@serve.deployment(ray_actor_options={"num_cpus": REPLICA_CPUS}, max_ongoing_requests=64)
class PtPluginDeployment:
    """One model per replica, loaded once; routes by the last path segment."""

    def __init__(self, model: str = DEFAULT_MODEL, precision: str = "fp32", threads: int | None = 1,
                 device: str = "cpu", batch: bool = True) -> None:
        from .model import load

        self.model = load(model, device=device, threads=threads, precision=precision)
        self.batch = batch

    @serve.batch(max_batch_size=MAX_BATCH_SIZE, batch_wait_timeout_s=BATCH_WAIT_S)
    async def _mean_batched(self, requests: list[http_api.MeanRequest]) -> list[dict]:
        return await asyncio.to_thread(http_api.mean_batch, self.model, requests)

    async def _mean(self, body: dict) -> dict:
        req = http_api.mean_request(self.model, body)  # validated alone: one bad request never fails a batch
        if self.batch:
            return await self._mean_batched(req)
        return (await asyncio.to_thread(http_api.mean_batch, self.model, [req]))[0]

    async def __call__(self, request) -> Any:
        endpoint = request.url.path.rstrip("/").rsplit("/", 1)[-1]
        try:
            if request.method == "GET" and endpoint == "info":
                return _json(http_api.info(self.model))
            handlers = {"mean": self._mean, "query": self._sync(http_api.query),
                        "sample": self._sync(http_api.sample), "acquire": self._sync(http_api.acquire)}
            if request.method != "POST" or endpoint not in handlers:
                return _json({"error": f"no {request.method} /{endpoint}; use POST /mean, /query, /sample, "
                                       "/acquire or GET /info"}, 404)
            # read whole before refusing: answering 413 mid-upload resets the client's connection
            body = http_api.parse_body(await request.body())
            return _json(await handlers[endpoint](body))
        except http_api.TooLargeError as e:
            return _json({"error": str(e)}, 413)
        except (InputError, PtPluginError) as e:
            return _json({"error": str(e)}, 400)

    def _sync(self, fn):
        async def run(body: dict) -> dict:
            return await asyncio.to_thread(fn, self.model, body)
        return run


def build_app(model: str = DEFAULT_MODEL, replicas: int = 1, precision: str = "fp32", threads: int | None = 1,
              device: str = "cpu", num_cpus: float = REPLICA_CPUS, batch: bool = True):
    """A Ray Serve application: `replicas` copies of the deployment, each with its own model."""
    return PtPluginDeployment.options(num_replicas=int(replicas), ray_actor_options={"num_cpus": float(num_cpus)}) \
        .bind(model, precision, threads, device, batch)


def app(args: dict[str, str]):
    """Application builder for `serve run pt_plugin.serve:app model=NAME replicas=N precision=fp32 threads=1`."""
    threads = args.get("threads", "1")
    return build_app(args.get("model", DEFAULT_MODEL), int(args.get("replicas", 1)), args.get("precision", "fp32"),
                     None if threads in ("", "none", "None") else int(threads), args.get("device", "cpu"),
                     float(args.get("num_cpus", REPLICA_CPUS)), args.get("batch", "true").lower() != "false")


def run_server(model: str, replicas: int = 1, host: str = "127.0.0.1", port: int = 8000, precision: str = "fp32",
               threads: int | None = 1, device: str = "cpu", echo=print) -> None:
    """Start Ray (local), Serve on host:port and the application; block until Ctrl-C, then shut down."""
    ray = require("ray", "serve", "pt-plugin serve")
    init_local_ray()
    try:
        serve.start(http_options={"host": host, "port": int(port)})
        serve.run(build_app(model, replicas, precision, threads, device), name="pt-plugin", route_prefix="/")
        echo(f"serving {model} ({replicas} replica{'s' if replicas != 1 else ''}) on http://{host}:{port}: "
             "POST /mean /query /sample /acquire, GET /info; Ctrl-C stops")
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
        ray.shutdown()
