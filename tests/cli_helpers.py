"""Running the `pt-plugin` command in-process from tests, and checking its refusals."""
from __future__ import annotations

import os
from pathlib import Path

from click.testing import CliRunner

from pt_plugin.cli import main


def cli(*args, cwd: Path | None = None, env: dict | None = None):
    """Run `pt-plugin ARGS` in-process (stderr is not a terminal here) in cwd; the click Result."""
    old = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        return CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)
    finally:
        os.chdir(old)


def refused(result, *needles: str) -> None:
    """A one-line refusal that names each needle, with no traceback."""
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.output, result.output
