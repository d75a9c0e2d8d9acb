"""export.tools.compare_runs: runs side by side at equal minutes, from the histories export.train records."""
import json

import pytest
import torch

from export.errors import UsageError
from export.tools.compare_runs import at_minutes, main


def fake_checkpoint(path, d_model, minutes_nll, buffer=True):
    hist = [{"minutes": m, "step": 100 * i, "val_nll": v} | ({"val_buffer_nll": v - 0.1} if buffer else {})
            for i, (m, v) in enumerate(minutes_nll)]
    model = {"w": torch.zeros(d_model, 3), "centers": torch.zeros(64)}
    cfg = {"model": {"d_model": d_model, "n_heads": 4, "enc_layers": 4, "dec_layers": 4, "ffn": 2 * d_model}}
    torch.save({"config": cfg, "model": model, "step": hist[-1]["step"], "minutes": minutes_nll[-1][0],
                "history": hist, "precision": "bf16"}, path)
    return path


def test_runs_are_compared_at_equal_minutes(tmp_path, capsys):
    a = fake_checkpoint(tmp_path / "a.pt", 8, [(0, -1.0), (10, -2.0), (20, -2.5)])
    b = fake_checkpoint(tmp_path / "b.pt", 16, [(0, -1.0), (10, -1.5), (15, -3.0)], buffer=False)
    assert main([f"small={a}", f"big={b}", "--out", str(tmp_path / "cmp"), "--every", "5"]) == 0
    data = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert data["marks"] == [0, 5, 10, 15]  # up to the shorter run
    assert data["val_nll"]["small"] == [-1.0, -1.5, -2.0, -2.25]  # linear between validations
    assert data["val_nll"]["big"] == [-1.0, -1.25, -1.5, -3.0]
    assert data["val_buffer_nll"]["small"][1] == pytest.approx(-1.6) and data["val_buffer_nll"]["big"] == [None] * 4
    assert [r["parameters"] for r in data["runs"]] == [24, 48]  # the bin centres are not parameters
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "| 15 | -2.2500 (-2.3500) | -3.0000 |" in md and (tmp_path / "cmp" / "comparison.png").stat().st_size
    assert "| small | 8 |" in capsys.readouterr().out


def test_a_mark_past_a_runs_last_validation_is_left_empty():
    run = {"points": [{"minutes": 0.0, "val_nll": 1.0}, {"minutes": 4.0, "val_nll": 0.0}]}
    assert at_minutes(run, [2.0, 4.0, 6.0]) == [0.5, 0.0, None]


@pytest.mark.parametrize("argv", [["nolabel.pt"], ["a=x.pt", "a=y.pt"], ["=x.pt"]])
def test_bad_run_specs_are_refused_with_a_message(argv, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path)]) != 0
    err = capsys.readouterr().err
    assert err.startswith("error:") and ("LABEL=CHECKPOINT" in err or "own label" in err)


def test_a_run_without_history_is_refused(tmp_path):
    path = fake_checkpoint(tmp_path / "a.pt", 8, [(0, -1.0)])
    with pytest.raises(UsageError, match="fewer than two validations"):
        from export.tools.compare_runs import read_checkpoint, run_summary
        run_summary("a", read_checkpoint(path))
