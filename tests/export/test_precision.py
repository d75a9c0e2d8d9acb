"""Reduced-precision graphs (export.quantize): parity with fp32, loading by precision, registry checks."""
import functools
import http.server
import importlib.util
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

import pt_plugin
from export.datasets import FASHION_DIR
from export.errors import DataError
from export.onnx.registry import write_registry
from export.quantize import batch_independence, sources
from export.quantize.__main__ import main
from export.quantize.batch_independence import independence, independence_ok, independence_tolerance
from export.quantize.graphs import variant_files
from export.quantize.parity import TOLERANCES, within
from pt_plugin import InputError, WeightsError, grid_positions, observe_random, weights

HAS_FP16 = importlib.util.find_spec("onnxconverter_common") is not None
needs_fp16 = pytest.mark.skipif(not HAS_FP16, reason="fp16 needs onnxconverter-common")


def copy_export(src, dst):
    dst.mkdir(parents=True)
    for f in weights.MODEL_FILES:
        shutil.copy(src / f, dst / f)
    return dst


@pytest.fixture(scope="module")
def variants(tiny_export, tmp_path_factory):
    """A copy of the tiny export with its int8 (and fp16) graphs; tiny_export itself stays untouched."""
    folder = copy_export(tiny_export, tmp_path_factory.mktemp("variants") / "tiny")
    assert main([str(folder), "--int8"] + (["--fp16"] if HAS_FP16 else [])) == 0
    return folder


@pytest.mark.parametrize("precision", ["int8", pytest.param("fp16", marks=needs_fp16)])
def test_variant_parity_is_recorded_and_within_tolerance(variants, precision):
    entry = json.loads((variants / "model.json").read_text())["variants"][precision]
    assert entry["files"] == [f"encoder.{precision}.onnx", f"decoder.{precision}.onnx"]
    assert all((variants / f).is_file() for f in entry["files"])
    figures = entry["parity"]
    assert figures["tolerance"] == TOLERANCES[precision]
    assert within(figures, TOLERANCES[precision])
    assert figures["set_sizes"] == [1, 64, 784]


@pytest.mark.parametrize("precision", ["int8", pytest.param("fp16", marks=needs_fp16)])
def test_load_variant_mean_image_close_to_fp32(variants, runtime_model, test_image, precision):
    model = pt_plugin.load(model_path=variants, device="cpu", precision=precision)
    assert model.info.precision == precision and runtime_model.info.precision == "fp32"
    assert precision in repr(model)
    pos, val = observe_random(test_image, 40, seed=0)
    diff = np.abs(model.mean_image(pos, val) - runtime_model.mean_image(pos, val))
    tol = TOLERANCES[precision]
    assert diff.max() <= tol["mean_value_max_abs_diff"]
    assert diff.mean() <= tol["mean_value_mean_abs_diff"]
    batch = model.encode_batch([observe_random(test_image, k, seed=1) for k in (3, 20)])
    assert model.mean(batch, grid_positions(28, 28)).shape == (2, 784, 1)


PRECISIONS = ["fp32", "int8", pytest.param("fp16", marks=needs_fp16)]


def graphs(folder, precision):
    infix = "" if precision == "fp32" else f".{precision}"
    return folder / f"encoder{infix}.onnx", folder / f"decoder{infix}.onnx"


@pytest.mark.parametrize("precision", PRECISIONS)
def test_variant_records_batch_independence(variants, precision):
    """The quantize command's own check, recorded in model.json, and the same check run again here."""
    meta = json.loads((variants / "model.json").read_text())
    if precision != "fp32":
        recorded = meta["variants"][precision]["batch_independence"]
        assert recorded["tolerance"] == independence_tolerance(precision)
        assert independence_ok({k: v for k, v in recorded.items() if k != "tolerance"}, precision)
    assert independence_ok(independence(*graphs(variants, precision), meta, seed=3), precision)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_set_outputs_do_not_depend_on_its_batch(variants, test_image, precision):
    """A set's memory (real rows), raw decoder outputs and mean: alone = in any padded batch, any chunking."""
    model = pt_plugin.load(model_path=variants, device="cpu", precision=precision)
    grid = grid_positions(28, 28)
    target = observe_random(test_image, 30, seed=0)
    others = [observe_random(test_image, k, seed=k) for k in (1, 200)]
    alone = model.encode(*target)
    dist, mean = model.query(alone, grid), model.mean(alone, grid)
    tol = independence_tolerance(precision)  # 1e-6, float16 an ulp (its kernels round per block)
    for batch in ([target, *others], [others[1], target], [others[0], target, others[0], others[1]]):
        i = next(j for j, s in enumerate(batch) if s is target)
        ctx = model.encode_batch(batch)
        assert np.abs(ctx.memory[i, :30] - alone.memory[0]).max() <= tol
        for chunk in (784, 100, 7):
            d = model.query(ctx, np.broadcast_to(grid, (len(batch),) + grid.shape), chunk=chunk)[i]
            for name in ("logits", "offsets", "log_sigma"):
                assert np.abs(getattr(d, name) - getattr(dist, name)).max() <= tol, name
            m = model.mean(ctx, np.broadcast_to(grid, (len(batch),) + grid.shape), chunk=chunk)[i]
            assert np.abs(m - mean).max() <= tol


