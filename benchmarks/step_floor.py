"""Where a cached exact step's time goes, against the time the speed targets leave it (issue 32).

Part 1, the floor: the model's step.onnx alone, one new token and one query per sample, over caches of T
tokens (random keys and values, every slot real), at batch 1 and --batch; milliseconds per call, in a
session as pt_plugin makes it and in one where onnxruntime fuses the attention scale into the score
product (FusedMatMul alpha, the default before; pt_plugin.sessions.ONE_QUERY_DISABLED_OPTIMIZERS). Beside
it, in the same run, on the model's grid from --observed cells of its demo signal: the mean signal, and
the whole samplers in milliseconds per drawn position and sample: cached exact (`sample_grid(cache=True)`,
every free cell drawn) and the f = 0.1 re-encoding sampler. fashion-mnist's target asks cached exact to
take no longer than f = 0.1, so f = 0.1's figure is what one step may cost, graph call, draw and
re-encodings together (the budget). With --target-x-mean X (moving-fashion: 60) the budget is X times the
mean signal's time over the free positions, and the samplers are not run.

Part 2, the cache precision: the attention-score products q·Kᵀ of every layer over the key caches alone
(the model's layers and heads, one query per sample), with the caches stored as float32 (FusedMatMul,
what step.onnx does today), as float16 cast to float32 in the graph, and as int8 (one scale per layer,
MatMulInteger with q quantised on the fly); milliseconds per call and the ratio to float32. These are the
levers the issue names for steps bound by reading the caches.

Every variant runs interleaved with the others (common.interleave), medians of --repeats rounds of
--calls calls each.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import common

ROOT = Path(__file__).resolve().parents[1]


def _session(model_bytes_or_path, threads: int, disabled_optimizers: tuple[str, ...] = ()):
    from pt_plugin.sessions import make_session

    if isinstance(model_bytes_or_path, Path):
        return make_session(model_bytes_or_path, "cpu", threads=threads, disabled_optimizers=disabled_optimizers)
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level, so.intra_op_num_threads, so.inter_op_num_threads = 3, threads, 1
    return ort.InferenceSession(model_bytes_or_path, so, providers=["CPUExecutionProvider"])


def step_feeds(meta: dict, batch: int, tokens: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """step.onnx inputs for one new token and one query per sample over caches of `tokens` tokens."""
    layout = meta["cache"]["layout"]
    heads, dh, pos_dim, val_dim = layout["heads"], layout["head_dim"], int(meta["pos_dim"]), int(meta["val_dim"])
    feeds: dict[str, np.ndarray] = {}
    for name in meta["cache"]["step"]["inputs"]:
        if name == "cache_mask":
            feeds[name] = np.ones((batch, tokens), bool)
        elif name in ("token_positions", "query_positions"):
            feeds[name] = rng.random((batch, 1, pos_dim), np.float32)
        elif name == "token_values":
            feeds[name] = rng.random((batch, 1, val_dim), np.float32)
        else:
            feeds[name] = rng.standard_normal((batch, heads, tokens, dh)).astype(np.float32)
    return feeds


def _graph(nodes, inputs: dict[str, np.ndarray], outputs: list[str]) -> bytes:
    from onnx import TensorProto, helper

    g = helper.make_graph(nodes, "scores", [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype),
                                                                          list(a.shape)) for n, a in inputs.items()],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 20), helper.make_opsetid("com.microsoft", 1)])
    m.ir_version = 9
    return m.SerializeToString()


def score_variants(layers: int, batch: int, heads: int, tokens: int, dh: int, rng: np.random.Generator):
    """{name: (graph bytes, feeds)} of q·Kᵀ over `layers` key caches in three precisions."""
    from onnx import TensorProto, helper

    q = rng.standard_normal((batch, heads, 1, dh)).astype(np.float32)
    keys = [rng.standard_normal((batch, heads, tokens, dh)).astype(np.float32) for _ in range(layers)]
    outs = [f"s{i}" for i in range(layers)]
    f32 = {"q": q, **{f"k{i}": k for i, k in enumerate(keys)}}
    fused = [helper.make_node("FusedMatMul", ["q", f"k{i}"], [f"s{i}"], domain="com.microsoft", transB=1)
             for i in range(layers)]
    f16 = {"q": q, **{f"k{i}": k.astype(np.float16) for i, k in enumerate(keys)}}
    cast = [n for i in range(layers) for n in (
        helper.make_node("Cast", [f"k{i}"], [f"c{i}"], to=TensorProto.FLOAT),
        helper.make_node("FusedMatMul", ["q", f"c{i}"], [f"s{i}"], domain="com.microsoft", transB=1))]
    scales = [float(np.abs(k).max() / 127) for k in keys]
    i8 = {"q": q, **{f"k{i}": np.ascontiguousarray(np.round(k / s).astype(np.int8).swapaxes(-1, -2))
                     for i, (k, s) in enumerate(zip(keys, scales))}}
    integer = [helper.make_node("DynamicQuantizeLinear", ["q"], ["qq", "qs", "qz"])]
    for i, s in enumerate(scales):
        integer += [helper.make_node("MatMulInteger", ["qq", f"k{i}", "qz"], [f"m{i}"]),
                    helper.make_node("Cast", [f"m{i}"], [f"f{i}"], to=TensorProto.FLOAT),
                    helper.make_node("Mul", [f"f{i}", "qs"], [f"u{i}"]),
                    helper.make_node("Mul", [f"u{i}", f"ks{i}"], [f"s{i}"])]
        i8[f"ks{i}"] = np.array(s, np.float32)
    return {"float32": (_graph(fused, f32, outs), f32), "float16 + Cast": (_graph(cast, f16, outs), f16),
            "int8 MatMulInteger": (_graph(integer, i8, outs), i8)}


def time_calls(fn, calls: int) -> float:
    """Milliseconds per call of fn over `calls` calls."""
    return common.timer(lambda: [fn() for _ in range(calls)])() / calls * 1e3


def floor_part(a, meta: dict, rng) -> tuple[list[list[str]], dict]:
    from pt_plugin.sampling import ALL_POSITIONS
    from pt_plugin.sessions import ONE_QUERY_DISABLED_OPTIMIZERS

    steps = {"": _session(a.model_path / "step.onnx", a.threads, ONE_QUERY_DISABLED_OPTIMIZERS),
             ", scale fused (before)": _session(a.model_path / "step.onnx", a.threads)}
    model = common.load_model(a.model_path, a.threads)
    shape = tuple(model.grid)
    pos, val = common.demo_observation(model, shape, a.observed, a.seed)
    free = int(np.prod(shape)) - len(pos)
    variants, labels = {}, {}
    for b in sorted({1, a.batch}):
        for t in common.int_list(a.tokens):
            feeds = step_feeds(meta, b, t, rng)
            for how, step in steps.items():
                step.run(None, feeds)
                key = f"step b{b} T{t}{how}"
                variants[key] = lambda s=step, f=feeds: time_calls(lambda: s.run(None, f), a.calls)
                labels[key] = (f"step.onnx, batch {b}, T = {t}{how}", b)

    def per_position(cache: bool, fraction: float):
        def run() -> float:
            secs = common.timer(lambda: model.sample_grid(pos, val, shape, 1, a.seed, cache=cache,
                                                          step_fraction=fraction, autoregressive=ALL_POSITIONS))()
            return secs / free * 1e3
        return run

    model.mean_grid(pos, val, shape)  # warm up
    variants["mean"] = lambda: common.timer(lambda: model.mean_grid(pos, val, shape))() * 1e3
    labels["mean"] = ("the mean signal (one encoder pass, the grid decoded), whole", 1)
    if a.target_x_mean is None:  # the first target: cached exact no slower than f = 0.1
        model.sample_grid(pos, val, shape, 1, a.seed, cache=True, step_fraction=0.0, autoregressive=ALL_POSITIONS)
        variants["cached exact"] = per_position(True, 0.0)
        labels["cached exact"] = (f"cached exact sampler, all in, per drawn position ({free} drawn)", 1)
        variants["re-encode f=0.1"] = per_position(False, 0.1)
        labels["re-encode f=0.1"] = ("re-encoding sampler f = 0.1, per drawn position: the budget", 1)
    got = common.interleave(variants, a.repeats)
    med = {k: common.median(v) for k, v in got.items()}
    if a.target_x_mean is None:
        budget = med["re-encode f=0.1"]
    else:  # an exact draw of every free position in at most X times the mean signal's time
        budget = a.target_x_mean * med["mean"] / free
        med["budget"] = budget
        labels["budget"] = (f"{a.target_x_mean:g} × the mean's time per free position ({free}): the budget", 1)
    rows = [[labels[k][0], common.fmt(ms), common.fmt(ms / labels[k][1]),
             "–" if k == "mean" else common.fmt(ms / labels[k][1] / budget)] for k, ms in med.items()]
    return rows, {"ms": med, "budget_ms_per_position": budget, "free_positions": free}


def precision_part(a, meta: dict, rng) -> tuple[list[list[str]], dict]:
    arch = meta["architecture"]
    layers, heads = int(arch["enc_layers"]) + int(arch["dec_layers"]), int(arch["n_heads"])
    dh = int(arch["d_model"]) // heads
    rows, out = [], {}
    for case in a.precision_cases.split(","):
        b, t = (int(x) for x in case.split("x"))
        variants, sessions = score_variants(layers, b, heads, t, dh, rng), {}
        for name, (graph, feeds) in variants.items():
            sessions[name] = (_session(graph, a.threads), feeds)
        ref = sessions["float32"][0].run(None, sessions["float32"][1])
        errs = {}
        for name, (s, feeds) in sessions.items():
            got = s.run(None, feeds)
            errs[name] = max(float(np.abs(g - r).max() / np.abs(r).max()) for g, r in zip(got, ref))
        times = common.interleave({n: (lambda s=s, f=f: time_calls(lambda: s.run(None, f), a.calls))
                                   for n, (s, f) in sessions.items()}, a.repeats)
        med = {n: common.median(v) for n, v in times.items()}
        mib = layers * b * heads * t * dh * 4 / 2**20
        for n, ms in med.items():
            rows.append([f"batch {b}, T = {t} ({mib:.0f} MiB of float32 keys)", n, common.fmt(ms),
                         common.fmt(med["float32"] / ms), common.fmt(errs[n], 2)])
        out[case] = {"ms": med, "relative_error": errs, "float32_mib": mib}
    return rows, out


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__)
    p.set_defaults(model_path=ROOT / "weights" / "fashion-mnist", threads=1)
    p.add_argument("--observed", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--tokens", default="8,100,400,800", help="cache sizes T of part 1")
    p.add_argument("--precision-cases", default="16x400,1x8192", help="BATCHxT cases of part 2")
    p.add_argument("--target-x-mean", type=float, default=None, metavar="X",
                   help="budget per position: X × the mean signal's time over the free positions (moving-fashion's "
                        "target is 60) instead of the f = 0.1 sampler's time per position (fashion-mnist's)")
    p.add_argument("--calls", type=int, default=50, help="calls per timed round")
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args(argv)
    meta = json.loads((a.model_path / "model.json").read_text())
    if "cache" not in meta:
        raise SystemExit(f"{a.model_path} has no cache graphs (python -m export.onnx.cache_graphs)")
    rng = np.random.default_rng(a.seed)
    print(f"{common.machine_line(a.threads)}; model {a.model_path.name}; medians of {a.repeats} interleaved rounds\n")
    floor_rows, floor = floor_part(a, meta, rng)
    print(common.table(["what", "ms per call", "ms per sample", "÷ budget"], floor_rows))
    print()
    prec_rows, prec = precision_part(a, meta, rng)
    print(common.table(["caches", "stored as", "ms per call", "speed-up over float32", "relative error"], prec_rows))
    common.save_json(a.json, {"machine": common.machine_line(a.threads), "model": a.model_path.name,
                              "floor": floor, "precision": prec})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
