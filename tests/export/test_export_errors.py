"""One export error hierarchy; every `python -m export.*` main reports bad input on one line, exit 2."""
from __future__ import annotations

import subprocess
import sys

import pytest

from export import checkpoint, config, errors, precision
from export.datasets import images as data
from export.onnx import graphs as onnx
from export.quantize import parity


def test_every_export_error_is_an_export_error():
    for cls in (config.ConfigError, data.DataError, precision.PrecisionError, onnx.ExportError,
                parity.ExportError, checkpoint.ExportError, errors.UsageError):
        assert issubclass(cls, errors.ExportError), cls
    for cls in (config.ConfigError, data.DataError, precision.PrecisionError, errors.UsageError):
        assert issubclass(cls, ValueError), cls  # as they always were: callers that catch ValueError still do
    assert config.ConfigError is errors.ConfigError and data.DataError is errors.DataError
    assert onnx.ExportError is checkpoint.ExportError is errors.ExportError


def test_bare_refusals_are_export_errors():
    from export.datasets.curves import family
    from export.onnx.signal import signal_for

    with pytest.raises(errors.ConfigError, match="expected one of"):
        family("no-such-family")
    with pytest.raises(errors.UsageError, match="signal kind must be one of"):
        signal_for(None, 2, 1, None, (0.0, 1.0), kind="sound")
    with pytest.raises(errors.UsageError, match="expected comma-separated whole numbers"):
        errors.int_list("1,x", "--sizes")


def test_reports_errors_passes_return_values_and_other_exceptions():
    @errors.reports_errors
    def fine(argv=None):
        return 1

    @errors.reports_errors
    def bug(argv=None):
        raise ZeroDivisionError("internal")

    assert fine() == 1
    with pytest.raises(ZeroDivisionError):
        bug()


def _refused(capsys, code: int) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("module, argv, needle", [
    ("export.onnx.graphs", ["{tmp}/missing.pt", "--out", "{tmp}/out"], "checkpoint not found"),
    ("export.tools.demo", ["{tmp}/missing.pt", "--out", "{tmp}/out"], "checkpoint not found"),
    ("export.tools.diagnose", ["{tmp}/missing.pt"], "checkpoint not found"),
    ("export.evaluate.__main__", ["{tmp}/missing"], "expected an exported model folder"),
    ("export.quantize.__main__", ["{tmp}"], "is not an export folder"),
    ("export.onnx.registry", ["{tmp}/nowhere"], "is not a folder"),
    ("export.datasets.images", ["nothing"], "no such recipe"),
    ("export.datasets.emoji", ["--out", "{tmp}/e", "--size", "99"], "--size must be in 1..64"),
    ("export.tools.model_card", ["{tmp}/card.md", "--metrics", "{tmp}/none.json"], "expected the metrics.json"),
    ("export.tools.palette", ["--data", "nosuch:thing", "--test", "nosuch:thing"], ""),
    ("export.train", ["--data", "nosuch:thing", "--steps", "1", "--out", "{tmp}/run"], ""),
])
def test_mains_refuse_bad_input_on_one_line(tmp_path, capsys, module, argv, needle):
    import importlib

    main = importlib.import_module(module).main
    line = _refused(capsys, main([a.format(tmp=tmp_path) for a in argv]))
    assert needle in line


def test_a_refusal_from_the_command_line_is_one_line_without_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "export.onnx.graphs", str(tmp_path / "missing.pt"), "--out",
                        str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().startswith("error: checkpoint not found") and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
