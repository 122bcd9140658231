"""`check --board stm32f746g-disco` and the F746 firmware link agree on a sweep across the placement
boundaries: a model `check` passes links with every section inside the region the planner chose; one
it refuses (exit 1) is refused by `firmware` too. Needs arm-none-eabi-gcc, a TFLM tree and the built
libtflm.a (skipped with the reason otherwise, like tests/test_firmware_qemu.py); the zoo models are
the converter's cached conversions (`netaug-mcu convert --zoo mbv3-w0.35 --resolution R`)."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from test_firmware_qemu import _model, toolchain  # noqa: F401  (fixture)

from netaug_mcu.converter.commands import check_file
from netaug_mcu.converter import budget
from netaug_mcu.firmware import build as fw_build
from netaug_mcu.firmware import generate as gen
from netaug_mcu.firmware.errors import ModelRefused

pytestmark = pytest.mark.firmware
BOARD = "stm32f746g-disco"

# name, expected layout of (input, arena) or None = over budget
SWEEP = [
    ("tiny_fmnist32", ("DTCM", "DTCM")),
    ("sdram:zoo:mbv3-w0.35:145", ("SDRAM", "RAM")),   # --sdram: over on-chip by 41 KB -> the cold input goes off-chip
    ("sdram:zoo:mbv3-w0.35:192", ("SRAM", "SDRAM")),  # --sdram: arena 362,960 B > 320 KB -> arena in SDRAM           # tiny: everything in DTCM
    ("zoo:mbv3-w0.35:128", ("SRAM", "SRAM")),      # input 49,152 B > the 46 KB DTCM leaves: the case
    ("zoo:mbv3-w0.35:136", ("RAM", "RAM")),        # arena 216 KB > 200 KB: one run through 320 KB
    ("zoo:mbv3-w0.35:144", ("RAM", "RAM")),        # arena 233,936 B: 6,944 B under the budget
    ("zoo:mbv3-w0.35:147", None),                  # arena 243,280 B: 5,024 B over
]


def _sections(elf: str) -> dict[str, tuple[int, int]]:
    out = subprocess.run(["arm-none-eabi-size", "-A", "-x", elf], stdout=subprocess.PIPE, text=True).stdout
    return {p[0]: (int(p[2], 16), int(p[1], 16)) for p in (ln.split() for ln in out.splitlines())
            if len(p) == 3 and p[0].startswith(".")}


@pytest.mark.parametrize("name,expected", SWEEP, ids=[s[0] for s in SWEEP])
def test_check_and_link_agree(toolchain, tmp_path, name, expected):  # noqa: F811
    tree, lib = toolchain
    sdram = name.startswith("sdram:")
    model = _model(name.removeprefix("sdram:"))
    verdict = check_file(str(model), budget.budget(BOARD, external=sdram))
    if expected is None:
        assert not verdict["fits"] and verdict["ram_over_bytes"] > 0
        with pytest.raises(ModelRefused, match="no placement") as ei:
            gen.generate(model, board=BOARD, out=tmp_path / "fw", tree=tree, lib=lib, log=lambda *_: None)
        assert ei.value.exit_code == 1
        return
    assert verdict["fits"], verdict["suggestions"]
    plan = verdict["placement"]
    assert (plan["where"]["input"], plan["where"]["arena"]) == expected
    proj = gen.generate(model, board=BOARD, out=tmp_path / "fw", tree=tree, lib=lib, sdram=sdram,
                        log=lambda *_: None)
    assert proj.placement["where"] == plan["where"]                     # the one decision, used twice
    res = fw_build.build(tmp_path / "fw", tree=tree, lib=lib, log=lambda *_: None)
    secs = _sections(res.elf)
    regions = {r["name"]: (r["origin"], r["origin"] + r["bytes"]) for r in plan["regions"]}
    for sec, item in ((".stack", "stack"), (".input", "input"), (".arena", "arena")):
        lo, hi = regions[plan["where"][item]]
        addr, size = secs[sec]
        assert lo <= addr and addr + size <= hi, f"{sec} at 0x{addr:08X}+{size} outside {plan['where'][item]}"
    assert secs[".stack"][0] == 0x20000000 and secs[".arena"][1] == proj.arena_bytes
    if sdram:
        assert any(n.startswith("off-chip:") for n in verdict["notes"])
        assert (tmp_path / "fw" / "fw.bin").stat().st_size < 1 << 20     # NOLOAD SDRAM sections not in the image
    runtime = secs[".data"][1] + secs[".bss"][1]
    assert runtime <= plan["sizes"]["runtime"], f"runtime .data+.bss {runtime} B > allowance"
    fw_map = (tmp_path / "fw" / "fw.map").read_text()
    assert re.search(r"^\.input\s+0x[0-9a-f]+\s+0x[0-9a-f]+", fw_map, re.M)


def test_cmake_project_builds_the_same_firmware(toolchain, tmp_path):  # noqa: F811
    """The generated CMakeLists.txt (for IDEs) builds an ELF with the Makefile's memory layout."""
    import shutil
    if not (shutil.which("cmake") and shutil.which("ninja")):
        pytest.skip("cmake/ninja not installed")
    tree, lib = toolchain
    model = _model("tiny_fmnist32")
    gen.generate(model, board=BOARD, out=tmp_path / "fw", tree=tree, lib=lib, log=lambda *_: None)
    make_elf = fw_build.build(tmp_path / "fw", tree=tree, lib=lib, log=lambda *_: None).elf
    b = tmp_path / "fw" / "cmake-build"
    for cmd in (["cmake", "-S", str(tmp_path / "fw"), "-B", str(b), "-G", "Ninja",
                 "-DCMAKE_TOOLCHAIN_FILE=arm-none-eabi.cmake"], ["cmake", "--build", str(b)]):
        res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert res.returncode == 0, res.stdout[-2000:]
    cm, mk = _sections(str(b / "fw.elf")), _sections(make_elf)
    for sec in (".isr_vector", ".stack", ".input", ".arena"):
        assert cm[sec] == mk[sec], sec
    assert abs(cm[".text"][1] - mk[".text"][1]) <= 0.01 * mk[".text"][1]
    assert (b / "fw.bin").is_file()


def test_weights_over_the_internal_flash_are_refused_with_the_reason(tmp_path):
    """mcunet-in4 @160 (1.7 MB model): --sdram does not help, weights stay in the 1 MB flash."""
    model = _model("zoo:mcunet-in4:160")
    v = check_file(str(model), budget.budget(BOARD, external=True))
    assert not v["fits"] and v["flash_over_bytes"] > 0
    assert any("QSPI" in s_ and "internal flash" in s_ for s_ in v["suggestions"])
