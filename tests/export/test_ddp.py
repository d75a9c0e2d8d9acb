"""Distributed training (issue 17.1): torchrun with 2 CPU processes (gloo) on a tiny 1-D model."""
import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

TORCHRUN = shutil.which("torchrun") or (os.path.join(os.path.dirname(sys.executable), "torchrun"))
pytestmark = pytest.mark.skipif(not os.path.exists(TORCHRUN), reason="torchrun is not installed")

CFG = {"model": {"pos_dim": 1, "d_model": 16, "n_heads": 2, "enc_layers": 1, "dec_layers": 1, "ffn": 32,
                 "num_bins": 1, "value_range": [-5.0, 5.0]},
       "train": {"data": "gp-curves", "batch_size": 4, "min_samples": 1, "max_samples": 8, "num_queries": 16,
                 "steps": 6, "warmup": 2, "log_every": 3, "val_every": 6, "ckpt_every": 3, "threads": 1}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(cfg_path, out, *extra):
    """Two local processes on the loopback (a free port of 127.0.0.1), bounded in time."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([TORCHRUN, "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                           "--master_port", str(free_port()),
                           "-m", "export.train", "--config", str(cfg_path), "--out", str(out), "--trace", *extra],
                          capture_output=True, text=True, timeout=600, env=env, cwd=os.getcwd())


def traces(out):
    return [json.loads((out / f"trace-rank{r}.json").read_text()) for r in (0, 1)]


def test_two_ranks_differ_in_data_agree_in_weights_and_resume(tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(CFG))
    out = tmp_path / "run"
    r = torchrun(cfg, out)
    assert r.returncode == 0, r.stderr[-3000:]
    t0, t1 = traces(out)
    assert t0["world_size"] == t1["world_size"] == 2 and t0["step"] == t1["step"] == 6
    assert all(a != b for a, b in zip(t0["batches"], t1["batches"]))  # every step, other data on each rank
    assert t0["params_sha256"] == t1["params_sha256"]  # gradients are averaged: the weights stay identical
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "last.pt", "model.pt", "trace-rank0.json",
                                                     "trace-rank1.json"]  # only rank 0 writes checkpoints
    cfg.write_text(json.dumps({**CFG, "train": {**CFG["train"], "steps": 9}}))
    r = torchrun(cfg, out, "--resume")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resumed from" in r.stdout and "at step 6" in r.stdout
    t0, t1 = traces(out)
    assert t0["step"] == t1["step"] == 9 and t0["params_sha256"] == t1["params_sha256"]
    assert len(t0["batches"]) == 3 and all(a != b for a, b in zip(t0["batches"], t1["batches"]))


def test_time_limit_stops_every_rank_at_the_same_step(tmp_path):
    """The clock behind max_minutes and the learning rate is rank 0's: on their own clocks the ranks stepped
    with different rates (weights apart after 96 steps) and could stop one step apart (one waits forever)."""
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({**CFG, "train": {**CFG["train"], "steps": 100000, "max_minutes": 0.05}}))
    out = tmp_path / "run"
    r = torchrun(cfg, out)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "stopping after 0.05 minutes" in r.stdout
    t0, t1 = traces(out)
    assert 0 < t0["step"] == t1["step"] < 100000 and t0["params_sha256"] == t1["params_sha256"]
