"""Targets for the HIL suite and runner: each start_* returns (url, stop) for any pyserial-URL client.

- start_virtual_board(model): host TFLM behind a pty (in-process thread, or a `netaug-mcu virtual-board`
  subprocess with process=True).
- start_qemu(elf): the firmware ELF on QEMU mps2-an500 (Cortex-M7), UART0 on a TCP socket (default) or a
  pty, `-icount shift=0,align=off,sleep=off` (deterministic instruction-count timer), semihosting on.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ..common.errors import UserError
from ..common.qemu import Qemu
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


def start_qemu(elf, serial: str = "tcp", timeout: float = 20.0, board: str = "mps2-an500"):
    """Boot the firmware ELF in QEMU (netaug_mcu.common.qemu); returns (url, stop). stop() returns QEMU's
    exit status; stop.proc and stop.log are the process and its output."""
    try:
        q = Qemu(elf, serial=serial, board=board, timeout=timeout)
        url = q.start()
    except UserError as exc:
        raise TargetError(str(exc)) from None

    def stop() -> int | None:
        return q.stop()
    stop.proc, stop.log = q.proc, q.log
    return url, stop
