"""Command-line argument checking shared by every `netaug-mcu` subcommand.

* `OneLineParser`: argparse errors as ONE line, `netaug-mcu train: --epochs: invalid int value 'abc'
  (see netaug-mcu train --help)`, exit 2 (argparse's default prints the whole usage).
* Numeric `type=` factories (`integer`, `number`) that check the range while parsing, so a bad value
  stops the command before it starts any work: `--tcp 99999`, `--dropout 5`, `--timeout -1`, `1e400`.
* Paths: a parser declares its file arguments with `declare_paths(p, inputs=..., out_files=...,
  out_dirs=...)`; `check_paths(args)` (called by the dispatcher before the handler) rejects missing
  inputs, directories, FIFOs and devices (which would block or never end) and output paths that
  cannot be written (a directory, a parent that is a file, a read-only or unwritable folder) without
  creating anything. Disk-full can only show when writing: `fsio` handles it.
"""
from __future__ import annotations

import argparse
import math
import os
import re
import stat
from pathlib import Path

from .errors import UserError


class OneLineParser(argparse.ArgumentParser):
    """argparse with one-line errors; subparsers inherit the class (argparse uses type(parent))."""

    def error(self, message: str):  # noqa: D102 - argparse API
        self.exit(2, f"{self.prog}: {one_line(message)} (see {self.prog} --help)\n")


def one_line(message: str) -> str:
    """argparse's 'argument --out/-o: invalid int value: 'x'' -> '--out: invalid int value 'x''."""
    msg = " ".join(str(message).split())
    m = re.match(r"argument ([^:]+): (.*)$", msg)
    if m:
        flag = m.group(1).split("/")[0]
        msg = f"{flag}: {m.group(2)}"
    return re.sub(r"(invalid (?:\S+ )?(?:value|choice)): '", r"\1 '", msg)


def _range_text(lo, hi, lo_open: bool, hi_open: bool) -> str:
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo}"
    return f"{'<' if hi_open else '<='} {hi}"


def integer(lo: int | None = None, hi: int | None = None):
    """An int flag in [lo, hi] ('abc', '1.5', '1e400' and out-of-range values are parse errors)."""

    def parse(text: str) -> int:
        try:
            v = int(str(text).strip(), 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value {text!r}") from None
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"must be {_range_text(lo, hi, False, False)} (got {text})")
        return v

    parse.__name__ = "int"
    return parse


def number(lo: float | None = None, hi: float | None = None, lo_open: bool = False, hi_open: bool = False):
    """A finite float flag in the given range (nan, inf and 1e400 are rejected)."""

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid float value {text!r}") from None
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"must be a finite number (got {text})")
        if (lo is not None and (v < lo or (lo_open and v == lo))) or \
                (hi is not None and (v > hi or (hi_open and v == hi))):
            raise argparse.ArgumentTypeError(f"must be {_range_text(lo, hi, lo_open, hi_open)} (got {text})")
        return v

    parse.__name__ = "float"
    return parse


PORT = integer(1, 65535)           # a TCP port to connect to
LISTEN_PORT = integer(0, 65535)    # a TCP port to listen on (0 = any free port)
BAUD = integer(1, 100_000_000)
COUNT = integer(0)                 # 0 allowed (e.g. "0 = skip")
POSITIVE = integer(1)
SECONDS = number(0, None, lo_open=True)
RESOLUTION = integer(8, 1024)      # input side in pixels: beyond 1024 the int8 tensors cannot fit any MCU
CHANNELS = integer(1, 4)
CLASSES = integer(2, 100_000)


# ---------------------------------------------------------------------------------------- paths
def declare_paths(p: argparse.ArgumentParser, inputs=(), out_files=(), out_dirs=(), in_dirs=()) -> None:
    """Name the dests of `p` that are input files, output files, output directories, input folders."""
    p.set_defaults(_inputs=tuple(inputs), _out_files=tuple(out_files), _out_dirs=tuple(out_dirs),
                   _in_dirs=tuple(in_dirs))


_LABELS = {"model": "model", "checkpoint": "checkpoint", "path": "path", "config": "config file"}


def _flag(dest: str) -> str:
    return _LABELS.get(dest) or "--" + dest.replace("_", "-")


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def check_input_file(path: str | os.PathLike, what: str = "input") -> Path:
    """An existing regular file: a FIFO or /dev/zero would block or never end, a folder is no file."""
    p = Path(path).expanduser()
    try:
        st = p.stat()
    except FileNotFoundError:
        raise UserError(f"{what} {p} does not exist (file not found)") from None
    except OSError as exc:
        raise UserError(f"{what} {p}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise UserError(f"{what} {p} is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"{what} {p} is {_kind(st.st_mode)}, not a regular file")
    if not os.access(p, os.R_OK):
        raise UserError(f"{what} {p}: permission denied")
    return p


def _writable_folder(p: Path, target: Path, what: str) -> None:
    """The nearest existing ancestor of `p` must be a folder we may create/write entries in."""
    anc = p
    while not os.path.lexists(anc):
        if anc.parent == anc:
            break
        anc = anc.parent
    if not anc.is_dir():
        raise UserError(f"cannot write {what} {target}: {anc} is not a directory")
    if not os.access(anc, os.W_OK | os.X_OK):
        try:
            ro = os.statvfs(anc).f_flag & os.ST_RDONLY
        except OSError:
            ro = False
        raise UserError(f"cannot write {what} {target}: {'read-only file system' if ro else 'permission denied'}"
                        f" ({anc})")


def check_output_file(path: str | os.PathLike, what: str = "output") -> Path:
    """A file we may (atomically) replace: not a folder, not a device, its folder writable. Creates nothing."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise UserError(f"cannot write output {p} ({what}): it is a directory")
    if os.path.lexists(p) and not p.is_file():
        raise UserError(f"cannot write output {p} ({what}): it exists and is not a regular file")
    _writable_folder(p.parent, p, f"output ({what})")
    return p


def check_output_dir(path: str | os.PathLike, what: str = "--out") -> Path:
    p = Path(path).expanduser()
    if os.path.lexists(p) and not p.is_dir():
        raise UserError(f"cannot write to output folder {p} ({what}): it exists and is not a directory")
    _writable_folder(p, p, f"to output folder ({what})")
    return p


def check_paths(args: argparse.Namespace) -> None:
    """Validate the paths a parser declared (see `declare_paths`); '-' means stdout for outputs."""
    for dest in getattr(args, "_inputs", ()):
        for v in _values(getattr(args, dest, None)):
            check_input_file(v, _flag(dest))
    for dest in getattr(args, "_in_dirs", ()):
        for v in _values(getattr(args, dest, None)):
            p = Path(v).expanduser()
            if not p.is_dir():
                raise UserError(f"{_flag(dest)} {p}: {'not a directory' if p.exists() else 'not found'}")
    for dest in getattr(args, "_out_files", ()):
        for v in _values(getattr(args, dest, None)):
            if v != "-":
                check_output_file(v, _flag(dest))
    for dest in getattr(args, "_out_dirs", ()):
        for v in _values(getattr(args, dest, None)):
            check_output_dir(v, _flag(dest))


def _values(v) -> list:
    if v is None or v is False:
        return []
    return list(v) if isinstance(v, (list, tuple)) else [v]
