"""pt_plugin.http_api and pt_plugin.batch without Ray: the JSON handlers and the one-image recipe in-process.

tests/runtime/test_serve.py checks the same code behind Ray Serve and Ray Data, and skips where Ray is not installed;
these run wherever pt-plugin does, on the bundled models (no data set needed).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import pt_plugin
from pt_plugin import InputError, batch, http_api, images
from pt_plugin.batch import complete_image, image_files, planned_outputs
from pt_plugin.images import read_image, write_png
from pt_plugin.kinds import Observation, kind_for
from pt_plugin.kinds.image import PACKAGE_DEMO
from pt_plugin.kinds.pictures import save_picture

GRID = pt_plugin.grid_positions(28, 28)
EIGHT_BITS = 0.5 / 255 + 1e-6  # a PNG holds values to the nearest 1/255


@pytest.fixture(scope="module")
def model():
    return pt_plugin.load("fashion-mnist", device="cpu", threads=1)


@pytest.fixture(scope="module")
def demo() -> np.ndarray:
    return read_image(PACKAGE_DEMO, 1)


def a_set(demo, k: int = 64, seed: int = 0, **fields) -> dict:
    """A request body with k random pixels of the demo as S."""
    p, v = pt_plugin.observe_random(demo, k, seed=seed)
    return {"positions": p.tolist(), "values": v.tolist(), **fields}


# -- http_api ---------------------------------------------------------------------------------------------
def test_parse_body():
    assert http_api.parse_body(b'{"k": 1}') == {"k": 1}
    for raw, message in ((b"{not json", "not valid JSON"), (b"[1, 2]", "must be a JSON object"),
                         (b"", "must be a JSON object")):
        with pytest.raises(InputError, match=message):
            http_api.parse_body(raw)
    with pytest.raises(http_api.TooLargeError, match="over the limit"):
        http_api.parse_body(b" " * (http_api.MAX_BODY_BYTES + 1))


def test_mean_equals_the_model(model, demo):
    body = a_set(demo, query_positions=GRID.tolist(), return_std=True)
    out = http_api.mean_batch(model, [http_api.mean_request(model, body)])[0]
    mean, std = model.mean((body["positions"], body["values"]), GRID, return_std=True)
    np.testing.assert_allclose(out["mean"], mean, atol=1e-5)
    np.testing.assert_allclose(out["std"], std, atol=1e-5)
    out = http_api.mean_batch(model, [http_api.mean_request(model, {**body, "return_std": False})])[0]
    assert "std" not in out and json.dumps(out)  # plain JSON


def test_batched_mean_equals_unbatched(model, demo):
    """mean_batch (what @serve.batch calls) is exact: a request's answer does not depend on the others."""
    for precision in ("fp32", "int8"):
        m = model if precision == "fp32" else pt_plugin.load("fashion-mnist", device="cpu", threads=1,
                                                             precision="int8")
        reqs = [http_api.mean_request(m, a_set(demo, k, s, query_positions=GRID[:q].tolist(), return_std=True))
                for k, s, q in ((64, 0, 784), (10, 1, 100), (300, 2, 500))]
        together = http_api.mean_batch(m, reqs)
        for r, t in zip(reqs, together):
            alone = http_api.mean_batch(m, [r])[0]
            assert len(t["mean"]) == len(r.queries)
            np.testing.assert_allclose(t["mean"], alone["mean"], atol=1e-5)
            np.testing.assert_allclose(t["std"], alone["std"], atol=1e-5)


def test_query_and_sample_equal_the_model(model, demo):
    body = a_set(demo, query_positions=GRID[:50].tolist())
    pos, val = np.array(body["positions"], np.float32), np.array(body["values"], np.float32)
    out = http_api.query(model, body)
    dist = model.query((pos, val), GRID[:50])
    np.testing.assert_allclose(out["probs"], dist.probs, atol=1e-5)
    np.testing.assert_allclose(out["mean"], dist.mean(), atol=1e-5)
    np.testing.assert_allclose(out["std"], np.sqrt(dist.variance()), atol=1e-5)
    opts = {"num_samples": 2, "seed": 7, "step_fraction": 0.25, "autoregressive": 100}
    out = http_api.sample(model, {**body, "query_positions": GRID[:200].tolist(), **opts})
    ref = model.sample(pos, val, GRID[:200], 2, 7, step_fraction=0.25, autoregressive=100)
    np.testing.assert_allclose(out["samples"], ref, atol=1e-5)


