"""The bundled model is what its card says: the card's tables are the evaluation report's, the report
and the graphs come from the committed checkpoint, and the graphs compute what that checkpoint computes."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import pt_plugin
from export.evaluate.protocol import load_shipped
from export.onnx.graphs import load_checkpoint, total_steps
from export.tools.model_card import blocks_for
from export.tools.model_card import main as model_card

ROOT = Path(__file__).resolve().parents[2]
CARD = ROOT / "weights" / "fashion-mnist" / "MODEL_CARD.md"
METRICS = ROOT / "docs" / "fashion-mnist" / "metrics.json"
CHECKPOINT = ROOT / "weights" / "checkpoints" / "fashion-mnist.pt"


def test_bundled_card_shows_the_measured_tables():
    assert model_card([str(CARD), "--metrics", str(METRICS), "--checkpoint", str(CHECKPOINT), "--check"]) == 0


def test_a_stale_card_is_caught_and_rewritten(tmp_path):
    card = tmp_path / "MODEL_CARD.md"
    shutil.copy(CARD, card)
    report = json.loads(METRICS.read_text())
    report["sizes"]["16"]["model"]["nll_bits"] = 1.2345
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps(report))
    assert model_card([str(card), "--metrics", str(metrics), "--check"]) == 1
    assert model_card([str(card), "--metrics", str(metrics)]) == 0
    assert "| 16 | 1.234 |" in card.read_text()
    assert model_card([str(card), "--metrics", str(metrics), "--check"]) == 0


def test_a_card_without_markers_is_refused(tmp_path, capsys):
    card = tmp_path / "MODEL_CARD.md"
    card.write_text("# a card with no generated blocks\n")
    assert model_card([str(card), "--metrics", str(METRICS)]) == 2
    assert "<!-- generated: evaluation -->" in capsys.readouterr().err
    assert card.read_text() == "# a card with no generated blocks\n"  # nothing the user had is lost


def test_report_and_graphs_come_from_the_committed_checkpoint():
    ck = torch.load(CHECKPOINT, map_location="cpu", weights_only=False)
    report = json.loads(METRICS.read_text())
    meta = json.loads((ROOT / "weights" / "fashion-mnist" / "model.json").read_text())
    assert report["settings"]["step"] == meta["training"]["total_steps"] == total_steps(ck)


@pytest.mark.parametrize("k", [4, 64, 300])
def test_bundled_graphs_compute_what_the_checkpoint_computes(k):
    torch_model, _ = load_checkpoint(CHECKPOINT)
    runtime = pt_plugin.load(device="cpu")
    rng = np.random.default_rng(k)
    pos = rng.uniform(-1, 1, (k, 2)).astype(np.float32)
    val = rng.uniform(0, 1, (k, 1)).astype(np.float32)
    grid = pt_plugin.grid_positions(28, 28)
    got = runtime.query(runtime.encode(pos, val), grid)
    with torch.no_grad():
        want = torch_model(torch.from_numpy(pos)[None], torch.from_numpy(val)[None], torch.ones(1, k, dtype=torch.bool),
                           torch.from_numpy(grid)[None])
    np.testing.assert_allclose(got.logits, want.logits[0].numpy(), atol=2e-4)
    np.testing.assert_allclose(got.mean(), want.mean()[0].numpy(), atol=2e-5)


def test_readme_shows_the_shipped_numbers():
    """The README's model table quotes the bundled model.json (no stale figures after a retrain)."""
    readme = (ROOT / "README.md").read_text()
    sizes = json.loads((ROOT / "weights" / "fashion-mnist" / "model.json").read_text())["metrics"]["sizes"]
    for size in ("16", "64", "256"):
        m = sizes[size]
        assert f"{m['nll_bits']:.2f} bits / {m['mse']:.4f}" in readme, size
        assert f"{m['cond_gauss_nll_bits']:.2f} bits / {m['cond_gauss_mse']:.4f}" in readme, size


