"""onnxruntime sessions: provider choice with honest fallback, thread settings, one place.

device "auto" uses CUDA only where it really works and otherwise logs once, at INFO level on the
"pt_plugin" logger, why it runs on the CPU (quiet by default: `pt-plugin info` prints the CUDA
state, and device="cuda" raises DeviceError naming what is missing); "cpu" never touches CUDA.
A broken onnxruntime install raises OnnxruntimeError with the command that repairs it.
"""
from __future__ import annotations

import ctypes
import importlib.metadata as md
import logging
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Sequence

import onnxruntime as ort

from . import inputs
from .errors import DeviceError, InputError, OnnxruntimeError

ORT_API = ("InferenceSession", "SessionOptions", "get_available_providers", "GraphOptimizationLevel")
PACKAGE_DIR = str(Path(__file__).resolve().parent)

# the oldest onnxruntime that runs opset-20 fp32 graphs (IR version 10): what a model.json without
# requires_onnxruntime needs; opset-23 exports (standard Attention nodes) record "1.23" there
MIN_ONNXRUNTIME = "1.18"

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
DEVICES = ("auto", "cpu", "cuda")


def installed_onnxruntime_packages() -> list[str]:
    """Distributions that provide the `onnxruntime` module (more than one overwrite each other)."""
    found = []
    for dist in ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino"):
        try:
            found.append(f"{dist} {md.version(dist)}")
        except md.PackageNotFoundError:
            pass
    return found


def version_tuple(text: str) -> tuple[int, ...]:
    """"1.22.0" -> (1, 22, 0): the leading dotted numbers ("1.23.0.dev20250101" -> (1, 23, 0))."""
    leading = re.match(r"\d+(?:\.\d+)*", text)
    return tuple(int(x) for x in leading.group(0).split(".")) if leading else ()


def ort_version() -> str:
    """The installed onnxruntime's version string."""
    return ort.__version__


def require_onnxruntime(required: str, what: str, instead: str = ", or use precision='fp32'") -> None:
    """InputError naming `what` (e.g. "the int8 graphs of X, which use ...") when the installed onnxruntime
    is older than `required` ("1.22"): a clear message instead of a failure inside session creation."""
    if version_tuple(ort.__version__) < version_tuple(required):
        raise InputError(f"{what} need onnxruntime >= {required}; this is onnxruntime {ort.__version__}: upgrade "
                         f"onnxruntime-gpu{instead}")


def onnxruntime_problem() -> str | None:
    """What is missing from the imported onnxruntime module, or None when it looks whole."""
    missing = [name for name in ORT_API if not hasattr(ort, name)]
    if not missing:
        return None
    where = getattr(ort, "__file__", None) or ", ".join(getattr(ort, "__path__", [])) or "?"
    pkgs = ", ".join(installed_onnxruntime_packages()) or "no onnxruntime package recorded"
    return (f"onnxruntime is broken (`import onnxruntime` from {where} lacks {', '.join(missing)}; installed: {pkgs}), "
            "typically left by uninstalling one of two onnxruntime packages; repair it with: pip uninstall -y "
            "onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu (or onnxruntime for CPU only)")


def check_onnxruntime() -> None:
    """Raise OnnxruntimeError (one line with the fix) where the onnxruntime install is broken."""
    problem = onnxruntime_problem()
    if problem is not None:
        raise OnnxruntimeError(problem)


def cuda_driver_problem() -> str | None:
    """Why CUDA cannot be used here, or None when it looks usable."""
    check_onnxruntime()
    if CUDA not in ort.get_available_providers():
        return (f"the installed onnxruntime ({', '.join(installed_onnxruntime_packages()) or ort.__version__}) "
                "has no CUDA provider; install onnxruntime-gpu instead of onnxruntime")
    try:
        ctypes.CDLL("libcuda.so.1" if os.name != "nt" else "nvcuda.dll")
    except OSError:
        return "no NVIDIA driver found (libcuda could not be loaded): this machine has no usable GPU"
    return None


def thread_count(threads: int | None) -> int:
    """threads argument, else PT_PLUGIN_THREADS, else OMP_NUM_THREADS, else 0 (onnxruntime's default).

    One rule for all three: an integer from 0 to inputs.MAX_THREADS (0 = onnxruntime's default)."""
    if threads is not None:
        return inputs.threads(threads)
    for var in ("PT_PLUGIN_THREADS", "OMP_NUM_THREADS"):
        val = os.environ.get(var, "").strip()
        if val:
            try:
                number = int(val)
            except ValueError:
                number = val
            return inputs.threads(number, f"{var}={val!r}")
    return 0


