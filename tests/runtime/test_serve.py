"""Ray Serve deployment and Ray Data batch job (pt_plugin.serve): served answers equal in-process ones.

Local only: Ray with 2 CPUs, Serve on 127.0.0.1 at a free port, every request with a timeout.
Skipped where Ray is not installed (pip install 'pt-plugin[serve]').
"""
from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'pt-plugin[serve]'")
serve_mod = pytest.importorskip("pt_plugin.serve", reason="Ray Serve is not installed: pip install 'pt-plugin[serve]'")

import pt_plugin  # noqa: E402
from pt_plugin import http_api  # noqa: E402
from pt_plugin.batch import complete_folder, complete_image  # noqa: E402
from pt_plugin.images import read_image, write_png  # noqa: E402

TIMEOUT = 120  # seconds per request: the test machine may be loaded


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def model():
    return pt_plugin.load("fashion-mnist", device="cpu", threads=1)


@pytest.fixture(scope="module")
def demo(model):
    from pt_plugin.kinds.image import PACKAGE_DEMO

    return read_image(PACKAGE_DEMO, 1)


@pytest.fixture(scope="module")
def server():
    from ray import serve

    port = _free_port()
    serve_mod.init_local_ray(num_cpus=2)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(serve_mod.build_app("fashion-mnist", replicas=1, num_cpus=0.5), name="fm", route_prefix="/fm")
        serve.run(serve_mod.build_app("gp-curves", replicas=1, num_cpus=0.5), name="gp", route_prefix="/gp")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


