"""A weights/ tree served on 127.0.0.1 for tests of the pooch path: no internet, a real HTTP download."""
from __future__ import annotations

import functools
import http.server
import shutil
import threading
from pathlib import Path

from pt_plugin import weights


def serve(folder, files, tmp_path, monkeypatch) -> tuple[Path, http.server.ThreadingHTTPServer]:
    """A weights/ tree with `folder` as the model "tiny" (`files` of it registered) served on 127.0.0.1, the
    runtime pointed at it (nothing bundled); returns the tree and the server (shut it down after)."""
    root = tmp_path / "server"
    shutil.copytree(folder, root / "tiny")
    lines = [f"tiny/{f} sha256:{weights.sha256(root / 'tiny' / f)}" for f in files]
    (root / "registry.txt").write_text("\n".join(lines) + "\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    http.server.SimpleHTTPRequestHandler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    bundled = _local_registry(root, tmp_path)
    monkeypatch.setattr(weights, "bundled_root", lambda: bundled)
    monkeypatch.setenv("PT_PLUGIN_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PT_PLUGIN_WEIGHTS_URL", f"http://127.0.0.1:{server.server_port}/")
    monkeypatch.delenv("PT_PLUGIN_OFFLINE", raising=False)
    return root, server


def _local_registry(root, tmp_path):
    """A bundled root that has the registry but not the model files, so they must be downloaded."""
    reg = tmp_path / "bundled"
    reg.mkdir(exist_ok=True)
    shutil.copy(root / "registry.txt", reg / "registry.txt")
    return reg
