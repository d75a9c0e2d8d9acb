"""Ray Serve /mean throughput and latency with 1 and 2 replicas, and the Ray Data batch job against a plain loop.

Serving: a bounded closed-loop client (`--concurrency` threads, `--requests` requests in all, loopback
only) posts /mean at |S| = `--observed` with all 784 pixels as queries (fashion-mnist); requests/s
and p50/p99 latency. Batch: `complete_folder` (Ray Data, `--workers` actors) against a loop of
`complete_image` in this process over the same folder; images/s. Every model runs threads=1.

    python benchmarks/serve.py [--replicas 1,2] [--requests 200] [--json OUT]
"""
from __future__ import annotations

import json
import shutil
import socket
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pt_plugin
from common import fmt, int_list, log, machine_line, parser, save_json, table
from pt_plugin.images import read_image, write_png
from pt_plugin.kinds.image import PACKAGE_DEMO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, data: bytes, timeout: float = 120) -> float:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=timeout) as r:
        r.read()
        assert r.status == 200
    return time.perf_counter() - t


def closed_loop(url: str, bodies: list[bytes], concurrency: int) -> dict:
    for b in bodies[:concurrency]:  # warm-up: every replica has run once
        post(url, b)
    t = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        lat = list(pool.map(lambda b: post(url, b), bodies, timeout=1200))
    wall = time.perf_counter() - t
    lat_ms = np.asarray(lat) * 1e3
    return {"requests": len(bodies), "seconds": wall, "rps": len(bodies) / wall,
            "p50_ms": float(np.percentile(lat_ms, 50)), "p99_ms": float(np.percentile(lat_ms, 99))}


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--replicas", type=int_list, default=[1, 2], help="replica counts to measure")
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--observed", type=int, default=64, help="|S| per request")
    p.add_argument("--images", type=int, default=24, help="batch job: images in the folder")
    p.add_argument("--num-samples", type=int, default=1, help="batch job: samples per image")
    p.add_argument("--workers", type=int, default=2, help="batch job: Ray Data actors")
    p.add_argument("--no-batch", action="store_true", help="serve without @serve.batch")
    args = p.parse_args()

    import ray
    from ray import serve

    from pt_plugin import serve as pt_serve

    demo = read_image(PACKAGE_DEMO, 1)
    grid = pt_plugin.grid_positions(28, 28).tolist()
    sets = [pt_plugin.observe_random(demo, args.observed, seed=args.seed + i) for i in range(args.requests)]
    bodies = [json.dumps({"positions": s[0].tolist(), "values": s[1].tolist(), "query_positions": grid}).encode()
              for s in sets]
    rows, out = [], {"serve": [], "batch": {}}
    pt_serve.init_local_ray(num_cpus=2)
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        for n in args.replicas:
            log(f"serving with {n} replica(s) ...")
            serve.run(pt_serve.build_app(str(args.model_path), replicas=n, batch=not args.no_batch,
                                         num_cpus=min(0.5, 2 / n)), name="bench", route_prefix="/")
            r = closed_loop(f"http://127.0.0.1:{port}/mean", bodies, args.concurrency)
            serve.delete("bench")
            out["serve"].append({"replicas": n, **r})
        base = out["serve"][0]["rps"]
        for r in out["serve"]:
            rows.append([f"/mean, {r['replicas']} replica(s)", fmt(r["rps"]), fmt(r["rps"] / base), fmt(r["p50_ms"]),
                         fmt(r["p99_ms"])])
        serve.shutdown()

        tmp = Path(tempfile.mkdtemp(prefix="pt-serve-bench-"))
        try:
            folder = tmp / "in"
            rng = np.random.default_rng(args.seed)
            for i in range(args.images):
                write_png(folder / f"img{i:03d}.png", demo if i == 0 else rng.random((28, 28, 1)))
            opts = dict(observed=args.observed, num_samples=args.num_samples, seed=args.seed)
            log("batch job on Ray Data ...")
            t = time.perf_counter()
            pt_serve.complete_folder(str(args.model_path), folder, tmp / "ray", workers=args.workers, **opts)
            ray_s = time.perf_counter() - t
            log("plain in-process loop ...")
            t = time.perf_counter()
            model = pt_plugin.load(model_path=args.model_path, device="cpu", threads=1)
            for f in sorted(folder.iterdir()):
                pt_serve.complete_image(model, f, tmp / "loop", **opts)
            loop_s = time.perf_counter() - t
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        out["batch"] = {"images": args.images, "num_samples": args.num_samples, "workers": args.workers,
                        "ray_seconds": ray_s, "loop_seconds": loop_s, "ray_images_per_s": args.images / ray_s,
                        "loop_images_per_s": args.images / loop_s}
    finally:
        ray.shutdown()
    b = out["batch"]
    rows.append(["batch, plain loop (1 process)", fmt(b["loop_images_per_s"]), "1", "-", "-"])
    rows.append([f"batch, Ray Data ({b['workers']} actors)", fmt(b["ray_images_per_s"]),
                 fmt(b["ray_images_per_s"] / b["loop_images_per_s"]), "-", "-"])
    print(f"# Ray Serve and Ray Data on cpu\n\n{machine_line(1)}; model {args.model_path}; /mean: |S|={args.observed}, "
          f"784 queries, {args.requests} requests from {args.concurrency} client threads on 127.0.0.1"
          f"{'' if args.no_batch else ', @serve.batch on'}; batch job: {args.images} images, "
          f"{args.num_samples} sample(s) each, ray timing includes starting the actors (ray.init excluded)\n")
    print(table(["work", "requests/s or images/s", "ratio", "p50 ms", "p99 ms"], rows))
    save_json(args.json, {"args": vars(args), "machine": machine_line(1), **out})


if __name__ == "__main__":
    main()