def test_missing_variant_says_which_command_makes_it(tiny_export, tmp_path):
    folder = copy_export(tiny_export, tmp_path / "tiny")
    with pytest.raises(InputError, match=r"no int8 graphs.*python -m export.quantize .* --int8"):
        pt_plugin.load(model_path=folder, device="cpu", precision="int8")


def test_variant_not_recorded_in_model_json_is_refused(variants, tiny_export, tmp_path):
    """Variant files left from an earlier export (re-export rewrote model.json) are not used."""
    folder = copy_export(tiny_export, tmp_path / "tiny")
    for f in variant_files("int8"):
        shutil.copy(variants / f, folder / f)
    with pytest.raises(InputError, match="records no checked int8 variant"):
        pt_plugin.load(model_path=folder, device="cpu", precision="int8")


def test_unknown_precision_lists_the_valid_ones(tiny_export):
    with pytest.raises(InputError, match="fp32, int8, fp16.*'int4'"):
        pt_plugin.load(model_path=tiny_export, device="cpu", precision="int4")


def test_over_tolerance_is_not_kept(tiny_export, tmp_path, monkeypatch):
    folder = copy_export(tiny_export, tmp_path / "tiny")
    monkeypatch.setitem(TOLERANCES, "int8", {"mean_value_max_abs_diff": 0.0, "mean_value_mean_abs_diff": 0.0})
    assert main([str(folder), "--int8", "--no-float-fallback"]) == 1
    assert sorted(p.name for p in folder.iterdir()) == sorted(weights.MODEL_FILES)
    assert "variants" not in json.loads((folder / "model.json").read_text())


def test_batch_dependent_variant_is_not_kept(tiny_export, tmp_path, monkeypatch):
    folder = copy_export(tiny_export, tmp_path / "tiny")
    monkeypatch.setattr(batch_independence, "INDEPENDENCE_TOLERANCE", -1.0)
    assert main([str(folder), "--int8"]) == 1
    assert sorted(p.name for p in folder.iterdir()) == sorted(weights.MODEL_FILES)


def test_existing_variant_needs_force(variants, capsys):
    assert main([str(variants), "--int8"]) == 2
    assert "--force" in capsys.readouterr().err


@pytest.fixture()
def registered(variants, tmp_path, monkeypatch):
    """A bundled weights/ root with the tiny model, its int8 graphs and a registry listing them."""
    root = tmp_path / "bundled"
    shutil.copytree(variants, root / "tiny")
    for f in variant_files("fp16"):
        (root / "tiny" / f).unlink(missing_ok=True)
    meta = json.loads((root / "tiny" / "model.json").read_text())
    meta["variants"].pop("fp16", None)
    (root / "tiny" / "model.json").write_text(json.dumps(meta))
    lines = write_registry(root)
    assert any(line.startswith("tiny/encoder.int8.onnx ") for line in lines)
    monkeypatch.setattr(weights, "bundled_root", lambda: root)
    monkeypatch.setenv("PT_PLUGIN_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PT_PLUGIN_OFFLINE", "1")
    return root


def test_registered_variant_is_verified(registered):
    assert pt_plugin.load("tiny", device="cpu", precision="int8").info.precision == "int8"
    with pytest.raises(InputError, match="no registered fp16 graphs"):
        pt_plugin.load("tiny", device="cpu", precision="fp16")
    (registered / "tiny" / "decoder.int8.onnx").write_bytes(b"tampered")
    with pytest.raises(WeightsError, match="sha256"):
        pt_plugin.load("tiny", device="cpu")  # a damaged listed file fails even when fp32 is asked for


