"""Shared helpers for the benchmarks: options, interleaved timing, peak memory, data, tables.

Timing: compared variants run in rotating round-robin order (round r starts at variant r), so
slow drifts of a shared, noisy machine fall on all of them alike; figures are medians. Run them
on an otherwise idle machine: the load average printed with each table says how busy it was.

Peak memory: `peak_growth` resets the kernel's peak-RSS mark (writing 5 to /proc/self/clear_refs),
takes the current RSS as the baseline, runs the work and reads the new peak (VmHWM; ru_maxrss
where /proc is missing, then with the pre-run peak as the baseline). Call it inside
`isolated(...)`, a freshly spawned interpreter per measurement, so that earlier runs' allocator
caches and onnxruntime arenas do not hide what this one needs. The figure is the growth over
a process that has already imported everything, loaded the model and built its inputs.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python benchmarks/X.py` puts benchmarks/, not the repository, on the path
    sys.path.insert(0, str(ROOT))

DEFAULT_MODEL_PATH = ROOT / "weights" / "fashion-mnist"
DEFAULT_CHECKPOINT = ROOT / "weights" / "checkpoints" / "fashion-mnist.pt"
DEFAULT_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")

T = TypeVar("T")


# -- options -----------------------------------------------------------------------------------
def parser(doc: str, checkpoint: bool = False) -> argparse.ArgumentParser:
    """Argument parser with the options every benchmark shares."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model-path", type=Path, default=DEFAULT_MODEL_PATH, help="ONNX export folder")
    if checkpoint:
        p.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT,
                       help="torch checkpoint of the same weights")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="Fashion-MNIST folder")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads (onnxruntime and torch alike)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where pt-plugin's sessions run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, metavar="OUT", help="also save the numbers as JSON")
    return p


def int_list(text: str) -> list[int]:
    """'16,256,2048' or '1e4,1e5' -> [16, 256, 2048] / [10000, 100000]."""
    return [int(float(x)) for x in text.split(",") if x.strip()]


