"""Run the official MLPerf Tiny host runner (mlcommons/tiny benchmark/runner/main.py, unmodified) against any
port: `netaug-mcu mlperf-runner --runner-dir DIR --port URL --mode p|a|e --dataset DIR`.

The runner opens its DUT with `serial.Serial(path)` and finds it only by USB VID:PID (device_manager.scan over
`serial.tools.list_ports.comports()`); a pty, QEMU's TCP UART or the virtual board has no USB identity. So:
1. a URL that is not a local device (socket://, rfc2217://, `virtual`) is bridged to a fresh pty, and the bridge
   keeps ONE connection to the target for the whole run (the runner opens its port three times);
2. a generated devices.yaml describes one DUT with a VID:PID, and the runner's interpreter gets the port list
   from us: `list_ports.comports` answers that one port with that VID:PID (and `usb.core.find`, the runner's
   scan for USB-only power monitors, answers none when pyusb has no libusb backend). Nothing of the runner's
   own code is changed or copied; its output is passed through and its session directory kept in --out.
"""
from __future__ import annotations

import errno
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..common.errors import UserError

VID, PID = 0x0483, 0x374B           # ST-LINK/V2-1 (the F746 DISCO's probe, as the runner's l4r5zi entry)
DUT_DEF_NAME = "netaug-mcu"

# Runs inside the runner's interpreter: answer the port list with our DUT, then run main.py as __main__.
_BOOTSTRAP = r"""
import os, runpy, sys
from serial.tools import list_ports, list_ports_common
def _comports(include_links=False):
    p = list_ports_common.ListPortInfo(os.environ["NETAUG_DUT_PORT"], skip_link_detection=True)
    p.vid, p.pid = int(os.environ["NETAUG_DUT_VID"]), int(os.environ["NETAUG_DUT_PID"])
    p.description = "netaug-mcu DUT"
    return [p]
list_ports.comports = _comports
try:
    import usb.core
    _find = usb.core.find
    def _usb_find(*a, **kw):
        try:
            return _find(*a, **kw)
        except usb.core.NoBackendError:
            return [] if kw.get("find_all") else None
    usb.core.find = _usb_find
except ImportError:
    pass
runner = os.environ["NETAUG_RUNNER_DIR"]
sys.path.insert(0, runner)
sys.argv = [os.path.join(runner, "main.py")] + sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


class RunnerError(UserError):
    pass


class PtyBridge:
    """A pty whose slave path stands for `url` (any pyserial URL); one target connection for its lifetime."""

    def __init__(self, url: str, baud: int):
        import serial
        import tty
        try:
            self.ser = serial.serial_for_url(url, baudrate=baud, timeout=0)
        except (serial.SerialException, ValueError) as exc:
            raise RunnerError(f"cannot open {url}: {exc}") from None
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"pty-bridge {url}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            r, _, _ = select.select([self.master], [], [], 0.005)
            if r:
                try:
                    data = os.read(self.master, 65536)
                except OSError as exc:
                    data = b"" if exc.errno in (errno.EAGAIN, errno.EIO) else None
                    if data is None:
                        return
                if data:
                    self.ser.write(data)
            try:
                data = self.ser.read(65536)
            except Exception:  # noqa: BLE001 - the target went away: stop bridging
                return
            while data and not self._stop.is_set():
                try:
                    k = os.write(self.master, data)
                    data = data[k:]
                except BlockingIOError:
                    select.select([], [self.master], [], 0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass
        self.ser.close()


def devices_yaml(baud: dict) -> str:
    return (f"- name: {DUT_DEF_NAME}\n  type: dut\n  baud:\n"
            + "".join(f"    {k}: {v}\n" for k, v in baud.items())
            + f"  usb:\n    0x{VID:04X}: 0x{PID:04X}\n")


def find_runner(runner_dir: str | None) -> Path:
    cands = [runner_dir] if runner_dir else []
    if os.environ.get("MLPERF_TINY_DIR"):
        cands.append(os.path.join(os.environ["MLPERF_TINY_DIR"], "benchmark", "runner"))
    for c in cands:
        if c and (Path(c) / "main.py").is_file() and (Path(c) / "device_manager.py").is_file():
            return Path(c).resolve()
    raise RunnerError("the MLPerf Tiny runner was not found: pass --runner-dir DIR (…/benchmark/runner) or set "
                      "MLPERF_TINY_DIR to a mlcommons/tiny checkout")


def run(port: str, mode: str, dataset: str, out: str, runner_dir: str | None = None, baud: int = 115200,
        test_script: str | None = None, python: str | None = None, timeout: float | None = None, echo=print) -> tuple[int, list[str]]:
    """Run main.py; returns (exit status, its output lines)."""
    runner = find_runner(runner_dir)
    if mode not in ("a", "p", "e"):
        raise RunnerError(f"--mode must be a, p or e, got {mode!r}")
    if not Path(dataset).is_dir():
        raise RunnerError(f"dataset directory not found: {dataset}")
    if test_script and not Path(test_script).is_file():
        raise RunnerError(f"test script not found: {test_script}")
    outp = Path(out)
    outp.mkdir(parents=True, exist_ok=True)
    bridge = None
    if "://" in port:
        bridge = PtyBridge(port, baud)
        path = bridge.path
    else:
        if not os.path.exists(port):
            raise RunnerError(f"no such port: {port}")
        path = port
    (outp / "devices.yaml").write_text(devices_yaml({"energy": baud, "performance": baud, "accuracy": baud}))
    # absolute: the runner runs in the output folder
    script = str(Path(test_script).resolve()) if test_script else str(
        runner / {"a": "tests_accuracy.yaml", "p": "tests_performance.yaml", "e": "tests_energy.yaml"}[mode])
    env = dict(os.environ, NETAUG_DUT_PORT=path, NETAUG_DUT_VID=str(VID), NETAUG_DUT_PID=str(PID),
               NETAUG_RUNNER_DIR=str(runner))
    cmd = [python or sys.executable, "-c", _BOOTSTRAP, "-d", str(outp / "devices.yaml"), "-t", script,
           "-s", str(Path(dataset).resolve()), "-m", mode]
    lines: list[str] = []
    try:
        proc = subprocess.Popen(cmd, cwd=outp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace")
        t0 = time.monotonic()
        for ln in proc.stdout:
            lines.append(ln.rstrip("\n"))
            echo(lines[-1])
            if timeout and time.monotonic() - t0 > timeout:
                proc.kill()
                raise RunnerError(f"the runner took longer than {timeout:g} s")
        rc = proc.wait()
    finally:
        if bridge:
            bridge.close()
    return rc, lines


def summary(lines: list[str]) -> dict:
    """The runner's own result lines: Top-1 / AUC (accuracy), median throughput (performance)."""
    import re
    out: dict = {"lines": [ln for ln in lines if "ulp-mlperf: Top 1%" in ln or "ulp-mlperf: AUC" in ln
                           or "Median throughput" in ln or "ERROR" in ln]}
    for ln in lines:
        if (m := re.search(r"Top 1% = ([\d.]+)", ln)):
            out["top1"] = float(m.group(1))
        if (m := re.search(r"AUC = ([\d.]+)", ln)):
            out["auc"] = float(m.group(1))
        if (m := re.search(r"Median throughput is\s+([\d.]+)", ln)):
            out["median_throughput"] = float(m.group(1))
            out["median_latency_ms"] = 1000.0 / out["median_throughput"] if out["median_throughput"] else None
    return out