def test_registered_variant_is_fetched_on_demand(registered, tmp_path, monkeypatch):
    """The bundled copy lacks the int8 graphs: they are downloaded with the model into the cache."""
    server_root = tmp_path / "server"
    shutil.copytree(registered, server_root)
    for f in variant_files("int8"):
        (registered / "tiny" / f).unlink()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(server_root))
    http.server.SimpleHTTPRequestHandler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert pt_plugin.load("tiny", device="cpu").path == registered / "tiny"  # fp32: bundled, nothing fetched
        assert not (tmp_path / "cache").exists()
        monkeypatch.setenv("PT_PLUGIN_WEIGHTS_URL", f"http://127.0.0.1:{server.server_port}/")
        monkeypatch.delenv("PT_PLUGIN_OFFLINE")
        model = pt_plugin.load("tiny", device="cpu", precision="int8")
        assert model.path == tmp_path / "cache" / "tiny" and model.info.precision == "int8"
        assert weights.sha256(model.path / "encoder.int8.onnx") == weights.sha256(
            server_root / "tiny" / "encoder.int8.onnx")
    finally:
        server.shutdown()


def test_parity_can_run_on_held_out_data(tiny_export, tmp_path):
    """--parity-data gates int8 on sets drawn from a data set's test split, and records which sets it used."""
    folder = copy_export(tiny_export, tmp_path / "tiny")
    assert main([str(folder), "--int8", "--calibration-data", "fashion-mnist", "--parity-data", "fashion-mnist"]) == 0
    parity = json.loads((folder / "model.json").read_text())["variants"]["int8"]["parity"]
    assert parity["sets"] == "fashion-mnist"
    assert parity["mean_value_max_abs_diff"] <= TOLERANCES["int8"]["mean_value_max_abs_diff"]


@pytest.mark.parametrize("spec", ["emoji", "folder:", "idx", "fashion"])
def test_unknown_data_source_is_refused_by_name(tiny_export, spec, capsys):
    with pytest.raises(SystemExit) as e:
        main([str(tiny_export), "--int8", "--parity-data", spec])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"{spec!r}: expected auto, random, fashion-mnist, " in err
    assert all(s in err for s in ("idx:DIR", "folder:DIR", "cifar10:DIR", "shapes", "moving-fashion"))


