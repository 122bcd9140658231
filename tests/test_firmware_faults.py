"""Fault reports on QEMU mps2-an500 (Cortex-M7): a deliberate stack overflow (MPU stack guard) and a
bus fault (read of a reserved address) each print one `e-[fault ...]` line with CFSR, HFSR, MMFAR,
BFAR and the PC, from the dedicated fault stack; `info%` reports the stack high-water mark.
Needs the toolchain, TFLM and QEMU like tests/test_firmware_qemu.py (skipped with the reason otherwise)."""
from __future__ import annotations

import re
import subprocess

import pytest
from test_firmware_qemu import MODEL32, Wire, _bload, _info, _need_qemu, build, toolchain  # noqa: F401  (fixtures)

from netaug_mcu.common.qemu import Qemu

pytestmark = pytest.mark.firmware
FAULT = re.compile(r"^e-\[fault (\w+) cfsr=0x([0-9a-f]{8}) hfsr=0x([0-9a-f]{8}) mmfar=0x([0-9a-f]{8}) "
                   r"bfar=0x([0-9a-f]{8}) pc=(0x[0-9a-f]{8}|unknown) lr=\S+ psr=\S+ sp=0x([0-9a-f]{8}) "
                   r"exc_return=0x[0-9a-f]{8}\]$")


def _fault_line(elf: str, command: str) -> re.Match:
    with Qemu(elf) as q:
        w = Wire(q.url)
        w.until_ready(30)
        w.send(command.encode() + b"%")
        lines = []
        for _ in range(3):
            ln = w.readline(30)
            if ln.startswith("e-[fault"):
                w.close()
                m = FAULT.match(ln)
                assert m, ln
                return m
            lines.append(ln)
        pytest.fail(f"no fault line after {command!r}: {lines}")


def _symbol_range(elf: str, name: str) -> tuple[int, int]:
    out = subprocess.run(["arm-none-eabi-nm", "-S", elf], stdout=subprocess.PIPE, text=True).stdout
    for ln in out.splitlines():
        p = ln.split()
        if len(p) == 4 and p[3] == name:
            return int(p[0], 16) & ~1, (int(p[0], 16) & ~1) + int(p[1], 16)
    raise AssertionError(f"{name} not in {elf}")


@pytest.fixture(scope="module")
def fault_elf(build):  # noqa: F811
    _need_qemu()
    if not MODEL32.is_file():
        pytest.skip(f"{MODEL32} missing")
    return build(MODEL32, fault_test=True)[1].elf


def test_bus_fault_reports_bfar_and_pc(fault_elf):
    m = _fault_line(fault_elf, "fault bus")
    kind, cfsr, hfsr, mmfar, bfar, pc, sp = m.groups()
    cfsr = int(cfsr, 16)
    assert kind == "busfault" and cfsr & (1 << 15) and cfsr & (1 << 9)   # BFARVALID, PRECISERR
    assert int(bfar, 16) == 0x30000000                                    # the address read
    lo, hi = _symbol_range(fault_elf, "fault_test")
    assert lo <= int(pc, 16) < hi, f"pc {pc} not in fault_test [{lo:#x}, {hi:#x})"


def test_stack_overflow_hits_the_mpu_guard(fault_elf):
    m = _fault_line(fault_elf, "fault stack")
    kind, cfsr, hfsr, mmfar, bfar, pc, sp = m.groups()
    cfsr = int(cfsr, 16)
    sstack = 0x20000000                                                   # the stack comes first in RAM
    assert kind == "memmanage" and cfsr & (1 << 7)                        # MMARVALID
    assert cfsr & ((1 << 4) | (1 << 1))                                   # MSTKERR or DACCVIOL
    assert sstack <= int(mmfar, 16) < sstack + 256                        # inside the 256 B guard
    assert int(sp, 16) < sstack + 512                                     # the overflowed stack, reported


def test_info_reports_the_stack_high_water_mark(build):  # noqa: F811
    _need_qemu()
    proj, res = build(MODEL32)
    with Qemu(res.elf) as q:
        w = Wire(q.url)
        w.until_ready(30)
        before = _info(w)
        assert w.cmd("fault bus") == ["e-[Unknown command: fault]"]       # not in normal builds
        assert _bload(w, bytes(proj.input_bytes)) == ["m-load-done"]
        assert "m-infer-done" in w.cmd("infer 1 0")
        after = _info(w)
        w.close()
    assert before["stack"] == 16384 and 0 < before["stack_used"] <= after["stack_used"] < 16384
