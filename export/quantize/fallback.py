"""Mixed-precision int8: which quantized MatMuls go back to float32 when full int8 misses the parity gate.

Static int8 (export.quantize.static_int8) quantizes every MatMul with a constant weight. On some models
(the emoji palette model, the shapes SDF model) a few of them carry most of the error. This module
ranks them and puts back float32 on the fewest that bring the variant inside the gate:

1. `sensitivities`: for each quantized MatMul, the parity error of a graph pair where only that
   MatMul is int8 (graph surgery on the QDQ model: no recalibration, the activation scales are those
   of the full int8 model). Measured on sets of the calibration (training) split, so the choice never
   sees the held-out sets the gate runs on.
2. `choose_float_nodes`: adds the worst MatMuls to the float32 set in that order, doubling the count,
   until the full model (all others int8) scores at most SELECTION_TARGET of the gate on those training
   sets, then takes the smallest such prefix: the headroom is for the held-out sets (the shapes model
   at 0.85 of the gate on training sets measured 1.01 on held-out ones). At most MAX_FLOAT_SHARE of the
   quantized MatMuls go back; beyond that int8 is not worth shipping.
"""
from __future__ import annotations

import copy
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

MAX_FLOAT_SHARE = 0.34  # at most a third of the quantized MatMuls kept float32
SELECTION_TARGET = 0.8  # the training-set score (error / tolerance) a choice must reach

# (encoder path, decoder path) -> parity figures (export.quantize.parity.parity)
ParityFn = Callable[[Path, Path], dict[str, Any]]


def quantized_matmuls(qdq) -> list[str]:
    """MatMul nodes of a QDQ model that read a DequantizeLinear output (those quantization touched)."""
    dq_out = {o for n in qdq.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return [n.name for n in qdq.graph.node if n.op_type in ("MatMul", "Gemm") and any(i in dq_out for i in n.input)]


def keep_float(qdq, fp, names: set[str] | list[str]):
    """A copy of the QDQ model where the MatMuls in `names` read their float32 inputs (and weights) again;
    the Quantize/DequantizeLinear nodes and int8 weights no longer read are removed."""
    out = copy.deepcopy(qdq)
    fp_nodes = {n.name: n for n in fp.graph.node}
    fp_inits = {t.name: t for t in fp.graph.initializer}
    have = {t.name for t in out.graph.initializer}
    missing = set(names) - {n.name for n in out.graph.node}
    if missing:
        raise KeyError(f"no such MatMul in the quantized graph: {sorted(missing)}")
    for node in out.graph.node:
        if node.name in names:
            src = fp_nodes[node.name]
            del node.input[:]
            node.input.extend(src.input)
            for i in src.input:
                if i in fp_inits and i not in have:
                    out.graph.initializer.append(fp_inits[i])
                    have.add(i)
    _prune(out)
    return out


def _prune(model) -> None:
    """Remove nodes whose outputs nothing reads, then initializers nothing reads."""
    g = model.graph
    outputs = {o.name for o in g.output}
    while True:
        read = {i for n in g.node for i in n.input} | outputs
        dead = [n for n in g.node if not any(o in read for o in n.output)]
        if not dead:
            break
        for n in dead:
            g.node.remove(n)
    read = {i for n in g.node for i in n.input}
    for t in [t for t in g.initializer if t.name not in read]:
        g.initializer.remove(t)


def score(figures: dict[str, Any], tolerance: dict[str, float]) -> float:
    """The parity figures as one number: the largest figure/tolerance ratio (≤ 1 passes)."""
    return max(figures[k] / v for k, v in tolerance.items())


class Pair:
    """The float32 and QDQ models of both graphs, writing mixed variants to a scratch folder."""

    def __init__(self, fp_paths: tuple[Path, Path], qdq_paths: tuple[Path, Path]):
        import onnx

        self.fp = [onnx.load(str(p)) for p in fp_paths]
        self.qdq = [onnx.load(str(p)) for p in qdq_paths]
        self.names = [quantized_matmuls(m) for m in self.qdq]
        self.dir = Path(tempfile.mkdtemp(prefix="pt_int8_"))

    def all_names(self) -> list[tuple[int, str]]:
        return [(g, n) for g in (0, 1) for n in self.names[g]]

    def write(self, float_nodes: set[tuple[int, str]], tag: str) -> tuple[Path, Path]:
        """Encoder and decoder with `float_nodes` ((graph, name); graph 0 encoder, 1 decoder) in float32."""
        import onnx

        paths = []
        for g, role in enumerate(("encoder", "decoder")):
            names = {n for gg, n in float_nodes if gg == g}  # the QDQ model keeps its precision tag
            model = keep_float(self.qdq[g], self.fp[g], names) if names else self.qdq[g]
            path = self.dir / f"{role}.{tag}.onnx"
            onnx.save(model, str(path))
            paths.append(path)
        return paths[0], paths[1]

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def sensitivities(pair: Pair, parity: ParityFn, tolerance: dict[str, float]) -> list[tuple[float, int, str]]:
    """(score, graph, name) of every quantized MatMul alone in int8, worst first."""
    everything = set(pair.all_names())
    out = []
    for node in sorted(everything):
        enc, dec = pair.write(everything - {node}, "one")
        out.append((score(parity(enc, dec), tolerance), *node))
    return sorted(out, reverse=True)


def choose_float_nodes(pair: Pair, parity: ParityFn, tolerance: dict[str, float],
                       log: Callable[[str], None] = print,
                       target: float | None = None) -> list[tuple[int, str]] | None:
    """The fewest worst-ranked MatMuls to keep float32 so the rest scores at most `target` (default
    SELECTION_TARGET) of `tolerance` on `parity`'s sets, or None when more than MAX_FLOAT_SHARE of them
    would be needed."""
    target = SELECTION_TARGET if target is None else target
    ranked = sensitivities(pair, parity, tolerance)
    log("int8 sensitivity (score = parity error / tolerance with only that MatMul int8), worst first: " +
        ", ".join(f"{'enc' if g == 0 else 'dec'}:{n} {s:.2f}" for s, g, n in ranked[:8]))
    limit = int(MAX_FLOAT_SHARE * len(ranked))
    tried: dict[int, float] = {}

    def passes(k: int) -> bool:
        if k not in tried:
            enc, dec = pair.write({(g, n) for _, g, n in ranked[:k]}, f"k{k}")
            tried[k] = score(parity(enc, dec), tolerance)
            log(f"int8 with the {k} worst MatMuls in float32: score {tried[k]:.2f}")
        return tried[k] <= target

    k = 1
    while not passes(k):  # doubling, then bisect between the last failing and the first passing count
        if k >= limit:
            return None
        k = min(2 * k, limit)
    lo, hi = k // 2, k
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if passes(mid) else (mid, hi)
    return [(g, n) for _, g, n in ranked[:hi]]
