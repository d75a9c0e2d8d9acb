"""Issue 31: the graph contract proven from another language. examples/node/mean.mjs computes the mean and
std of every bundled model from its two graphs and model.json with onnxruntime-node alone; they must equal
pt_plugin's within 1e-6. Runs where `node` and the onnxruntime-node package are installed (CI installs
them: .ci/run), skipped elsewhere."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import pt_plugin
from pt_plugin.weights import bundled_root

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "node"
NODE = shutil.which("node")


def onnxruntime_node() -> bool:
    """Whether node resolves onnxruntime-node from examples/node (its node_modules, or a global install)."""
    if NODE is None or not (EXAMPLE / "mean.mjs").is_file():
        return False
    r = subprocess.run([NODE, "-e", "require.resolve('onnxruntime-node')"], cwd=EXAMPLE, capture_output=True,
                       timeout=60)
    return r.returncode == 0


pytestmark = pytest.mark.skipif(not onnxruntime_node(), reason="node and onnxruntime-node are not installed "
                                "(ONNXRUNTIME_NODE_INSTALL_CUDA=skip npm install --prefix examples/node)")


def problem(model, k: int = 24, q: int = 300, seed: int = 0) -> dict:
    """A sample set and query positions inside the model's ranges, as the JSON the script reads."""
    rng = np.random.default_rng(seed)
    lo, hi = model.value_range
    pos = rng.uniform(-1, 1, (k, model.pos_dim)).astype(np.float32)
    val = rng.uniform(lo, hi, (k, model.val_dim)).astype(np.float32)
    queries = rng.uniform(-1, 1, (q, model.pos_dim)).astype(np.float32)
    return {"positions": pos.tolist(), "values": val.tolist(), "queries": queries.tolist()}


@pytest.mark.parametrize("name", pt_plugin.known_models())
def test_node_mean_equals_pt_plugin(name, tmp_path):
    model = pt_plugin.load(name, device="cpu")
    data = problem(model)
    (tmp_path / "input.json").write_text(json.dumps(data))
    r = subprocess.run([NODE, str(EXAMPLE / "mean.mjs"), str(bundled_root() / name), str(tmp_path / "input.json")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    mean, std = model.mean((np.float32(data["positions"]), np.float32(data["values"])), np.float32(data["queries"]),
                           return_std=True)
    assert got["model"] == name
    np.testing.assert_allclose(np.array(got["mean"]), mean, atol=1e-6, rtol=0)
    np.testing.assert_allclose(np.array(got["std"]), std, atol=1e-6, rtol=0)


def test_node_example_input_runs():
    """The example input of the README's command gives one mean and std row per query."""
    r = subprocess.run([NODE, str(EXAMPLE / "mean.mjs"), str(bundled_root() / "gp-curves"),
                        str(EXAMPLE / "example-input.json")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert len(out["mean"]) == len(out["std"]) == 4 and all(len(row) == 1 for row in out["mean"])
