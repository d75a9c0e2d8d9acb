"""`python -m export.evaluate MODEL [--out DIR] [--precision fp32|int8] ...`: measure a shipped model.

MODEL is an export folder (weights/NAME) or a registered model name. The graphs run through pt_plugin,
with the runtime's own sampler; the protocol follows the model's signal (export.evaluate.report).
Writes metrics.json (carrying its protocol, so cards and model.json render from it alone) and
metrics.md into --out, plus the protocol's figures, and prints the Markdown.
"""
from __future__ import annotations

import argparse
import sys

from export.errors import UsageError, reports_errors
from export.evaluate.protocol import load_shipped
from export.evaluate.report import protocol_for, record


def parser() -> argparse.ArgumentParser:
    """Every protocol's options; each protocol reads the ones it needs (the help says which)."""
    p = argparse.ArgumentParser(prog="python -m export.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("model", help="an export folder (weights/NAME) or a registered model name")
    p.add_argument("--out", default="runs/eval")
    p.add_argument("--precision", default="fp32", choices=["fp32", "int8"], help="which graphs to measure")
    p.add_argument("--record", action="store_true",
                   help="write the figures into the measured folder's model.json (metrics; fp32 only); a bundled "
                        "model then needs python -m export.onnx.registry weights")
    p.add_argument("--sizes", help="comma-separated |S| values (default: the protocol's own)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data-dir", help="where the model's data set lives, when its spec does not say "
                                      "(default: the data set's own default)")
    p.add_argument("--images", type=int, default=256, help="images: seeded test images")
    p.add_argument("--samples", type=int, default=3, help="images, videos: samples per signal (0 = no sampling)")
    p.add_argument("--sample-images", type=int, default=16, help="images, videos: sample only the first N signals")
    p.add_argument("--autoregressive", type=int, help="images, videos: positions drawn per sample, the rest the mean "
                                                      "(default: the model's, Model.sample)")
    p.add_argument("--batch-size", type=int, help="images: sets per encoder call (default 32 gray, 4 RGB)")
    p.add_argument("--ridge", type=float, help="images: conditional-Gaussian covariance ridge (default: the "
                                               "protocol's, RGB: chosen on held-out training images)")
    p.add_argument("--gauss-train", type=int, default=0, help="images, videos: fit the Gaussian (images: and the kNN) "
                                                              "on the first N training signals (0 = all)")
    p.add_argument("--tune-images", type=int, default=32, help="images: held-out training images that tune "
                                                               "the baselines (gray: the kNN's τ)")
    p.add_argument("--curves", type=int, default=400, help="curves: evaluation curves per |S|")
    p.add_argument("--joint-samples", type=int, default=300, help="curves: samples per set for the joint check")
    p.add_argument("--joint-sets", type=int, default=6, help="curves: sets for the joint check (0 = skip it)")
    p.add_argument("--shapes", type=int, default=64, help="volumes: evaluation shapes per |S|")
    p.add_argument("--bank", type=int, default=2000, help="volumes: training shapes of the kNN posterior")
    p.add_argument("--solids", type=int, default=32, help="volumes: single solids (sphere, box, cylinder) per |S|, "
                                                          "scored in a table of their own (0 = skip them)")
    p.add_argument("--clips", type=int, default=64, help="videos: evaluation clips per |S|")
    return p


@reports_errors
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.record and args.precision != "fp32":
        raise UsageError("--record writes the fp32 figures into model.json; measure the int8 graphs without it")
    shipped = load_shipped(args.model, args.precision, args.threads)
    protocol = protocol_for(shipped)
    report = protocol.evaluate(shipped, args)
    print(protocol.markdown(report), end="")
    if args.record:
        print(f"recorded the figures in {record(shipped.model.path, report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