def resolve_providers(device: str, providers: Sequence | None) -> list:
    """The provider list to ask for, given device= or explicit providers=."""
    if providers is not None:
        return list(providers)
    if device not in DEVICES:
        raise InputError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "cpu":
        return [CPU]
    problem = cuda_driver_problem()
    if problem is None:
        return [CUDA, CPU]
    if device == "cuda":
        raise DeviceError(f"device='cuda' asked for, but {problem}")
    if CUDA in ort.get_available_providers():  # a GPU build without a GPU: say once why the CPU is used
        _note_cpu_fallback(problem)
    return [CPU]


_noted_fallback = False


def _note_cpu_fallback(reason: str) -> None:
    global _noted_fallback
    if not _noted_fallback:
        _noted_fallback = True
        # INFO: quiet unless the application configures logging ("pt-plugin info" prints the CUDA state itself)
        logging.getLogger("pt_plugin").info("pt-plugin runs on the CPU: %s", reason)


_preloaded = False
_warned_dual = False


def _preload_dlls() -> None:
    """Let onnxruntime find CUDA/cuDNN from pip packages (onnxruntime >= 1.21), once."""
    global _preloaded
    if not _preloaded and hasattr(ort, "preload_dlls"):
        _preloaded = True
        try:
            ort.preload_dlls()
        except Exception:  # noqa: BLE001 - a failed preload only means CUDA will be refused below
            pass


def user_stacklevel() -> int:
    """stacklevel for warnings.warn called by our caller, pointing at the first frame outside pt_plugin."""
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(PACKAGE_DIR + os.sep):
        frame, level = frame.f_back, level + 1
    return level


def _warn_dual_install() -> None:
    """Warn once per process when several onnxruntime packages are installed (they overwrite each other)."""
    global _warned_dual
    if _warned_dual:
        return
    pkgs = installed_onnxruntime_packages()
    if len(pkgs) > 1:
        _warned_dual = True
        warnings.warn(f"several onnxruntime packages are installed ({', '.join(pkgs)}); they overwrite each "
                      "other's files. Keep one: pip uninstall the others and reinstall the one you want.",
                      RuntimeWarning, stacklevel=user_stacklevel())


# onnxruntime rewrites x·s @ Kᵀ (the attention scale on q) as one FusedMatMul with alpha = s; on the CPU a product
# of one query row with alpha != 1 misses MLAS's fast path and reads the keys 2-3x slower. step.onnx computes exactly
# that over every cached key, so its sessions keep the scale as its own Mul on q (benchmarks/step_floor.py:
# moving-fashion's step over 8,192 cached tokens 2.2x faster, fashion-mnist's at batch 16 1.3x; outputs within 2e-6)
ONE_QUERY_DISABLED_OPTIMIZERS = ("MatMulScaleFusion",)


def make_session(path: Path, device: str = "auto", providers: Sequence | None = None,
                 threads: int | None = None, profile_prefix: str | None = None,
                 disabled_optimizers: Sequence[str] = ()) -> ort.InferenceSession:
    """One InferenceSession with the asked providers, checked against those actually in use.

    profile_prefix turns on onnxruntime's profiler, its JSON trace written from that file prefix
    (sess.end_profiling() returns the name; benchmarks/profile_graphs.py reads it). disabled_optimizers: onnxruntime
    graph rewrites to leave out (ONE_QUERY_DISABLED_OPTIMIZERS for graphs of one query row per product).
    """
    check_onnxruntime()
    _warn_dual_install()
    wanted = resolve_providers(device, providers)
    names = [p[0] if isinstance(p, tuple) else p for p in wanted]
    if CUDA in names:
        _preload_dlls()
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.inter_op_num_threads = 1
    # encoder and decoder each own a thread pool; spinning pools would steal the cores from each other
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.intra_op_num_threads = thread_count(threads)
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if profile_prefix is not None:
        so.enable_profiling, so.profile_file_prefix = True, profile_prefix
    quiet = CUDA in names  # a failing CUDA provider logs pages of errors; our own check below says it in one line
    if quiet:
        ort.set_default_logger_severity(4)
    try:
        sess = ort.InferenceSession(str(path), so, providers=wanted, disabled_optimizers=list(disabled_optimizers))
    finally:
        if quiet:
            ort.set_default_logger_severity(2)  # onnxruntime's default (warnings)
    used = sess.get_providers()
    missing = [n for n in names if n not in used]
    if missing:
        msg = (f"{', '.join(missing)} could not be initialised for {path.name} (CUDA and cuDNN libraries "
               "matching onnxruntime-gpu are needed; `pt-plugin info` shows what is found)")
        if device == "cuda" and providers is None:
            raise DeviceError(msg)
        warnings.warn(f"{msg}; running on {', '.join(used)}", RuntimeWarning, stacklevel=user_stacklevel())
    return sess
