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
from pathlib import Path

import torch

from export import precision
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
def evaluate(model: PixelTransformer, batches, alpha: float, device) -> dict[str, float]:
    model.eval()
    loss = nll = 0.0
    for spos, sval, mask, qpos, qval in batches:
        spos, sval, mask, qpos, qval = (t.to(device) for t in (spos, sval, mask, qpos, qval))
        mix = model(spos, sval, mask, qpos)
        loss += mix.loss(qval, alpha).mean().item()
        nll += -mix.log_prob(qval).mean().item()
    model.train()
    return {"val_loss": loss / len(batches), "val_nll": nll / len(batches)}


def save(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)  # a crash mid-write never leaves a broken checkpoint


@reports_errors
def main(argv=None) -> int:
    cfg, args = parse_args(argv)
    tc = cfg.train
    ddp = "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1
    rank = 0
    if ddp:
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        rank = torch.distributed.get_rank()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    if tc.threads:
        torch.set_num_threads(tc.threads)
    torch.manual_seed(tc.seed + rank)
    log = (lambda *a: print(*a, flush=True)) if rank == 0 else (lambda *a: None)
    prec, why = precision.choose(tc.precision, device)
    fuse_from = precision.fused_attention(tc.attention, prec, device)
    log(f"precision {prec} ({why}), {precision.describe_attention(fuse_from)}")

    make_sampler, val, what = data_sources(cfg, rank)
    out = Path(tc.out)
    out.mkdir(parents=True, exist_ok=True)
    model = PixelTransformer(cfg.model).to(device).fuse_attention(fuse_from)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    step, history, minutes_before, lineage = 0, [], 0.0, []
    if args.resume and (out / "last.pt").is_file():
        ck = torch.load(out / "last.pt", map_location=device, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        step, history = ck["step"], ck.get("history", [])
        minutes_before, lineage = ck.get("minutes", 0.0), ck.get("lineage", [])
        log(f"resumed from {out / 'last.pt'} at step {step}")
    elif args.init:
        init = torch.load(args.init, map_location=device, weights_only=False)
        model.load_state_dict(init["model"])
        # the runs these weights went through before, oldest first, so exports can report all the training
        lineage = init.get("lineage", []) + [{"init": str(args.init), "steps": init.get("step"),
                                              "minutes": init.get("minutes"), "history": init.get("history", [])}]
        log(f"initialised from {args.init}")
    if rank == 0:
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    net = torch.nn.parallel.DistributedDataParallel(model) if ddp else model
    if tc.compile:
        net = torch.compile(net, dynamic=True)

    sampler = make_sampler(step)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"training {n_params / 1e6:.2f}M parameters on {what} ({device}), steps {step}->{tc.steps}")

    def checkpoint(metrics=None):
        if rank:
            return
        state = {"config": cfg.to_dict(), "model": model.state_dict(), "step": step, "history": history,
                 "minutes": elapsed(), "lineage": lineage, "precision": prec}
        save(out / "last.pt", {**state, "optimizer": opt.state_dict()})
        save(out / "model.pt", {**state, "metrics": metrics or (history[-1] if history else {})})

    if step == 0 and rank == 0:  # the untrained model's figure, so every curve shows where it started
        history.append({**evaluate(model, val, cfg.model.alpha, device), "step": 0, "minutes": 0.0})
        log(f"val step 0 loss {history[0]['val_loss']:.4f} nll {history[0]['val_nll']:.4f} nats/value")
    t0, tlast, running = time.time(), time.time(), 0.0
    trace: list[str] = []

    def elapsed() -> float:
        """Training minutes so far, over resumes."""
        return minutes_before + (time.time() - t0) / 60

    def validate() -> None:
        """Validation NLL of the weights now, into the history, the log and a checkpoint."""
        m = evaluate(model, val, cfg.model.alpha, device)
        m.update(step=step, minutes=round(elapsed(), 2))
        history.append(m)
        log(f"val step {step} loss {m['val_loss']:.4f} nll {m['val_nll']:.4f} nats/value")
        checkpoint(m)

    while step < tc.steps:
        minutes = rank0_minutes(elapsed(), ddp, device)
        for grp in opt.param_groups:
            grp["lr"] = lr_at(step, tc, minutes)
        spos, sval, mask, qpos, qval = (t.to(device) for t in sampler.batch())
        with precision.autocast(prec, device):  # the blocks in bf16; model.full_precision keeps the islands fp32
            mix = net(spos, sval, mask, qpos)
        loss = mix.loss(qval, cfg.model.alpha).mean()
        if not torch.isfinite(loss):
            print(f"error: non-finite loss at step {step}; lower --lr", file=sys.stderr)
            return 1
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        step += 1
        if args.trace:
            trace.append(hashlib.sha256(spos.cpu().numpy().tobytes()).hexdigest()[:16])
        running += loss.item()
        if step % tc.log_every == 0:
            now = time.time()
            log(f"step {step} loss {running / tc.log_every:.4f} lr {lr_at(step, tc, elapsed()):.2e} "
                f"{tc.log_every / (now - tlast):.2f} steps/s |S|={spos.shape[1]}")
            running, tlast = 0.0, now
        if step % tc.val_every == 0 or step == tc.steps:
            validate()
        elif step % tc.ckpt_every == 0:
            checkpoint()
        if tc.max_minutes and minutes > tc.max_minutes:
            log(f"stopping after {tc.max_minutes} minutes at step {step}")
            break
    if history and history[-1]["step"] != step:  # stopped on time between validations: the final weights' figure
        validate()
    else:
        checkpoint()
    if args.trace:
        params = torch.cat([p.detach().reshape(-1).cpu() for p in model.parameters()]).numpy()
        (out / f"trace-rank{rank}.json").write_text(json.dumps({
            "rank": rank, "world_size": int(os.environ.get("WORLD_SIZE", 1)), "batches": trace, "step": step,
            "params_sha256": hashlib.sha256(params.tobytes()).hexdigest()}))
    log(f"done: {step} steps, checkpoint {out / 'model.pt'}")
    if ddp:
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
