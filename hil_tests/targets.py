"""Targets for the HIL suite and runner: each start_* returns (url, stop) for any pyserial-URL client.

- start_virtual_board(model): host TFLM behind a pty (in-process thread, or a `netaug-mcu virtual-board`
  subprocess with process=True).
- start_qemu(elf): the firmware ELF on QEMU mps2-an500 (Cortex-M7), UART0 on a TCP socket (default) or a
  pty, `-icount shift=0,align=off,sleep=off` (deterministic instruction-count timer), semihosting on.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from .client import HilError


class TargetError(HilError):
    pass


def start_virtual_board(model, faults=None, transport: str = "pty", baud: int = 0, process: bool = False,
                        timeout: float = 30.0):
    if process:
        return _start_virtual_board_process(model, faults or [], baud, timeout)
    from .virtual_board import Faults, VirtualBoard
    fl = faults if isinstance(faults, Faults) or faults is None else Faults.parse(list(faults))
    vb = VirtualBoard(model, faults=fl, transport=transport, baud=baud)
    url = vb.start()
    return url, vb.stop


def _start_virtual_board_process(model, faults: list[str], baud: int, timeout: float):
    import tempfile
    d = tempfile.mkdtemp(prefix="vboard-")
    pf = os.path.join(d, "port")
    cmd = [sys.executable, "-m", "netaug_mcu", "virtual-board", str(model), "--port-file", pf]
    if baud:
        cmd += ["--baud", str(baud)]
    for f in faults:
        cmd += ["--fault", f]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if os.path.exists(pf):
            url = Path(pf).read_text().strip()
            break
        if proc.poll() is not None:
            raise TargetError(f"virtual board exited: {proc.stderr.read().strip()[-300:]}")
        time.sleep(0.05)
    else:
        proc.kill()
        raise TargetError("virtual board did not start within the timeout")

    def stop():
        _terminate(proc)
        shutil.rmtree(d, ignore_errors=True)
    stop.proc = proc
    return url, stop


def _terminate(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def qemu_command(elf: str, serial: str = "pty", port: int | None = None) -> list[str]:
    # The machine line belongs to the firmware that targets it (stdlib-only module, no TFLM needed).
    from firmware.qemu import qemu_command as firmware_qemu_command

    # tcp: wait=on holds the CPU until the host connects, so the boot banner is not lost
    chardev = "pty" if serial == "pty" else f"tcp:127.0.0.1:{port},server=on,wait=on,nodelay=on"
    return firmware_qemu_command(elf, chardev)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_qemu(elf, serial: str = "tcp", timeout: float = 20.0):
    """Boot the firmware ELF in QEMU; returns (url, stop). stop() returns QEMU's exit status.

    serial="tcp" (default): socket://127.0.0.1:PORT; QEMU holds the CPU until the first connection and
    accepts a new connection as soon as a client closes. serial="pty": /dev/pts/N like a real board, but
    QEMU polls a reopened pty only once a second and drops output meanwhile."""
    if shutil.which("qemu-system-arm") is None:
        raise TargetError("qemu-system-arm not found (Debian package qemu-system-arm)")
    if not Path(elf).is_file():
        raise TargetError(f"firmware ELF not found: {elf} (build it with `netaug-mcu firmware ... "
                          f"--board mps2-an500 --build`)")
    port = _free_port() if serial == "tcp" else None
    proc = subprocess.Popen(qemu_command(elf, serial, port), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    log: list[str] = []
    got = threading.Event()
    url_box: list[str] = []

    def reader():
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode("latin-1").rstrip()
            log.append(line)
            m = re.search(r"char device redirected to (\S+)", line)
            if m and not url_box:
                url_box.append(m.group(1))
                got.set()
            if "waiting for connection" in line:   # tcp, wait=on: listening, CPU held
                got.set()
        got.set()

    threading.Thread(target=reader, daemon=True, name="qemu-log").start()

    def stop() -> int | None:
        _terminate(proc)
        return proc.returncode
    stop.proc, stop.log = proc, log

    if serial == "pty":
        got.wait(timeout)
        if not url_box:
            stop()
            raise TargetError("QEMU did not report its pty: " + " | ".join(log[-5:]))
        return url_box[0], stop
    got.wait(timeout)
    if proc.poll() is not None:
        raise TargetError("QEMU exited: " + " | ".join(log[-5:]))
    return f"socket://127.0.0.1:{port}", stop
