"""Exact arenas for more cores: `analyze --target cortex-m4|cortex-m33|cortex-m55` against the device's
arena_used_bytes() (`info%`) in QEMU (mps2-an386 Cortex-M4, mps2-an505 Cortex-M33, mps3-an547
Cortex-M55), on the model set the cortex-m7 target is proven on (test_firmware_qemu.ARENA_MODELS).

Each core needs its own libtflm.a (CMSIS-NN's DSP path on M4/M33, MVE on M55) in the cache: built once
per core (5-30 min on 2 cores) by `netaug-mcu firmware MODEL --board BOARD --build`, or by this session
with NETAUG_MCU_HEAVY=1; otherwise the core's tests skip with the reason.
"""
from __future__ import annotations

import os
import shutil

import pytest

from netaug_mcu.common import boards
from netaug_mcu.common.qemu import Qemu
from netaug_mcu.converter import analyzer
from netaug_mcu.firmware import build as fw_build
from netaug_mcu.firmware import generate as gen
from netaug_mcu.firmware import tflm_build as deps
from test_firmware_qemu import ARENA_MODELS, Wire, _info, _model

pytestmark = pytest.mark.firmware

CORE_BOARDS = {"cortex-m4": "mps2-an386", "cortex-m33": "mps2-an505", "cortex-m55": "mps3-an547"}
# Default suite: every model on the M55 (CMSIS-NN's MVE path, other buffers than the M7's) and three
# on the M4/M33 (the M7's DSP path, other compiler flags); the full grid with NETAUG_MCU_HEAVY=1 and in
# bench/core_exactness_bench.py (~2 min).
DSP_DEFAULT = ("tiny_fmnist32", "depthwise", "zoo:mbv3-w0.35:47")
GRID = [pytest.param(core, name, id=f"{core}-{name}",
                     marks=() if core == "cortex-m55" or name in DSP_DEFAULT else pytest.mark.opt_in)
        for core in sorted(CORE_BOARDS) for name in ARENA_MODELS]


@pytest.fixture(scope="session")
def core_libs():
    for tool in ("arm-none-eabi-gcc", "arm-none-eabi-g++", "make", "qemu-system-arm"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")
    tree, why = deps.find_tree()
    if tree is None:
        pytest.skip(why)
    return tree, {}


def _lib(core_libs, core: str):
    tree, libs = core_libs
    if core not in libs:
        lib = deps.library_if_built(tree, core)
        if lib is None:
            if os.environ.get("NETAUG_MCU_HEAVY") != "1":
                pytest.skip(f"no {core} libtflm.a in {deps.library_dir(tree, core=core)} (build it once: "
                            f"netaug-mcu firmware MODEL --board {CORE_BOARDS[core]} --build; or NETAUG_MCU_HEAVY=1)")
            lib = deps.build_library(tree, core=core, log=lambda *_: None)
        libs[core] = lib
    return tree, libs[core]


def test_core_boards_are_in_the_database():
    for core, board in CORE_BOARDS.items():
        b = boards.get(board)
        assert b.core == core == b.target and b.qemu["cpu"] == core and b.firmware["template"] == "mps-cmsdk"
        assert b.uart.get("base")


@pytest.mark.parametrize("core,name", GRID)
def test_device_arena_used_equals_analyzer_per_core(core_libs, tmp_path, core, name):
    tree, lib = _lib(core_libs, core)
    board = CORE_BOARDS[core]
    model = _model(name)
    predicted = analyzer.analyze(str(model), target=core, board=board).arena_bytes
    proj = gen.generate(model, board=board, out=tmp_path / "fw", tree=tree, lib=lib, log=lambda *_: None)
    assert proj.arena_predicted == predicted
    res = fw_build.build(tmp_path / "fw", tree=tree, lib=lib, log=lambda *_: None)
    with Qemu(res.elf, board=board) as q:
        w = Wire(q.url)
        banner = w.until_ready(60)
        assert not [ln for ln in banner if ln.startswith("e-")], banner
        info = _info(w)
        w.close()
    assert info["clock_hz"] == boards.get(board).clock_hz
    assert info["arena_used"] == predicted, f"{name} on {core}: device {info['arena_used']} B, analyzer {predicted} B"


@pytest.mark.parametrize("core", ["cortex-m55"])
def test_hil_profile_per_op_ticks_on_qemu(core_libs, tmp_path, core):
    """`hil profile --port qemu:ELF`: one row per operator from the firmware's prof%, the op ticks
    adding up to (at most) the whole Invoke()."""
    import json as _json

    from netaug_mcu.cli import main
    from netaug_mcu.common.tflite_model import load
    tree, lib = _lib(core_libs, core)
    model = _model("depthwise")
    gen.generate(model, board=CORE_BOARDS[core], out=tmp_path / "fw", tree=tree, lib=lib, log=lambda *_: None)
    res = fw_build.build(tmp_path / "fw", tree=tree, lib=lib, log=lambda *_: None)
    assert main(["hil", "profile", "--port", f"qemu:{res.elf}", "--model", str(model), "--timeout", "30",
                 "--out", str(tmp_path / "p")]) in (0, None)
    prof = _json.loads((tmp_path / "p" / "profile.json").read_text())
    ops = load(model.read_bytes()).operators
    assert [r["op"] for r in prof["ops"]] == [op.name for op in ops]
    assert prof["timer"] == "systick-icount" and prof["clock_hz"] == boards.get(CORE_BOARDS[core]).clock_hz
    assert 0.9 * prof["invoke_ticks"] <= prof["ops_ticks"] <= prof["invoke_ticks"]
    assert all(r["ticks"] > 0 for r in prof["ops"])
