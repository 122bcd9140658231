"""Run an mps2-an500 firmware ELF under qemu-system-arm (QEMU's only Cortex-M7 machine).

UART0 goes to a TCP socket (default; QEMU waits for the host to connect before it starts the CPU, so
no boot output is lost) or to a pty (the same code path as a real board's /dev/ttyACM0).
`-icount shift=0,align=off,sleep=off` makes every guest instruction 1 ns of virtual time: SysTick
ticks are then a deterministic instruction-count proxy (instructions / 40), not Cortex-M7 cycles.
Semihosting is enabled so the firmware's `exit N%` command ends QEMU with status N.
"""
from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

from .errors import FirmwareError


def qemu_command(elf, serial: str) -> list[str]:
    return ["qemu-system-arm", "-M", "mps2-an500", "-cpu", "cortex-m7", "-nographic", "-monitor", "none",
            "-serial", serial, "-icount", "shift=0,align=off,sleep=off",
            "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Qemu:
    """`with Qemu(elf) as q: serial.serial_for_url(q.url)`; q.returncode after exit."""

    def __init__(self, elf, transport: str = "socket", timeout: float = 20.0):
        if shutil.which("qemu-system-arm") is None:
            raise FirmwareError("qemu-system-arm not found (Debian package qemu-system-arm)")
        if not Path(elf).is_file():
            raise FirmwareError(f"firmware ELF not found: {elf}")
        if transport not in ("socket", "pty"):
            raise FirmwareError(f"unknown QEMU serial transport {transport!r}")
        self.elf, self.transport, self.timeout = str(elf), transport, timeout
        self.proc: subprocess.Popen | None = None
        self.url: str | None = None
        self.log: list[str] = []

    def start(self) -> str:
        if self.transport == "socket":
            port = _free_port()
            serial = f"tcp:127.0.0.1:{port},server=on,wait=on,nodelay=on"  # no Nagle: ~40 ms per round trip otherwise
            self.url = f"socket://127.0.0.1:{port}"
        else:
            serial = "pty"
        self.proc = subprocess.Popen(qemu_command(self.elf, serial), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        got = threading.Event()

        def reader():
            for raw in iter(self.proc.stdout.readline, b""):
                line = raw.decode("latin-1").rstrip()
                self.log.append(line)
                m = re.search(r"char device redirected to (\S+)", line)
                if m and self.transport == "pty":
                    self.url = m.group(1)
                    got.set()
                if "waiting for connection" in line:  # socket, wait=on: listening, CPU held
                    got.set()
            got.set()

        threading.Thread(target=reader, daemon=True, name="qemu-stdout").start()
        got.wait(self.timeout)
        if self.transport == "pty" and not self.url:
            self.stop()
            raise FirmwareError("QEMU did not report its pty: " + " | ".join(self.log[-5:]))
        if self.proc.poll() is not None:
            raise FirmwareError("QEMU exited: " + " | ".join(self.log[-5:]))
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