def check_card_is_fresh(name):
    """`export.tools.model_card --check` passes on the bundled card; returns (model.json, the evaluation report)."""
    import subprocess
    import sys

    card, report = ROOT / "weights" / name / "MODEL_CARD.md", ROOT / "docs" / name / "metrics.json"
    ck = ROOT / "weights" / "checkpoints" / f"{name}.pt"
    r = subprocess.run([sys.executable, "-m", "export.tools.model_card", str(card), "--metrics", str(report),
                        "--checkpoint", str(ck), "--check"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads((ROOT / "weights" / name / "model.json").read_text()), json.loads(report.read_text())


@pytest.mark.parametrize("name", ["gp-curves", "polynomials"])
def test_curve_cards_and_readme_quote_their_evaluation(name):
    """A curve model's card is a fresh rendering of its report, and the README row quotes model.json."""
    meta, report = check_card_is_fresh(name)
    sizes = meta["metrics"]["sizes"]
    gaps = [v["gap"] for v in sizes.values()]
    row = next(line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith(f"| `{name}` |"))
    assert f"{min(gaps):.2f}–{max(gaps):.2f} nats" in row
    assert meta["training"].get("total_steps", meta["training"]["steps"]) == report["settings"]["step"]


def test_the_curve_protocol_measures_the_shipped_graphs():
    """A curve report's model figures are the bundled graphs' (Model.mean, the Distribution's log_prob and cdf),
    and its joint check draws with Model.sample: the runtime's defaults (cached), and exact re-encoding
    (cache=False, step fraction 0, every point drawn in turn)."""
    from export.datasets.curves import family
    from export.evaluate import curves

    model = load_shipped(ROOT / "weights" / "gp-curves", threads=1).model
    xs, ys, xq, yq = curves.draw_eval_sets(family("gp-curves"), 4, 3, 20, seed=0)
    mean, logp, cdf = curves.model_law(model, xs, ys, xq, yq)
    ctx, q = (xs[1, :, None], ys[1, :, None]), xq[1, :, None]
    dist = model.query(ctx, q)
    np.testing.assert_allclose(mean[1], model.mean(ctx, q)[:, 0], atol=1e-6)
    np.testing.assert_allclose(logp[1], dist.log_prob(yq[1]), rtol=1e-6)
    np.testing.assert_allclose(cdf[1], dist.cdf(yq[1]), rtol=1e-6)
    draws = curves.set_draws(model, xs[1], ys[1], xq[1], 5, np.random.default_rng(7))
    seeds = np.random.default_rng(7).integers(2 ** 31, size=2)
    np.testing.assert_array_equal(draws["runtime"], model.sample(*ctx, q, 5, int(seeds[0]))[..., 0])
    exact = model.sample(*ctx, q, 5, int(seeds[1]), step_fraction=0.0, autoregressive=len(q), cache=False)
    np.testing.assert_array_equal(draws["exact"], exact[..., 0])


def test_a_curve_report_records_what_it_measured(tmp_path):
    """`python -m export.evaluate weights/gp-curves` with tiny counts: the report names its protocol, the graphs
    and the runtime's sampler settings, not a checkpoint; the card block is the report without its title; the
    default |S| stay within the training range (polynomials were trained on 1…20 samples)."""
    from export.evaluate import curves
    from export.evaluate.__main__ import parser

    args = parser().parse_args(["weights/gp-curves", "--out", str(tmp_path), "--curves", "3", "--sizes", "2,4",
                                "--joint-sets", "1", "--joint-samples", "20", "--threads", "1"])
    report = curves.evaluate(load_shipped(ROOT / "weights" / "gp-curves", threads=1), args, log=lambda _: None)
    st = report["settings"]
    assert st["protocol"] == "curves" and st["data"] == "gp-curves" and "checkpoint" not in st
    assert st["joint"]["exact"] == {"cache": False, "autoregressive": 64, "step_fraction": 0.0}
    assert st["joint"]["runtime"] == {"cache": True, "autoregressive": pt_plugin.sampling.ALL_POSITIONS,
                                      "step_fraction": 0.0, "buffer_size": 4}  # the cached defaults of gp-curves
    assert set(report["joint"]["2"]) == {"runtime", "exact", "independent", "oracle_samples"}
    assert json.loads((tmp_path / "metrics.json").read_text()) == report
    block = curves.card_blocks(report)["evaluation"]
    assert block.startswith("3 seeded evaluation curves") and "| 4 |" in block
    assert curves.default_sizes(load_shipped(ROOT / "weights" / "polynomials", threads=1)) == (1, 2, 4, 8, 16)
    assert curves.default_sizes(load_shipped(ROOT / "weights" / "gp-curves", threads=1)) == curves.SIZE_LADDER


@pytest.mark.parametrize("name", ["shapes", "emoji", "moving-fashion"])
def test_shape_and_emoji_cards_are_fresh_renderings(name):
    """The emoji, shapes and moving-fashion cards show exactly what their reports and checkpoints hold, and model.json
    records the same training steps as the report (over all runs of a fine-tuned model)."""
    meta, report = check_card_is_fresh(name)
    assert meta["training"].get("total_steps", meta["training"]["steps"]) == report["settings"]["step"]


def test_a_video_report_renders_the_video_table():
    """A video report (export.evaluate.video) fills the card's evaluation block with its own table: every
    method's MSE per |S|, not the image table (which would fail on its keys)."""
    report = json.loads((ROOT / "docs" / "moving-fashion" / "metrics.json").read_text())
    blocks = blocks_for(report, None)
    assert set(blocks) == {"evaluation"}
    table = blocks["evaluation"]
    assert "Nearest (space-time) MSE" in table and "Cond. Gaussian MSE" in table
    for size, r in report["sizes"].items():
        assert f"| {size} | {r['model']['nll_bits']:.3f} |" in table


def test_the_video_readme_row_quotes_model_json():
    """The README's moving-fashion row carries model.json's NLL and MSE figures (from the same report)."""
    meta = json.loads((ROOT / "weights" / "moving-fashion" / "model.json").read_text())
    row = next(line for line in (ROOT / "README.md").read_text().splitlines()
               if line.startswith("| `moving-fashion` |"))
    for size in ("64", "256", "1024"):
        m = meta["metrics"]["sizes"][size]
        assert f"{m['nll_bits']:.2f} / {m['cond_gauss_nll_bits']:.2f}" in row
        assert f"{m['mse']:.3f} vs {m['best_baseline_mse']:.3f}" in row
