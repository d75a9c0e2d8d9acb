"""Keeps a MODEL_CARD.md's measured tables in step with what the scripts measured.

`python -m export.tools.model_card CARD.md --metrics metrics.json --checkpoint CK.pt [--check]`

The card's prose is written by hand; the blocks between `<!-- generated: NAME -->` and
`<!-- end generated: NAME -->` are rendered from the export.evaluate report (each protocol renders its own
tables: export.evaluate.report.card_blocks) and from the checkpoint's validation history, run by run
("validation"), so a card cannot show numbers that no script produced. `--check` exits 1 when the
card differs from a fresh rendering (the tests run it on the bundled card).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import torch

from export.errors import DataError, UsageError, reports_errors
from export.evaluate.report import card_blocks

BEGIN, END = "<!-- generated: {} -->", "<!-- end generated: {} -->"


def minus(cell: str) -> str:
    """A typographic minus, as in the card's prose."""
    return cell.replace("-", "−")


def histories(ck: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """The validation history of each run behind a checkpoint, oldest first ([] where none was kept)."""
    return [r.get("history") or [] for r in ck.get("lineage", [])] + [ck.get("history") or []]


def validation_tables(ck: dict[str, Any], every: int = 2000) -> str:
    """Validation loss and NLL (nats per value) of each run, every `every` steps and at its last point."""
    out = []
    for i, hist in enumerate(histories(ck), 1):
        if not hist:
            out += [f"(run {i}: no validation history recorded)", ""]
            continue
        keep = [h for j, h in enumerate(hist) if h["step"] % every == 0 or j == len(hist) - 1]
        out += ["| run " + f"{i} step | " + " | ".join(str(h["step"]) for h in keep) + " |",
                "| --- |" + " --- |" * len(keep),
                "| val loss | " + " | ".join(f"{h['val_loss']:.3f}" for h in keep) + " |",
                "| val NLL | " + " | ".join(minus(f"{h['val_nll']:.2f}") for h in keep) + " |", ""]
    return "\n".join(out).rstrip()


def render(card: str, blocks: dict[str, str]) -> str:
    """The card with each generated block replaced; every block must already have its markers."""
    for name, body in blocks.items():
        begin, end = BEGIN.format(name), END.format(name)
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
        if not pattern.search(card):
            raise UsageError(f"the card has no '{begin}' … '{end}' block; add the markers where the "
                             f"{name} table belongs")
        card = pattern.sub(lambda _, text=f"{begin}\n{body}\n{end}": text, card, count=1)
    return card


def blocks_for(report: dict, ck: dict[str, Any] | None) -> dict[str, str]:
    """Every generated block of a card: the report's own (its protocol renders them) and the checkpoint's
    validation history."""
    blocks = dict(card_blocks(report))
    if ck is not None:
        blocks["validation"] = validation_tables(ck)
    return blocks


@reports_errors
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.tools.model_card", description=__doc__.splitlines()[0])
    p.add_argument("card", help="MODEL_CARD.md to update in place")
    p.add_argument("--metrics", required=True, help="metrics.json written by python -m export.evaluate")
    p.add_argument("--checkpoint", help="the checkpoint whose validation history to tabulate")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if the card is out of date")
    a = p.parse_args(argv)
    try:
        report = json.loads(Path(a.metrics).read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"--metrics {a.metrics}: {e}; expected the metrics.json of python -m "
                         "export.evaluate") from None
    try:
        ck = torch.load(a.checkpoint, map_location="cpu", weights_only=False) if a.checkpoint else None
    except (OSError, ValueError, RuntimeError, EOFError) as e:
        raise UsageError(f"--checkpoint {a.checkpoint}: {e}; expected a checkpoint of export.train") from None
    try:
        card = Path(a.card).read_text()
    except OSError as e:
        raise UsageError(f"{a.card}: {e}; expected the MODEL_CARD.md to update") from None
    try:
        blocks = blocks_for(report, ck)
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{a.metrics} or the checkpoint lacks {e}: expected the metrics.json of python -m "
                        "export.evaluate and a checkpoint of python -m export.train") from None
    new = render(card, blocks)
    if a.check:
        if new != card:
            print(f"{a.card} is out of date: run python -m export.tools.model_card without --check", file=sys.stderr)
            return 1
        print(f"{a.card} is up to date")
        return 0
    Path(a.card).write_text(new)
    print(f"updated {a.card}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