def float_list(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def load_model(model_path: Path, threads: int, precision: str = "fp32", device: str = "cpu",
               io_binding: bool | None = None):
    """The pt-plugin model on `device` with `threads` intra-op threads (graphs of `precision`)."""
    import pt_plugin

    return pt_plugin.load(model_path=str(model_path), device=device, threads=threads, precision=precision,
                          io_binding=io_binding)


# -- timing ------------------------------------------------------------------------------------
def timer(fn: Callable[[], Any]) -> Callable[[], float]:
    """fn wrapped to return its wall time in seconds."""
    def run() -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
    return run


def interleave(variants: Mapping[str, Callable[[], T]], repeats: int | Mapping[str, int],
               warmup: int = 0, pause: float = 0.0, progress: bool = False) -> dict[str, list[T]]:
    """Call every variant `repeats` times (per variant if a mapping), rotating the order each round.

    Returns what each call returned, per variant. Warm-up calls (each variant, `warmup` times) are
    discarded. `pause` seconds of sleep before each call let the previous variant's spinning worker
    threads (onnxruntime, OpenMP) go idle, so they do not steal cores from the next one.
    """
    names = list(variants)
    want = {n: repeats[n] if isinstance(repeats, Mapping) else repeats for n in names}
    for _ in range(warmup):
        for n in names:
            variants[n]()
    out: dict[str, list[T]] = {n: [] for n in names}
    total, done = sum(want.values()), 0
    for r in range(max(want.values(), default=0)):
        shift = r % len(names)
        for n in names[shift:] + names[:shift]:
            if len(out[n]) < want[n]:
                time.sleep(pause)
                out[n].append(variants[n]())
                done += 1
                if progress:
                    log(f"  [{done}/{total}] {n}: {out[n][-1]}")
    return out


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if len(xs) else math.nan


def mean_se(xs: Sequence[float]) -> tuple[float, float]:
    """Mean and its standard error (nan with fewer than two values)."""
    a = np.asarray(xs, np.float64)
    if a.size == 0:
        return math.nan, math.nan
    se = float(a.std(ddof=1) / math.sqrt(a.size)) if a.size > 1 else math.nan
    return float(a.mean()), se


# -- peak memory -------------------------------------------------------------------------------
@dataclass
class Measured:
    """One measured call: wall seconds and peak RSS growth in MiB."""
    seconds: float
    peak_mib: float

    def __str__(self) -> str:
        return f"{self.seconds:.3f} s, +{self.peak_mib:.1f} MiB"


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _maxrss_kib() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r // 1024 if sys.platform == "darwin" else r  # bytes on macOS, KiB on Linux


def peak_growth(fn: Callable[[], Any]) -> Measured:
    """Time fn and measure how far it raises this process's peak RSS (see the module docstring)."""
    if _reset_peak() and _status_kib("VmRSS") is not None:
        base, peak = _status_kib("VmRSS"), lambda: _status_kib("VmHWM")
    else:
        base, peak = _maxrss_kib(), _maxrss_kib
    t0 = time.perf_counter()
    fn()
    seconds = time.perf_counter() - t0
    return Measured(seconds, max(0, peak() - base) / 1024)


def isolated(fn: Callable[..., T], *args: Any) -> T:
    """fn(*args) in a freshly spawned interpreter (fn must be a module-level function)."""
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


# -- data --------------------------------------------------------------------------------------
def test_images(n: int, data_dir: Path = DEFAULT_DATA_DIR, start: int = 0) -> np.ndarray:
    """Fashion-MNIST test images start..start+n, [n, 28, 28, 1] float32 in [0, 1]."""
    from export.datasets.images import load_idx_images

    return load_idx_images(data_dir, "test")[start:start + n]


def model_test_images(model, n: int, data_dir: Path = DEFAULT_DATA_DIR, start: int = 0) -> np.ndarray:
    """Test images start..start+n [n, H, W, C] in [0, 1] of an image model's data: the emoji test folder (emoji
    never seen in training; by file name) for an RGB model, Fashion-MNIST's test split for a gray one."""
    if model.val_dim == 3:
        from export.datasets.images import load_image_folder

        return load_image_folder(ROOT / "data" / "emoji" / "test", 3, tuple(model.grid))[start:start + n]
    return test_images(n, data_dir, start)


def observed_sets(images: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(positions, values) of k random pixels of each image; image i uses seed + i."""
    import pt_plugin

    return [pt_plugin.observe_random(img, k, seed + i) for i, img in enumerate(images)]


def demo_observation(model, shape: tuple[int, ...], k: int, seed: int):
    """k random cells of the model's demo signal on `shape` (uniform values when it has no gridded demo)."""
    from pt_plugin.grids import grid_positions

    rng = np.random.default_rng(seed)
    cells = grid_positions(*shape)
    demo = Path(model.path) / "demo.npz"
    truth = np.load(demo).get("truth") if demo.is_file() else None
    if truth is not None and truth.shape[:-1] == shape:
        values = truth.reshape(len(cells), -1)
    else:
        values = rng.uniform(*model.value_range, (len(cells), model.val_dim)).astype(np.float32)
    idx = rng.choice(len(cells), k, replace=False)
    return cells[idx], values[idx]


def free_pixels(positions: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bool [H*W]: pixels whose centre holds no observed sample (those sample_images draws)."""
    from pt_plugin.images import pixel_index

    pixel, on_centre = pixel_index(positions, h, w)
    free = np.ones(h * w, bool)
    free[pixel[on_centre]] = False
    return free


# -- output ------------------------------------------------------------------------------------
def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def fmt(x: float | None, digits: int = 3) -> str:
    """A number for a table cell: `digits` significant digits (whole numbers when larger), '-' if missing."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if abs(x) >= 10 ** digits:
        return f"{x:.0f}"
    return f"{x:.{digits}g}"


def fmt_se(x: float, se: float, digits: int = 3) -> str:
    return fmt(x, digits) if math.isnan(se) else f"{fmt(x, digits)} ± {fmt(se, 2)}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table, numbers right-aligned."""
    cells = [list(map(str, headers))] + [list(map(str, r)) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.rjust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|"
    return "\n".join([line(cells[0]), sep] + [line(r) for r in cells[1:]])


def machine_line(threads: int) -> str:
    """Where and under what load the numbers were taken."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average {load}, "
            f"{threads} threads, Python {platform.python_version()}")


def matmul_gflops(n: int = 1024, repeats: int = 5) -> float:
    """Best GFLOP/s of a float32 n x n numpy matrix product here: a yardstick for how busy a run keeps the cores."""
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), np.float32), rng.random((n, n), np.float32)
    a @ b
    best = min(timer(lambda: a @ b)() for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def encoder_flops(arch: dict, k: int) -> float:
    """Matrix-product FLOPs of one encoder pass over k samples (batch 1), from model.json's architecture.

    Per layer: Q, K, V and output projections and the feed-forward (2 k (4 d² + 2 d ffn)), and the
    attention products Q Kᵀ and A V (4 k² d); embeddings, layer norms and softmax left out.
    """
    d, f = arch["d_model"], arch["ffn"]
    return float(arch["enc_layers"] * (2 * k * (4 * d * d + 2 * d * f) + 4 * k * k * d))


def decoder_flops(arch: dict, k: int, m: int) -> float:
    """Matrix-product FLOPs of one decoder call for m queries over k encoded samples (batch 1).

    Per layer: the queries' Q and output projections and feed-forward (2 m (2 d² + 2 d ffn)), the
    memory's K and V (2 k 2 d²) and the attention products (4 m k d); the output head left out.
    """
    d, f = arch["d_model"], arch["ffn"]
    return float(arch["dec_layers"] * (2 * m * (2 * d * d + 2 * d * f) + 2 * k * 2 * d * d + 4 * m * k * d))


def save_json(path: Path | None, payload: dict) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_plain(payload), indent=2) + "\n")
        log(f"wrote {path}")


def _plain(o: Any) -> Any:
    """Strict-JSON form: numpy to lists/numbers, NaN to null, paths and other objects to strings."""
    if isinstance(o, dict):
        return {str(k): _plain(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_plain(v) for v in o]
    if hasattr(o, "tolist"):
        return _plain(o.tolist())
    if isinstance(o, float):
        return None if math.isnan(o) or math.isinf(o) else o
    if o is None or isinstance(o, (bool, int, str)):
        return o
    return str(o)
