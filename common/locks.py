"""Output locks: one run per output directory (or output file) at a time.

`with output_lock(out_dir):` takes an exclusive `flock` on OUT/.netaug-mcu.lock (for a file
output F: F's folder/.F.lock) and writes the holder's pid into it. A second run on the same output
fails at once with a one-line `UserError` naming the holder's pid. The kernel drops a flock when
its process dies, so a lock file left by a killed run (its pid dead) is simply taken over.
The lock file is removed on release. Locks are re-entrant within a process (`demo` holds OUT while
its stages lock their own outputs, possibly the same one).
"""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import UserError

LOCK_NAME = ".netaug-mcu.lock"
_held: dict[str, list] = {}   # lock path -> [fd, depth]


def lock_path(target: str | os.PathLike, is_dir: bool = True) -> Path:
    t = Path(target).expanduser().absolute()
    return t / LOCK_NAME if is_dir else t.parent / f".{t.name}.lock"


def _why(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 64).decode(errors="replace").strip()
    except OSError:
        text = ""
    return text if text.isdigit() else "unknown"


def _acquire(lp: Path, target: Path, what: str) -> int:
    while True:
        try:
            fd = os.open(lp, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise UserError(f"cannot lock {what} {target}: {_why(exc)} ({lp})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _holder(fd)
            os.close(fd)
            raise UserError(f"{what} {target} is in use by another netaug-mcu run (pid {pid}); wait for it "
                            f"to finish or choose another output (lock {lp})") from None
        try:
            same = os.stat(lp).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False  # the previous holder removed it between our open and flock: retry
        if not same:
            os.close(fd)
            continue
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as exc:
            _release(lp, fd)
            raise UserError(f"cannot lock {what} {target}: {_why(exc)} ({lp})") from None
        return fd


def _release(lp: Path, fd: int) -> None:
    try:
        os.unlink(lp)
    except OSError:
        pass
    os.close(fd)


@contextmanager
def output_lock(target: str | os.PathLike, is_dir: bool = True, what: str | None = None) -> Iterator[Path]:
    """Hold the lock of output directory (or file) `target` for the duration of the block."""
    t = Path(target).expanduser()
    what = what or ("output directory" if is_dir else "output")
    try:
        (t if is_dir else t.parent).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {what} {t}: {_why(exc)}") from None
    lp = lock_path(t, is_dir)
    key = str(lp)
    if key in _held:
        _held[key][1] += 1
    else:
        _held[key] = [_acquire(lp, t, what), 1]
    try:
        yield t
    finally:
        _held[key][1] -= 1
        if _held[key][1] == 0:
            fd = _held.pop(key)[0]
            _release(lp, fd)


def rank0() -> bool:
    """True unless this is a non-zero rank of a torchrun job (only rank 0 writes the outputs)."""
    return os.environ.get("RANK", "0") in ("", "0")