def test_info_and_limits(model):
    info = http_api.info(model)
    assert info["name"] == "fashion-mnist" and info["pos_dim"] == 2 and info["val_dim"] == 1
    assert info["signal"]["kind"] == "image" and info["precision"] == "fp32"
    assert info["limits"] == http_api.limits() and info["limits"]["max_set_size"] == http_api.MAX_SET_SIZE


def test_bad_requests_say_what_is_wrong(model, demo):
    body = a_set(demo, query_positions=[[0.0, 0.0]])
    for bad, message in (({k: v for k, v in body.items() if k != "query_positions"}, "no 'query_positions' field"),
                         ({**body, "query_positions": []}, r"query_positions has shape \(0,\)"),
                         ({**body, "return_std": "yes"}, "return_std must be true or false"),
                         ({**body, "positions": [p[:1] for p in body["positions"]]}, "positions")):
        with pytest.raises(InputError, match=message):
            http_api.mean_request(model, bad)
    with pytest.raises(InputError) as caught:
        http_api.mean_request(model, {**body, "positions": [p[:1] for p in body["positions"]]})
    with pytest.raises(InputError) as direct:  # the same words as the Python API's
        model.check_set([p[:1] for p in body["positions"]], body["values"])
    assert str(caught.value) == str(direct.value)


def test_limits_are_413(model, demo):
    many = [[0.0, 0.0]] * (http_api.MAX_SET_SIZE + 1)
    with pytest.raises(http_api.TooLargeError, match=str(http_api.MAX_SET_SIZE)):
        http_api.mean_request(model, {"positions": many, "values": [[0.5]] * len(many),
                                      "query_positions": [[0.0, 0.0]]})
    body = a_set(demo, query_positions=GRID.tolist())
    with pytest.raises(http_api.TooLargeError, match=f"limit of {http_api.MAX_NUM_SAMPLES}"):
        http_api.sample(model, {**body, "num_samples": http_api.MAX_NUM_SAMPLES + 1})
    cells = http_api.MAX_SAMPLE_CELLS // 16
    with pytest.raises(http_api.TooLargeError, match=f"limit of {cells}"):
        http_api.sample(model, {**body, "num_samples": 16, "query_positions": [[0.0, 0.0]] * (cells + 1)})
    assert issubclass(http_api.TooLargeError, InputError)  # a 413 is also bad input to a caller without HTTP


# -- batch ------------------------------------------------------------------------------------------------
def test_complete_image_equals_mean_grid_and_sample_grid(model, demo, tmp_path):
    src = write_png(tmp_path / "in" / "a.png", demo)
    written = complete_image(model, src, tmp_path / "out", observed=64, num_samples=2, seed=3, step_fraction=0.25)
    assert [p.name for p in written] == ["a_mean.png", "a_sample0.png", "a_sample1.png"]
    assert list(planned_outputs([src], tmp_path / "out", 2).values()) == written
    pos, val = pt_plugin.observe_random(read_image(src, 1), 64, seed=3)
    np.testing.assert_allclose(read_image(written[0], 1), model.mean_grid(pos, val, (28, 28)), atol=EIGHT_BITS)
    samples = model.sample_grid(pos, val, (28, 28), 2, 3, step_fraction=0.25)
    for path, s in zip(written[1:], samples):
        np.testing.assert_allclose(read_image(path, 1), s, atol=EIGHT_BITS)