def test_a_data_set_without_draws_is_refused_with_the_reason(tiny_export, capsys):
    """Curves give no sets to draw (the registry's entry has none): naming one is refused, saying so."""
    with pytest.raises(SystemExit) as e:
        main([str(tiny_export), "--int8", "--calibration-data", "gp-curves"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "'gp-curves' (gp-curves gives no sets to draw; random sets fit it): expected auto, random" in err
    assert "polynomials" not in err.split("expected")[1]  # only sources that give sets are listed


def test_shape_sets_for_calibration_are_truncated_sdfs():
    """The "shapes" source draws procedural SDF sets (train stream for calibration, eval stream for parity)."""
    meta = {"pos_dim": 3, "val_dim": 1, "value_range": [-0.3, 0.3]}
    rng = np.random.default_rng(0)
    pos, val = sources.draws(meta, "shapes", None)(meta, 2, 50, rng)
    assert pos.shape == (2, 50, 3) and val.shape == (2, 50, 1)
    assert np.abs(pos).max() <= 1 and np.abs(val).max() <= 0.3 + 1e-6
    assert (val < 0).any() and (val > 0).any()  # inside and outside
    with pytest.raises(DataError, match="needs a model with pos_dim 3 and val_dim 1; got 2 and 1"):
        sources.draws({**meta, "pos_dim": 2}, "shapes", None)


@pytest.mark.skipif(not (Path(FASHION_DIR) / "train-images-idx3-ubyte.gz").is_file(), reason="needs Fashion-MNIST")
def test_clip_sets_for_calibration_follow_training_garments():
    """The "moving-fashion" source draws sets of clips: training garments for calibration, test ones for
    parity (different values for the same seed), trilinear values in [0, 1] with black background."""
    meta = {"pos_dim": 3, "val_dim": 1, "value_range": [0.0, 1.0]}
    draws = [sources.draws(meta, "moving-fashion", None, split)(meta, 3, 400, np.random.default_rng(0))
             for split in ("train", "test")]
    for pos, val in draws:
        assert pos.shape == (3, 400, 3) and val.shape == (3, 400, 1) and val.dtype == np.float32
        assert np.abs(pos).max() <= 1 and val.min() >= 0 and val.max() <= 1
        assert (val == 0).mean() > 0.2 and (val > 0.2).any()  # background and garment
    assert np.array_equal(draws[0][0], draws[1][0]) and not np.array_equal(draws[0][1], draws[1][1])
    with pytest.raises(DataError, match="needs a model with pos_dim 3 and val_dim 1; got 2 and 1"):
        sources.draws({**meta, "pos_dim": 2}, "moving-fashion", None)


def test_missing_data_is_refused_naming_the_source(tmp_path):
    meta = {"pos_dim": 2, "val_dim": 1, "value_range": [0.0, 1.0]}
    with pytest.raises(DataError, match=r"sets from 'fashion-mnist' \(test split\): "):
        sources.draws(meta, "fashion-mnist", tmp_path, "test")


def test_auto_calibration_takes_the_training_data_where_it_is_here(tmp_path):
    meta = {"training": {"data": "moving-fashion"}}
    assert sources.resolve(meta, "auto", tmp_path) == "random"  # no Fashion-MNIST in tmp_path
    assert sources.resolve({"training": {"data": "shapes"}}, "auto", tmp_path) == "shapes"  # generated: always here
    assert sources.resolve(meta, "shapes", tmp_path) == "shapes"  # an explicit choice stands
    (tmp_path / "train-images-idx3-ubyte.gz").touch()  # what the registry looks for
    assert sources.resolve(meta, "auto", tmp_path) == "moving-fashion"
    assert sources.resolve({"training": {"data": "fashion-mnist"}}, "auto", tmp_path) == "fashion-mnist"


def test_auto_calibration_falls_back_to_random_sets(tmp_path):
    """No draws (curves), data not here (a folder that is gone), or training data unknown or unrecorded."""
    for data in ("gp-curves", f"folder:{tmp_path / 'gone'}", "no-such-data", None):
        assert sources.resolve({"training": {"data": data}}, "auto", tmp_path) == "random", data
    assert sources.resolve({}, "auto", tmp_path) == "random"


def test_auto_calibration_takes_an_image_folder_that_is_here(tmp_path):
    """A folder:DIR model (the emoji palette model) calibrates on its folder when it is present."""
    (tmp_path / "train").mkdir()
    assert sources.resolve({"training": {"data": f"folder:{tmp_path / 'train'}"}}, "auto", None) == \
        f"folder:{tmp_path / 'train'}"


def bundled_int8_models() -> list[str]:
    names = [n for n in weights.known_models() if weights.bundled_path(n)]
    return [n for n in names if "int8" in json.loads((weights.bundled_path(n) / "model.json").read_text()).get(
        "variants", {})]


@pytest.mark.parametrize("name", bundled_int8_models())
def test_bundled_int8_graphs_stay_near_fp32_on_their_demo_signal(name):
    """Every shipped int8 variant (static or weight-only) loads and keeps the mean within the export's gate
    on 64 samples of the model's own demo signal (a quarter of a curve's points), 400 other queries."""
    fp32 = pt_plugin.load(name, device="cpu", threads=1)
    int8 = pt_plugin.load(name, device="cpu", threads=1, precision="int8")
    with np.load(fp32.path / "demo.npz") as d:
        arrays = {k: d[k].astype(np.float32) for k in d.files}
    if "truth" in arrays:
        cells = grid_positions(*arrays["truth"].shape[:-1])
        values = arrays["truth"].reshape(len(cells), -1)
    else:
        cells, values = arrays["positions"], arrays["values"]
    order = np.random.default_rng(0).permutation(len(cells))
    seen, queries = order[:min(64, len(cells) // 4)], order[min(64, len(cells) // 4):][:400]
    width = fp32.value_range[1] - fp32.value_range[0]
    means = [m.mean(m.encode(cells[seen], values[seen]), cells[queries]) for m in (fp32, int8)]
    diff = np.abs(means[0] - means[1]) / width
    tol = TOLERANCES["int8"]
    assert diff.max() <= tol["mean_value_max_abs_diff"] and diff.mean() <= tol["mean_value_mean_abs_diff"]
