"""Self-supervised training: `python -m export.train [--config CFG.json] [--key value ...]`.

Every step draws, per image, a sample set S (|S| log-uniform) and queries Q at continuous
positions, and minimises the appendix loss over Q. Prints progress lines, a validation NLL on
held-out images, writes checkpoints (`last.pt` with optimiser state for --resume, `model.pt`
weights only), runs on CUDA when present and on several devices under torchrun (DDP).
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from export import grow, precision
from export.config import Config, ConfigError, ModelConfig, TrainConfig
from export.datasets import TrainingData, dataset
from export.errors import reports_errors
from export.model import PixelTransformer


def parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def parse_args(argv=None) -> tuple[Config, argparse.Namespace]:
    p = argparse.ArgumentParser(prog="python -m export.train", description=__doc__.splitlines()[0])
    p.add_argument("--config", help="JSON file with {'model': {...}, 'train': {...}}")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--init", help="start from the weights of this checkpoint (fine-tuning)")
    p.add_argument("--trace", action="store_true",
                   help="write OUT/trace-rank<R>.json per process: fingerprints of its batches and a checksum of "
                        "its final parameters (to check that DDP ranks draw different data and stay in step)")
    for dc, prefix in ((ModelConfig, "model"), (TrainConfig, "train")):
        for f in dataclasses.fields(dc):
            if f.name in ("bin_centers", "value_range"):
                continue
            typ = {int: int, float: float, str: str, bool: parse_bool}.get(type(f.default), str)
            p.add_argument(f"--{f.name.replace('_', '-')}", dest=f"{prefix}.{f.name}", type=typ, default=None)
    args = p.parse_args(argv)
    cfg = Config.load(args.config) if args.config else Config()
    for key, val in vars(args).items():
        if "." in key and val is not None:
            section, name = key.split(".")
            setattr(getattr(cfg, section), name, val)
    if cfg.train.precision not in precision.PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(precision.PRECISIONS)}; got {cfg.train.precision!r}")
    if cfg.train.attention not in precision.ATTENTION:
        raise ConfigError(f"attention must be one of {', '.join(precision.ATTENTION)}; got {cfg.train.attention!r}")
    cfg.train.validate()
    fitted = cfg.train.palette and cfg.model.bin_centers is None  # main() fits the centres on the data
    (dataclasses.replace(cfg.model, bin_centers=[[0.5] * cfg.model.val_dim]) if fitted else cfg.model).validate()
    return cfg, args


def lr_at(step: int, tc: TrainConfig, minutes: float = 0.0) -> float:
    """Linear warmup, then cosine decay to 10% by the last step or by max_minutes, whichever comes first."""
    if step < tc.warmup:
        return tc.lr * (step + 1) / tc.warmup
    t = (step - tc.warmup) / max(1, tc.steps - tc.warmup)
    if tc.max_minutes:
        t = max(t, minutes / tc.max_minutes)
    t = min(1.0, t)
    return tc.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def rank0_minutes(minutes: float, ddp: bool, device: torch.device) -> float:
    """Rank 0's training minutes on every rank. The learning rate and the max_minutes stop follow the clock:
    on each rank's own clock the ranks would step with slightly different rates (their weights drifting
    apart) and could stop one step apart (the rank that went on waiting for gradients forever)."""
    if not ddp:
        return minutes
    t = torch.tensor([minutes], dtype=torch.float64, device=device)  # NCCL broadcasts CUDA tensors only
    torch.distributed.broadcast(t, src=0)
    return float(t.item())


def data_sources(cfg: Config, rank: int) -> TrainingData:
    """What the config's data set trains on (export.datasets): a sampler per starting step, fixed validation
    batches, a line for the log. Called before the model is built, so the data can shape it (a palette
    fitted to the images)."""
    data = dataset(cfg.train.data)
    data.check_dims(cfg.model.pos_dim, cfg.model.val_dim)
    return data.training(cfg, rank)


@torch.no_grad()
def evaluate(model: PixelTransformer, batches, alpha: float, device, buffer: int = 0) -> dict[str, float]:
    """Validation loss and NLL (nats per value) of the queries given S; with a buffer of `buffer` tokens (the
    first queries of each batch, in their order) also val_buffer_nll, the NLL at each buffer position given S
    and the buffer tokens before it (the causal buffer's figure)."""
    model.eval()
    loss = nll = buf_nll = 0.0
    for spos, sval, mask, qpos, qval in batches:
        spos, sval, mask, qpos, qval = (t.to(device) for t in (spos, sval, mask, qpos, qval))
        mix = model(spos, sval, mask, qpos)
        loss += mix.loss(qval, alpha).mean().item()
        nll += -mix.log_prob(qval).mean().item()
        if buffer:
            buf, _ = model(spos, sval, mask, qpos[:, buffer:], qpos[:, :buffer], qval[:, :buffer])
            buf_nll += -buf.log_prob(qval[:, :buffer]).mean().item()
    model.train()
    out = {"val_loss": loss / len(batches), "val_nll": nll / len(batches)}
    if buffer:
        out["val_buffer_nll"] = buf_nll / len(batches)
    return out


def val_line(m: dict) -> str:
    """The log line of a validation."""
    buffer = f", buffer nll {m['val_buffer_nll']:.4f}" if "val_buffer_nll" in m else ""
    return f"val step {m['step']} loss {m['val_loss']:.4f} nll {m['val_nll']:.4f} nats/value{buffer}"


def buffer_batch(batch, tc: TrainConfig, g: torch.Generator):
    """(spos, sval, mask, qpos, qval, buffer_pos, buffer_val): G log-uniform in 1..buffer_max of the queries, in a
    random order, become the causal buffer (export.cache); the other queries stay queries given S."""
    spos, sval, mask, qpos, qval = batch
    nq = qpos.shape[1]
    top = min(tc.buffer_max, nq - 1)
    size = int(round(math.exp(torch.rand((), generator=g).item() * math.log(top)))) if top > 1 else 1
    order = torch.randperm(nq, generator=g)
    qpos, qval = qpos[:, order], qval[:, order]
    return spos, sval, mask, qpos[:, size:], qval[:, size:], qpos[:, :size], qval[:, :size]


def save(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)  # a crash mid-write never leaves a broken checkpoint


def distributed() -> tuple[bool, int, torch.device]:
    """(DDP or not, this process's rank, its device): DDP under torchrun, NCCL on GPUs, gloo on CPUs."""
    ddp = "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1
    rank = 0
    if ddp:
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        rank = torch.distributed.get_rank()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    return ddp, rank, device


@dataclass
class Run:
    """One training run: the model and optimizer, and what its checkpoints and validations record."""
    cfg: Config
    model: PixelTransformer
    opt: torch.optim.Optimizer
    val: list
    device: torch.device
    prec: str
    rank: int
    log: Callable[..., None]
    step: int = 0
    history: list = field(default_factory=list)
    minutes_before: float = 0.0  # training minutes of the runs this one resumes
    lineage: list = field(default_factory=list)  # earlier runs behind --init weights, oldest first
    t0: float = field(default_factory=time.time)
    buffer_rng: torch.Generator = field(default_factory=torch.Generator)  # buffer sizes and orders (buffer_max)

    @property
    def out(self) -> Path:
        return Path(self.cfg.train.out)

    @property
    def val_buffer(self) -> int:
        """Buffer tokens of each validation set (0: no buffer): half the queries, at most buffer_max."""
        tc = self.cfg.train
        return min(tc.buffer_max, tc.num_queries // 2) if tc.buffer_max else 0

    def elapsed(self) -> float:
        """Training minutes so far, over resumes."""
        return self.minutes_before + (time.time() - self.t0) / 60

    def restore(self, resume: bool, init: str | None) -> None:
        """Continue from out/last.pt (--resume, optimizer too) or start from --init weights."""
        if resume and (self.out / "last.pt").is_file():
            ck = torch.load(self.out / "last.pt", map_location=self.device, weights_only=False)
            self.model.load_state_dict(ck["model"])
            self.opt.load_state_dict(ck["optimizer"])
            self.step, self.history = ck["step"], ck.get("history", [])
            self.minutes_before, self.lineage = ck.get("minutes", 0.0), ck.get("lineage", [])
            self.log(f"resumed from {self.out / 'last.pt'} at step {self.step}")
        elif init:
            ck = torch.load(init, map_location=self.device, weights_only=False)
            state, old = ck["model"], Config.from_dict(ck["config"]).model
            if grow.is_depth_growth(old, self.cfg.model):  # a deeper model from these weights (export.grow)
                state = grow.grow_state_dict(state, old, self.cfg.model, self.model.state_dict())
                new = self.cfg.model
                self.log(f"grown from {old.enc_layers}+{old.dec_layers} to {new.enc_layers}+{new.dec_layers} blocks "
                         "(new blocks start as identities)")
            self.model.load_state_dict(state)
            self.lineage = ck.get("lineage", []) + [{"init": str(init), "steps": ck.get("step"),
                                                     "minutes": ck.get("minutes"), "history": ck.get("history", [])}]
            self.log(f"initialised from {init}")

    def checkpoint(self, metrics: dict | None = None) -> None:
        """last.pt (with the optimizer, for --resume) and model.pt (weights only), on rank 0."""
        if self.rank:
            return
        state = {"config": self.cfg.to_dict(), "model": self.model.state_dict(), "step": self.step,
                 "history": self.history, "minutes": self.elapsed(), "lineage": self.lineage, "precision": self.prec}
        save(self.out / "last.pt", {**state, "optimizer": self.opt.state_dict()})
        save(self.out / "model.pt", {**state, "metrics": metrics or (self.history[-1] if self.history else {})})

    def validate(self) -> None:
        """Validation NLL of the weights now, into the history, the log and a checkpoint."""
        m = evaluate(self.model, self.val, self.cfg.model.alpha, self.device, self.val_buffer)
        m.update(step=self.step, minutes=round(self.elapsed(), 2))
        self.history.append(m)
        self.log(val_line(m))
        self.checkpoint(m)


def step_loss(run: Run, net: torch.nn.Module, batch) -> torch.Tensor:
    """The loss of a batch: the appendix loss of the queries given S, mixed with the causal buffer's when
    buffer_max > 0 (weight buffer_weight)."""
    tc, device, alpha = run.cfg.train, run.device, run.cfg.model.alpha
    if tc.buffer_max:
        spos, sval, mask, qpos, qval, bpos, bval = (t.to(device) for t in buffer_batch(batch, tc, run.buffer_rng))
        with precision.autocast(run.prec, device):
            buf, mix = net(spos, sval, mask, qpos, bpos, bval)
        w = tc.buffer_weight
        return (1 - w) * mix.loss(qval, alpha).mean() + w * buf.loss(bval, alpha).mean()
    spos, sval, mask, qpos, qval = (t.to(device) for t in batch)
    with precision.autocast(run.prec, device):  # the blocks in bf16; model.full_precision keeps the islands fp32
        mix = net(spos, sval, mask, qpos)
    return mix.loss(qval, alpha).mean()


def train_step(run: Run, net: torch.nn.Module, batch) -> torch.Tensor:
    """One optimizer step on a batch at the scheduled learning rate; returns the loss (not checked)."""
    tc = run.cfg.train
    loss = step_loss(run, net, batch)
    if not torch.isfinite(loss):
        return loss
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(run.model.parameters(), tc.grad_clip)
    run.opt.step()
    run.step += 1
    return loss


def train_loop(run: Run, net: torch.nn.Module, sampler, ddp: bool, trace: list[str] | None) -> int:
    """Steps until cfg.train.steps or max_minutes, logging, validating and checkpointing on schedule."""
    tc = run.cfg.train
    tlast, running = time.time(), 0.0
    while run.step < tc.steps:
        minutes = rank0_minutes(run.elapsed(), ddp, run.device)
        for grp in run.opt.param_groups:
            grp["lr"] = lr_at(run.step, tc, minutes)
        batch = sampler.batch()
        loss = train_step(run, net, batch)
        if not torch.isfinite(loss):
            print(f"error: non-finite loss at step {run.step}; lower --lr", file=sys.stderr)
            return 1
        if trace is not None:
            trace.append(hashlib.sha256(batch[0].cpu().numpy().tobytes()).hexdigest()[:16])
        running += loss.item()
        if run.step % tc.log_every == 0:
            now = time.time()
            run.log(f"step {run.step} loss {running / tc.log_every:.4f} lr {lr_at(run.step, tc, run.elapsed()):.2e} "
                    f"{tc.log_every / (now - tlast):.2f} steps/s |S|={batch[0].shape[1]}")
            running, tlast = 0.0, now
        if run.step % tc.val_every == 0 or run.step == tc.steps:
            run.validate()
        elif run.step % tc.ckpt_every == 0:
            run.checkpoint()
        if tc.max_minutes and minutes > tc.max_minutes:
            run.log(f"stopping after {tc.max_minutes} minutes at step {run.step}")
            break
    if run.history and run.history[-1]["step"] != run.step:  # stopped between validations: the final figure
        run.validate()
    else:
        run.checkpoint()
    return 0


def write_trace(run: Run, trace: list[str]) -> None:
    """--trace: this rank's batch hashes and final parameters (the DDP test compares ranks)."""
    params = torch.cat([p.detach().reshape(-1).cpu() for p in run.model.parameters()]).numpy()
    (run.out / f"trace-rank{run.rank}.json").write_text(json.dumps({
        "rank": run.rank, "world_size": int(os.environ.get("WORLD_SIZE", 1)), "batches": trace, "step": run.step,
        "params_sha256": hashlib.sha256(params.tobytes()).hexdigest()}))


@reports_errors
def main(argv=None) -> int:
    cfg, args = parse_args(argv)
    tc = cfg.train
    ddp, rank, device = distributed()
    if tc.threads:
        torch.set_num_threads(tc.threads)
    torch.manual_seed(tc.seed + rank)
    log = (lambda *a: print(*a, flush=True)) if rank == 0 else (lambda *a: None)
    prec, why = precision.choose(tc.precision, device)
    fuse_from = precision.fused_attention(tc.attention, prec, device)
    log(f"precision {prec} ({why}), {precision.describe_attention(fuse_from)}")

    make_sampler, val, what = data_sources(cfg, rank)
    Path(tc.out).mkdir(parents=True, exist_ok=True)
    model = PixelTransformer(cfg.model).to(device).fuse_attention(fuse_from)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    run = Run(cfg, model, opt, val, device, prec, rank, log)
    run.restore(args.resume, args.init)
    if rank == 0:
        (run.out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    net = torch.nn.parallel.DistributedDataParallel(model) if ddp else model
    if tc.compile:
        net = torch.compile(net, dynamic=True)
    sampler = make_sampler(run.step)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"training {n_params / 1e6:.2f}M parameters on {what} ({device}), steps {run.step}->{tc.steps}")
    run.buffer_rng.manual_seed(tc.seed * 1000 + rank + run.step)
    if run.step == 0 and rank == 0:  # the untrained model's figure, so every curve shows where it started
        run.history.append({**evaluate(model, val, cfg.model.alpha, device, run.val_buffer), "step": 0, "minutes": 0.0})
        log(val_line(run.history[0]))
    run.t0 = time.time()
    trace: list[str] | None = [] if args.trace else None
    if train_loop(run, net, sampler, ddp, trace):
        return 1
    if trace is not None:
        write_trace(run, trace)
    log(f"done: {run.step} steps, checkpoint {run.out / 'model.pt'}")
    if ddp:
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
