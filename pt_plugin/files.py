"""Output files: checked before any work, written under temporary names and moved into place.

`check_outputs(outputs, inputs)` refuses, before a model is loaded, an output that is one of the inputs,
two outputs that are one file, and a location that cannot be written (a folder in the way, a parent that is
a file, a read-only or immutable folder, /proc). `atomic(path)` gives a temporary name in the file's folder
and moves it into place with os.replace when the block succeeds; inside `staged()`, every file written
through `atomic` joins one set that is moved into place together at the end of the block, or removed, with
any folder made for it, when something fails: nothing half-written is left behind.
"""
from __future__ import annotations

import contextvars
import os
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

from .errors import InputError


def file_key(path: Path) -> tuple:
    """What identifies the file a path names: its (device, inode) where it exists (links and symlinks meet),
    else its resolved absolute path."""
    try:
        st = os.stat(path)
        return ("inode", st.st_dev, st.st_ino)
    except OSError:
        return ("path", str(Path(os.path.abspath(path)).resolve()))


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (see file_key)."""
    return file_key(Path(a)) == file_key(Path(b))


def _existing_ancestor(folder: Path) -> Path:
    """The nearest folder (or file) on the way up from `folder` that exists."""
    p = Path(os.path.abspath(folder))
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _probe(folder: Path) -> str | None:
    """Why `folder` (an existing folder) does not take new files, or None: a probe file is made and removed."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".pt-plugin-probe-", dir=folder)
    except OSError as e:
        return f"{folder} does not take new files ({e.strerror or e})"
    os.close(fd)
    os.unlink(probe)
    return None


def check_writable(path: Path, what: str = "output") -> None:
    """Refuse, naming the reason, an output file that cannot be written where it is asked for."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"cannot write the {what} {path}: it is a folder; give a file name")
    base = _existing_ancestor(path.parent)
    problem = f"{base} is a file, not a folder" if not base.is_dir() else _probe(base)
    if problem:
        raise InputError(f"cannot write the {what} {path}: {problem}; choose another place")


def check_folder(folder: Path, what: str = "--out-dir") -> None:
    """Refuse a folder for outputs that is a file or cannot take new files (it may not exist yet)."""
    folder = Path(folder)
    base = _existing_ancestor(folder)
    problem = f"{base} is a file, not a folder" if not base.is_dir() else _probe(base)
    if problem:
        raise InputError(f"cannot write into {what} {folder}: {problem}; choose another folder")


def input_files(inputs: Mapping[str, Path | None]) -> dict[str, Path]:
    """{label: path} of the inputs given; a folder input adds each file in it (the frames of a clip)."""
    found: dict[str, Path] = {}
    for label, path in inputs.items():
        if not path:
            continue
        path = Path(path)
        found[label] = path
        if path.is_dir():
            found.update({f"{label} file {p.name}": p for p in sorted(path.iterdir()) if p.is_file()})
    return found


def check_outputs(outputs: Mapping[str, Path], inputs: Mapping[str, Path | None]) -> None:
    """Before any work: no output is an input or another output, and every output location takes files
    (each folder is probed once)."""
    given = {file_key(p): (label, p) for label, p in input_files(inputs).items()}
    seen: dict[tuple, str] = {}
    for what, out in outputs.items():
        key = file_key(Path(out))
        if key in given:
            label, src = given[key]
            raise InputError(f"the {what} {out} would overwrite the {label} {src}; give --out another name "
                             "(no command writes over its inputs)")
        if key in seen:
            raise InputError(f"the {seen[key]} and the {what} would both be written to {out}; give --out or "
                             "--out-dir another name")
        seen[key] = what
    probed: set[str] = set()
    for what, out in outputs.items():
        folder = os.path.abspath(Path(out).parent)
        if Path(out).is_dir() or folder not in probed:
            check_writable(Path(out), what)
            probed.add(folder)


# -- writing -----------------------------------------------------------------------------------------------
_STAGE: contextvars.ContextVar["Staging | None"] = contextvars.ContextVar("pt_plugin_staging", default=None)


class Staging:
    """Files written under temporary names; commit() moves them into place, discard() removes them."""

    def __init__(self) -> None:
        self.files: list[tuple[Path, Path]] = []   # (temporary, final)
        self.folders: list[Path] = []              # folders made for them, outermost first

    def temporary(self, path: Path) -> Path:
        """A temporary name next to `path` (its folder is made), moved to `path` by commit()."""
        path = Path(path)
        missing, p = [], Path(os.path.abspath(path.parent))
        while not p.exists() and p != p.parent:
            missing.append(p)
            p = p.parent
        path.parent.mkdir(parents=True, exist_ok=True)
        self.folders.extend(reversed(missing))
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        self.files.append((tmp, path))
        return tmp

    def commit(self) -> None:
        for tmp, final in self.files:
            if tmp.exists():
                os.replace(tmp, final)

    def discard(self) -> None:
        for tmp, _ in self.files:
            tmp.unlink(missing_ok=True)
        for folder in reversed(self.folders):
            try:
                folder.rmdir()
            except OSError:
                pass


@contextmanager
def staged() -> Iterator[Staging]:
    """Every file written through atomic() in this block is moved into place at its end, or none is."""
    stage = Staging()
    token = _STAGE.set(stage)
    try:
        yield stage
        stage.commit()
    except BaseException:
        stage.discard()
        raise
    finally:
        _STAGE.reset(token)


@contextmanager
def atomic(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path to write `path` through: moved into place when the block (or the enclosing
    staged() block) succeeds, removed when it fails."""
    outer = _STAGE.get()
    if outer is not None:
        yield outer.temporary(Path(path))
    else:
        with staged() as stage:
            yield stage.temporary(Path(path))