def _post(url: str, body, raw: bytes | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def _set(demo, k=64, seed=0):
    return pt_plugin.observe_random(demo, k, seed=seed)


def test_info(server):
    with urllib.request.urlopen(server + "/fm/info", timeout=TIMEOUT) as r:
        info = json.loads(r.read())
    assert info["name"] == "fashion-mnist" and info["pos_dim"] == 2 and info["val_dim"] == 1
    assert info["signal"]["kind"] == "image" and info["limits"]["max_body_bytes"] == http_api.MAX_BODY_BYTES


def test_mean_query_sample_equal_in_process(server, model, demo):
    pos, val = _set(demo)
    grid = pt_plugin.grid_positions(28, 28)
    body = {"positions": pos.tolist(), "values": val.tolist(), "query_positions": grid.tolist(), "return_std": True}
    status, out = _post(server + "/fm/mean", body)
    assert status == 200, out
    mean, std = model.mean((pos, val), grid, return_std=True)
    np.testing.assert_allclose(out["mean"], mean, atol=1e-5)
    np.testing.assert_allclose(out["std"], std, atol=1e-5)

    status, out = _post(server + "/fm/query", {**body, "query_positions": grid[:50].tolist()})
    assert status == 200, out
    dist = model.query((pos, val), grid[:50])
    np.testing.assert_allclose(out["probs"], dist.probs, atol=1e-5)
    np.testing.assert_allclose(out["mean"], dist.mean(), atol=1e-5)

    opts = {"num_samples": 2, "seed": 7, "step_fraction": 0.25, "autoregressive": 100}
    status, out = _post(server + "/fm/sample", {**body, "query_positions": grid[:200].tolist(), **opts})
    assert status == 200, out
    ref = model.sample(pos, val, grid[:200], 2, 7, step_fraction=0.25, autoregressive=100)
    np.testing.assert_allclose(out["samples"], ref, atol=1e-5)


def test_curve_model_pos_dim_1(server):
    curves = pt_plugin.load("gp-curves", device="cpu", threads=1)
    x, y = [[-0.5], [0.1], [0.7]], [[0.3], [1.0], [-0.2]]
    q = np.linspace(-1, 1, 50, dtype=np.float32)[:, None]
    status, out = _post(server + "/gp/mean", {"positions": x, "values": y, "query_positions": q.tolist()})
    assert status == 200, out
    np.testing.assert_allclose(out["mean"], curves.mean((x, y), q), atol=1e-5)
    assert "std" not in out


def test_acquire_is_routed_and_equals_in_process(server, model, demo):
    pos, val = _set(demo, 16)
    status, out = _post(server + "/fm/acquire", {"positions": pos.tolist(), "values": val.tolist(), "k": 3})
    assert status == 200, out
    assert out["indices"] == model.acquire(pos, val, k=3).indices.tolist() and out["grid"] == [28, 28]
    status, out = _post(server + "/gp/acquire", {"positions": [[0.2]], "values": [[0.5]], "k": 2, "shape": [64]})
    assert status == 200 and len(out["cells"]) == 2, out
    status, out = _post(server + "/fm/acquire", {"positions": pos.tolist(), "values": val.tolist(),
                                                 "k": http_api.MAX_ACQUIRE + 1})
    assert status == 413 and str(http_api.MAX_ACQUIRE) in out["error"]
    status, out = _post(server + "/fm/acquire", {"positions": pos.tolist(), "values": val.tolist(),
                                                 "criterion": "most"})
    assert status == 400 and "unknown criterion" in out["error"]


def test_bad_input_is_400_with_message(server, demo):
    pos, val = _set(demo)
    status, out = _post(server + "/fm/mean", {"positions": pos[:, :1].tolist(), "values": val.tolist(),
                                              "query_positions": [[0.0, 0.0]]})
    assert status == 400 and "positions" in out["error"]
    try:
        pt_plugin.load("fashion-mnist").mean((pos[:, :1], val), [[0.0, 0.0]])
    except pt_plugin.InputError as e:
        assert out["error"] == str(e)
    status, out = _post(server + "/fm/mean", None, raw=b"{not json")
    assert status == 400 and "JSON" in out["error"]
    status, out = _post(server + "/fm/mean", {"positions": pos.tolist(), "values": val.tolist()})
    assert status == 400 and "query_positions" in out["error"]


def test_oversized_is_413(server):
    raw = b'{"positions": [' + b"[0.0, 0.0]," * (http_api.MAX_BODY_BYTES // 11 + 10) + b'[0.0, 0.0]]}'
    status, out = _post(server + "/fm/mean", None, raw=raw)
    assert status == 413 and "limit" in out["error"]
    many = [[0.0, 0.0]] * (http_api.MAX_SET_SIZE + 1)
    status, out = _post(server + "/fm/mean", {"positions": many, "values": [[0.5]] * len(many),
                                              "query_positions": [[0.0, 0.0]]})
    assert status == 413 and str(http_api.MAX_SET_SIZE) in out["error"]


def test_32_concurrent_requests(server, model, demo):
    grid = pt_plugin.grid_positions(28, 28)
    sets = [_set(demo, 16 + 4 * i, seed=i) for i in range(32)]

    def one(i):
        p, v = sets[i]
        return _post(server + "/fm/mean", {"positions": p.tolist(), "values": v.tolist(),
                                           "query_positions": grid.tolist()})

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(32), timeout=600))
    for (p, v), (status, out) in zip(sets, results):
        assert status == 200, out
        np.testing.assert_allclose(out["mean"], model.mean((p, v), grid), atol=1e-5)


def test_batch_job_matches_in_process(server, model, demo, tmp_path):
    folder = tmp_path / "in"
    rng = np.random.default_rng(0)
    for i in range(4):
        write_png(folder / f"img{i}.png", demo if i == 0 else rng.random((28, 28, 1)))
    written = complete_folder("fashion-mnist", folder, tmp_path / "ray", observed=64, num_samples=2, seed=3,
                              step_fraction=0.25, workers=2)
    assert len(written) == 4 * 3
    ref = tmp_path / "local"
    for f in sorted(folder.iterdir()):
        complete_image(model, f, ref, observed=64, num_samples=2, seed=3, step_fraction=0.25)
    for w in written:
        a, b = read_image(w, 1), read_image(ref / w.name, 1)
        assert np.abs(a - b).max() <= 1 / 255 + 1e-6, w.name
    # the recipe itself is Model.mean_grid / sample_grid on the seeded set
    img = read_image(folder / "img0.png", 1)
    pos, val = pt_plugin.observe_random(img, 64, seed=3)
    assert np.abs(read_image(ref / "img0_mean.png", 1) - model.mean_grid(pos, val)).max() <= 0.5 / 255 + 1e-6
    s = model.sample_grid(pos, val, num_samples=2, seed=3, step_fraction=0.25)
    assert np.abs(read_image(ref / "img0_sample1.png", 1) - s[1]).max() <= 0.5 / 255 + 1e-6
