"""`netaug-mcu flash`: program fw.bin into the STM32F746G-DISCO with st-flash or pyocd."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .errors import FirmwareError

FLASH_BASE = "0x08000000"


def _image(path: str) -> Path:
    p = Path(path)
    if p.is_dir():
        meta = p / "project.json"
        if meta.is_file():
            import json
            board = json.loads(meta.read_text()).get("board")
            if board and board != "stm32f746g-disco":
                raise FirmwareError(f"{p} was generated for {board}, not for the stm32f746g-disco "
                                    f"(run QEMU images with `netaug-mcu hil --port qemu:DIR/fw.elf ...`)")
        p = p / "fw.bin"
    if not p.is_file():
        raise FirmwareError(f"{p} not found (build it first: netaug-mcu firmware MODEL --board stm32f746g-disco "
                            f"--build)")
    if p.suffix not in (".bin", ".elf"):
        raise FirmwareError(f"{p}: expected a .bin or .elf image")
    return p


def flash(path: str, tool: str = "auto", probe: str | None = None) -> int:
    img = _image(path)
    have_st = shutil.which("st-flash") is not None
    have_pyocd = shutil.which("pyocd") is not None
    if tool == "auto":
        tool = "st-flash" if have_st else "pyocd" if have_pyocd else ""
    if not tool or (tool == "st-flash" and not have_st) or (tool == "pyocd" and not have_pyocd):
        raise FirmwareError("no flasher found: install st-flash (Debian: sudo apt-get install stlink-tools) "
                            "or pyocd (pip install pyocd)")
    if tool == "st-flash":
        if img.suffix == ".elf":
            bin_path = img.with_suffix(".bin")
            subprocess.run(["arm-none-eabi-objcopy", "-O", "binary", str(img), str(bin_path)], check=True)
            img = bin_path
        cmd = ["st-flash", "--reset"] + (["--serial", probe] if probe else []) + ["write", str(img), FLASH_BASE]
    else:
        cmd = ["pyocd", "flash", "-t", "stm32f746ng"] + (["-u", probe] if probe else [])
        cmd += [str(img)] + (["--base-address", FLASH_BASE] if img.suffix == ".bin" else [])
    print(" ".join(cmd))
    res = subprocess.run(cmd)
    if res.returncode != 0:
        raise FirmwareError(f"{tool} failed with exit code {res.returncode} (is the board connected over USB "
                            f"and the ST-LINK firmware up to date?)")
    return 0