def test_kind_observe_draws_the_pixels_of_observe_random(model, demo):
    """One random draw of S: the batch recipe, the CLI (Kind.observe) and pt_plugin.observe_random agree."""
    obs = kind_for(model.signal).observe(Observation(np.zeros((0, 2)), np.zeros((0, 1)), (28, 28), truth=demo), 64, 5)
    pos, val = pt_plugin.observe_random(demo, 64, seed=5)
    np.testing.assert_array_equal(obs.positions, pos)
    np.testing.assert_array_equal(obs.values, val)


def test_complete_image_with_a_mask(model, demo, tmp_path):
    src = write_png(tmp_path / "a.png", demo)
    mask = np.zeros((28, 28), bool)
    mask[:14] = True  # the top half observed
    by_array = complete_image(model, src, tmp_path / "array", mask=mask, num_samples=0)
    expected = model.mean_grid(*pt_plugin.observe_mask(read_image(src, 1), mask), (28, 28))
    np.testing.assert_allclose(read_image(by_array[0], 1), expected, atol=EIGHT_BITS)
    mask_file = write_png(tmp_path / "mask.png", mask.astype(np.float32))
    by_file = complete_image(model, src, tmp_path / "file", mask=mask_file, num_samples=0)
    assert np.array_equal(read_image(by_file[0], 1), read_image(by_array[0], 1))
    big_mask = write_png(tmp_path / "big_mask.png", np.kron(mask, np.ones((2, 2))).astype(np.float32))
    with pytest.raises(InputError, match="pass --resize"):
        complete_image(model, src, tmp_path / "big", mask=big_mask, num_samples=0)
    resized = complete_image(model, src, tmp_path / "big", mask=big_mask, num_samples=0, resize=True)
    assert np.array_equal(read_image(resized[0], 1), read_image(by_array[0], 1))  # a 2x mask halves exactly


def test_complete_image_resizes_only_when_asked(model, tmp_path):
    src = write_png(tmp_path / "big.png", np.random.default_rng(0).random((40, 36, 1)))
    with pytest.raises(InputError, match=r"36x40 pixels but model fashion-mnist works on 28x28 pixels; pass --resize"):
        complete_image(model, src, tmp_path / "out", num_samples=0)
    assert not (tmp_path / "out").exists()
    written = complete_image(model, src, tmp_path / "out", num_samples=1, resize=True)
    assert [read_image(p, 1).shape for p in written] == [(28, 28, 1)] * 2


def test_batch_is_for_image_models(tmp_path):
    curves = pt_plugin.load("gp-curves", device="cpu", threads=1)
    src = write_png(tmp_path / "a.png", np.zeros((28, 28)))
    with pytest.raises(InputError, match="batch completion is for image models; gp-curves is a curve model"):
        complete_image(curves, src, tmp_path / "out")


def test_image_files(tmp_path):
    with pytest.raises(InputError, match="folder not found"):
        image_files(tmp_path / "nowhere")
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(InputError, match=r"holds no image \(\.png, \.jpg"):
        image_files(tmp_path)
    for name in ("b.png", "a.JPG", "c.webp"):
        Image.new("L", (4, 4)).save(tmp_path / name)
    (tmp_path / "d.png").mkdir()  # a folder named like an image is not one
    assert [p.name for p in image_files(tmp_path)] == ["a.JPG", "b.png", "c.webp"]


def test_one_list_of_image_suffixes():
    assert batch.IMAGE_SUFFIXES is images.IMAGE_SUFFIXES


def test_write_png_is_save_picture_in_png(tmp_path):
    """write_png writes PNG whatever the suffix; save_picture writes the suffix's format and refuses others;
    both write the same pixels."""
    pixels = np.random.default_rng(1).random((6, 5, 3))
    with Image.open(write_png(tmp_path / "a.data", pixels)) as a, \
            Image.open(save_picture(tmp_path / "b.png", pixels)) as b:
        assert a.format == b.format == "PNG" and np.array_equal(np.asarray(a), np.asarray(b))
    with Image.open(save_picture(tmp_path / "c.jpg", pixels)) as c:
        assert c.format == "JPEG"
    with pytest.raises(InputError, match="names no picture format"):
        save_picture(tmp_path / "d.data", pixels)
