"""The errors of the export package, and how every `python -m export.*` main reports them.

One hierarchy, kept apart so that no module imports another for its errors:

    ExportError             base: anything export/ refuses on purpose (a checkpoint that is not one, an
     │                      export folder that exists without --force, graphs that do not match torch)
     ├── ConfigError        a configuration that cannot work, found before any training starts
     │    └── PrecisionError  a precision or attention mode that is unknown or cannot run here
     ├── DataError          data that is missing or not what its format promises
     └── UsageError         an argument that does not fit (a count, a size list, a model of the wrong kind)

The subclasses are ValueErrors as well, as they always were. Every message says what was wrong and what
was expected. `reports_errors` wraps each CLI main: such an error (or a path that does not exist, or a
pt_plugin refusal) becomes one line `error: MESSAGE` on stderr and exit status 2, with no traceback.
"""
from __future__ import annotations

import functools
import sys
from collections.abc import Callable

EXIT_BAD_INPUT = 2


class ExportError(Exception):
    """Base class of every error export/ raises on purpose; raised itself when an export cannot be made."""


class ConfigError(ExportError, ValueError):
    """A configuration that cannot work, found before any training starts."""


class PrecisionError(ConfigError):
    """A precision that is not one of PRECISIONS, or bf16 asked for where it cannot run."""


class DataError(ExportError, ValueError):
    """Data that is missing or not what its format promises."""


class UsageError(ExportError, ValueError):
    """A command-line argument or call argument that does not fit (a count, a size list, the model's kind)."""


def reported(e: BaseException) -> bool:
    """Whether `reports_errors` turns e into one line and exit status 2: an error of this hierarchy, a path
    that does not exist, or a refusal of pt_plugin (looked up only once pt_plugin is imported: it is heavy)."""
    plugin = sys.modules.get("pt_plugin.errors")
    if isinstance(e, (ExportError, FileNotFoundError)):
        return True
    return plugin is not None and isinstance(e, plugin.PtPluginError)


def one_line(e: BaseException) -> str:
    """The message of e on one line."""
    return " ".join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__


def report(e: BaseException) -> int:
    """Print `error: MESSAGE` on one line to stderr; the exit status for bad input."""
    print(f"error: {one_line(e)}", file=sys.stderr)
    return EXIT_BAD_INPUT


def reports_errors(main: Callable[..., int]) -> Callable[..., int]:
    """Decorate a CLI main: an error of the hierarchy is reported on one line with exit status 2; the main's
    own return values (0, or 1 for a failed check) pass through unchanged."""
    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except Exception as e:
            if not reported(e):
                raise
            return report(e)
    return wrapper


def int_list(text: str, option: str) -> list[int]:
    """Comma-separated whole numbers given for `option` (e.g. --sizes 1,7,64); UsageError otherwise."""
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"{option} {text!r}: expected comma-separated whole numbers, e.g. 1,7,64") from None
