"""Atomic file writes: every file a command writes goes through here.

A temporary file in the destination's directory is written, flushed and fsync'd, then renamed over
the destination (and the directory fsync'd). On any failure (disk full, read-only, permissions)
the temporary is removed, the previous file is untouched, and a one-line `UserError` names the path.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, IO

from .errors import UserError

_UMASK = os.umask(0)
os.umask(_UMASK)


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def check_writable(path: str | os.PathLike, what: str = "output") -> Path:
    """Validate an output file path before any work starts (creates missing parent folders)."""
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{what} {p} is a directory")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".probe", dir=p.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"cannot write {what} {p}: {_why(exc)}") from None
    return p


def _mode_for(dest: Path) -> int:
    """The replaced file's permissions, else what open() would give a new file under the umask."""
    try:
        return dest.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_UMASK


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_with(path: str | os.PathLike, writer: Callable[[IO[bytes]], Any]) -> Path:
    """Call writer(binary file object) on a temporary next to `path`, then rename it into place."""
    return atomic_write_many_with({Path(path): writer})[0]


def atomic_write_many_with(writers: dict[Path, Callable[[IO[bytes]], Any]]) -> list[Path]:
    """Several files: all temporaries are complete before the first rename."""
    tmps: list[tuple[str, Path]] = []
    dest = None
    try:
        for dest, writer in writers.items():
            dest = Path(dest)
            fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
            tmps.append((tmp, dest))
            os.fchmod(fd, _mode_for(dest))  # mkstemp makes 0600; keep the usual permissions
            with os.fdopen(fd, "wb") as fh:
                writer(fh)
                fh.flush()
                os.fsync(fh.fileno())
        for tmp, dest in tmps:
            os.replace(tmp, dest)
    except OSError as exc:
        for tmp, _ in tmps:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        raise UserError(f"cannot write {dest}: {_why(exc)}") from None
    except BaseException:
        for tmp, _ in tmps:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        raise
    for d in {dest.parent for _, dest in tmps}:
        _fsync_dir(d)
    return [dest for _, dest in tmps]


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    raw = data.encode() if isinstance(data, str) else bytes(data)
    return atomic_write_with(path, lambda fh: fh.write(raw))


def atomic_write_many(files: dict[Path, bytes | str]) -> list[Path]:
    def writer(raw: bytes):
        return lambda fh: fh.write(raw)
    return atomic_write_many_with({Path(p): writer(d.encode() if isinstance(d, str) else bytes(d))
                                   for p, d in files.items()})


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 1) -> Path:
    return atomic_write(path, json.dumps(obj, indent=indent) + "\n")
