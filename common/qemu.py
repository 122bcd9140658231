"""The one QEMU launcher: a firmware ELF on an emulated Arm board of the board database.

UART0 goes to a TCP socket (default; `wait=on` holds the CPU until the host connects, so no boot
output is lost; a new connection is accepted as soon as a client closes) or to a pty (the same code
path as a real board's /dev/ttyACM0, but QEMU polls a reopened pty only once a second).
`-icount shift=0,align=off,sleep=off` makes every guest instruction 1 ns of virtual time: timer ticks
are then a deterministic instruction-count proxy, not cycles of the real core. Semihosting is on so
the firmware's `exit N%` command ends QEMU with status N.
"""
from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
from pathlib import Path

from . import boards
from .errors import UserError

ICOUNT = "shift=0,align=off,sleep=off"


def qemu_command(elf, serial: str = "pty", port: int | None = None, board: str = "mps2-an500") -> list[str]:
    """The qemu-system-arm command line; serial 'pty' or 'tcp' (with `port`)."""
    q = boards.get(board).qemu
    if q is None:
        raise UserError(f"board {board} has no QEMU machine")
    # nodelay: no Nagle, else ~40 ms per protocol round trip
    chardev = "pty" if serial == "pty" else f"tcp:127.0.0.1:{port},server=on,wait=on,nodelay=on"
    return ["qemu-system-arm", "-M", q["machine"], "-cpu", q["cpu"], "-nographic", "-monitor", "none",
            "-serial", chardev, "-icount", ICOUNT, "-semihosting-config", "enable=on,target=native",
            "-kernel", str(elf)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Qemu:
    """`with Qemu(elf) as q: serial.serial_for_url(q.url)`; `q.stop()` / `q.returncode` after exit."""

    def __init__(self, elf, serial: str = "tcp", board: str = "mps2-an500", timeout: float = 20.0):
        if shutil.which("qemu-system-arm") is None:
            raise UserError("qemu-system-arm not found (Debian package qemu-system-arm)")
        if not Path(elf).is_file():
            raise UserError(f"firmware ELF not found: {elf} (build it with `netaug-mcu firmware ... "
                            f"--board {board} --build`)")
        if serial not in ("tcp", "pty"):
            raise UserError(f"unknown QEMU serial transport {serial!r} (tcp or pty)")
        self.elf, self.serial, self.board, self.timeout = str(elf), serial, board, timeout
        self.proc: subprocess.Popen | None = None
        self.url: str | None = None
        self.log: list[str] = []

    def start(self) -> str:
        port = free_port() if self.serial == "tcp" else None
        self.proc = subprocess.Popen(qemu_command(self.elf, self.serial, port, self.board),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        got = threading.Event()

        def reader():
            for raw in iter(self.proc.stdout.readline, b""):
                line = raw.decode("latin-1").rstrip()
                self.log.append(line)
                m = re.search(r"char device redirected to (\S+)", line)
                if m and self.serial == "pty" and not self.url:
                    self.url = m.group(1)
                    got.set()
                if "waiting for connection" in line:  # tcp, wait=on: listening, CPU held
                    got.set()
            got.set()

        threading.Thread(target=reader, daemon=True, name="qemu-output").start()
        got.wait(self.timeout)
        if self.serial == "pty" and not self.url:
            self.stop()
            raise UserError("QEMU did not report its pty: " + " | ".join(self.log[-5:]))
        if self.proc.poll() is not None:
            raise UserError("QEMU exited: " + " | ".join(self.log[-5:]))
        if self.serial == "tcp":
            self.url = f"socket://127.0.0.1:{port}"
        return self.url

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 10 s; QEMU's exit status."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.returncode

    def __enter__(self) -> "Qemu":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
