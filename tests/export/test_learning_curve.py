"""export.tools.learning_curve: a checkpoint's runs laid end to end on cumulative minutes and steps, and the
files its CLI writes."""
import json

import pytest
import torch

from export.checkpoint import total_steps
from export.tools.learning_curve import curve, outlier_limits
from export.tools.learning_curve import main as learning_curve


def hist(*rows):
    """A validation history from (step, minutes, val_nll) rows."""
    return [{"val_loss": 1.0, "val_nll": nll, "step": step, "minutes": minutes} for step, minutes, nll in rows]


def fake_checkpoint() -> dict:
    """Two earlier runs (the first with no history kept) and the run that wrote the checkpoint."""
    return {"config": {"model": {}, "train": {"precision": "auto"}}, "step": 300, "minutes": 30.0,
            "precision": "bf16",
            "history": [{**h, "val_buffer_nll": h["val_nll"] + 0.5} for h in hist((0, 0.0, -1.0), (300, 29.5, -1.5))],
            "lineage": [{"init": "runs/a/model.pt", "steps": 1000, "minutes": 10.0},
                        {"init": "runs/b/model.pt", "steps": 2000, "minutes": 20.0,
                         "history": hist((1000, 9.0, -0.5), (0, 0.0, 0.25), (2000, 19.96, -0.9))}]}


def test_runs_are_laid_end_to_end():
    ck = fake_checkpoint()
    data = curve(ck, "fake")
    assert data["model"] == "fake" and "minutes" in data["x"]
    assert [r["run"] for r in data["runs"]] == [1, 2, 3]
    assert [r["start_minutes"] for r in data["runs"]] == [0.0, 10.0, 30.0]
    assert [r["start_step"] for r in data["runs"]] == [0, 1000, 3000]
    assert data["total_minutes"] == 60.0 and data["total_steps"] == total_steps(ck) == 3300
    assert [r["init"] for r in data["runs"]] == ["runs/a/model.pt", "runs/b/model.pt", None]
    run2, run3 = data["runs"][1]["points"], data["runs"][2]["points"]
    assert [(p["minutes"], p["step"]) for p in run2] == [(10.0, 1000), (19.0, 2000), (29.96, 3000)]
    assert [(p["minutes"], p["step"], p["val_nll"]) for p in run3] == [(30.0, 3000, -1.0), (59.5, 3300, -1.5)]
    assert [p["val_buffer_nll"] for p in run3] == [-0.5, -1.0] and "val_buffer_nll" not in run2[0]


def test_points_are_in_order_across_runs():
    points = [p for r in curve(fake_checkpoint(), "fake")["runs"] for p in r["points"]]
    assert [p["minutes"] for p in points] == sorted(p["minutes"] for p in points)
    assert [p["step"] for p in points] == sorted(p["step"] for p in points)


def test_runs_without_a_history_keep_their_place():
    ck = fake_checkpoint()
    ck["lineage"][1]["history"] = []
    ck["lineage"][0]["steps"] = None  # as export.train writes for an --init checkpoint that lacks a step
    data = curve(ck, "fake")
    assert [len(r["points"]) for r in data["runs"]] == [0, 0, 2]
    assert data["runs"][2]["start_minutes"] == 30.0 and data["runs"][2]["start_step"] == 2000
    assert "precision" not in data["runs"][0] and data["runs"][2]["precision"] == "bf16"


def test_a_checkpoint_without_lineage_is_one_run():
    ck = {"config": {"model": {}, "train": {"precision": "fp32"}}, "step": 10, "minutes": 1.23456789,
          "history": hist((0, 0.0, 0.123456789), (10, 1.2, -0.1))}
    data = curve(ck, "solo")
    assert len(data["runs"]) == 1 and data["runs"][0]["precision"] == "fp32"  # asked for fp32: fp32 it ran
    assert data["runs"][0]["minutes"] == 1.2346 and data["runs"][0]["points"][0]["val_nll"] == 0.12346


def test_an_untrained_first_point_does_not_squash_the_plot():
    low, high = outlier_limits([18.3, 0.56, -0.4, -0.5])  # polynomials: step 0, then trained
    assert low < -0.5 and 0.56 < high < 1
    assert outlier_limits([0.35, -5.6, -9.4, -10.3]) is None  # emoji: a fall, not an outlier
    assert outlier_limits([1.0, 0.5]) is None


def test_cli_writes_the_json_and_the_plot(tmp_path, capsys):
    path = tmp_path / "tiny.pt"
    torch.save(fake_checkpoint(), path)
    out = tmp_path / "docs" / "tiny"
    assert learning_curve([str(path), "--out", str(out)]) == 0
    data = json.loads((out / "learning_curve.json").read_text())
    assert data == json.loads(json.dumps(curve(fake_checkpoint(), "tiny")))
    assert (out / "learning_curve.json").stat().st_size < 4000
    assert (out / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "tiny: 3 runs, 60.0 minutes" in capsys.readouterr().out


def test_cli_names_each_folder_after_its_checkpoint(tmp_path):
    for name in ("a", "b"):
        torch.save(fake_checkpoint(), tmp_path / f"{name}.pt")
    args = [str(tmp_path / "a.pt"), str(tmp_path / "b.pt")]
    assert learning_curve([*args, "--out", str(tmp_path / "lc" / "{name}")]) == 0
    assert json.loads((tmp_path / "lc" / "b" / "learning_curve.json").read_text())["model"] == "b"
    assert learning_curve([*args, "--out", str(tmp_path / "one")]) == 2  # both into one folder: refused
    assert not (tmp_path / "one").exists()


@pytest.mark.parametrize("content", [b"not a checkpoint\n", b"", "pickled list"])
def test_a_file_that_is_not_a_checkpoint_is_refused_in_one_line(tmp_path, capsys, content):
    path = tmp_path / "notes.pt"
    if content == "pickled list":
        torch.save([1, 2, 3], path)
    else:
        path.write_bytes(content)
    assert learning_curve([str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert "is not a pt-plugin checkpoint (written by export.train)" in err
    assert not (tmp_path / "out").exists()


def test_a_missing_checkpoint_is_refused_in_one_line(tmp_path, capsys):
    assert learning_curve([str(tmp_path / "nowhere.pt"), "--out", str(tmp_path / "out")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
