"""`netaug-mcu flash` and `netaug-mcu debug`: program / debug the STM32F746G-DISCO through its ST-LINK.

Flashers, in the order `--tool auto` tries them (the first one installed wins):
  openocd   `openocd -f board/stm32f7discovery.cfg -c "program fw.elf verify reset exit"` (OpenOCD's own
            board file for the 32F746GDISCOVERY; Debian package openocd)
  st-flash  `st-flash --reset write fw.bin 0x08000000` (Debian package stlink-tools)
  pyocd     `pyocd flash -t stm32f746nghx fw.elf`: the STM32F746 is not a pyOCD built-in target; the
            board's ST-LINK reports it as stm32f746nghx, which comes from the Keil.STM32F7xx_DFP CMSIS
            pack (`pyocd pack install stm32f746nghx`, needs the internet once)
`debug` starts OpenOCD's GDB server (port 3333) and arm-none-eabi-gdb / gdb-multiarch on fw.elf.
"""
from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path

from .errors import FirmwareError

FLASH_BASE = "0x08000000"
OPENOCD_BOARD = "board/stm32f7discovery.cfg"
PYOCD_TARGET = "stm32f746nghx"
TOOLS = ("openocd", "st-flash", "pyocd")
INSTALL = {"openocd": "sudo apt-get install openocd", "st-flash": "sudo apt-get install stlink-tools",
           "pyocd": "pip install pyocd && pyocd pack install stm32f746nghx"}
GDBS = ("arm-none-eabi-gdb", "gdb-multiarch")


def _image(path: str, suffix: str | None = None) -> Path:
    p = Path(path)
    if p.is_dir():
        meta = p / "project.json"
        if meta.is_file():
            board = json.loads(meta.read_text()).get("board")
            if board and board != "stm32f746g-disco":
                raise FirmwareError(f"{p} was generated for {board}, not for the stm32f746g-disco "
                                    f"(run QEMU images with `netaug-mcu hil --port qemu:DIR/fw.elf ...`)")
        p = p / f"fw{suffix or '.elf'}"
    if not p.is_file():
        raise FirmwareError(f"{p} not found (build it first: netaug-mcu firmware MODEL --board stm32f746g-disco "
                            f"--build)")
    if p.suffix not in (".bin", ".elf"):
        raise FirmwareError(f"{p}: expected a .bin or .elf image")
    return p


def choose_tool(tool: str = "auto") -> str:
    if tool == "auto":
        for t in TOOLS:
            if shutil.which(t):
                return t
        raise FirmwareError("no flasher found: install one of " + "; ".join(f"{t} ({INSTALL[t]})" for t in TOOLS))
    if tool not in TOOLS:
        raise FirmwareError(f"unknown flasher '{tool}' (choose from {', '.join(TOOLS)})")
    if not shutil.which(tool):
        raise FirmwareError(f"{tool} is not installed ({INSTALL[tool]})")
    return tool


def _openocd_base(probe: str | None) -> list[str]:
    # `adapter serial` (OpenOCD >= 0.11) picks one ST-LINK among several
    return ["openocd", "-f", OPENOCD_BOARD] + (["-c", f"adapter serial {probe}"] if probe else [])


def _pyocd_has_target() -> bool:
    res = subprocess.run(["pyocd", "list", "--targets"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    return res.returncode == 0 and PYOCD_TARGET in res.stdout.lower()


def _as_bin(img: Path) -> Path:
    if img.suffix == ".bin":
        return img
    bin_path = img.with_suffix(".bin")
    if not bin_path.is_file() or bin_path.stat().st_mtime < img.stat().st_mtime:
        subprocess.run(["arm-none-eabi-objcopy", "-O", "binary", str(img), str(bin_path)], check=True)
    return bin_path


def flash_command(img: Path, tool: str, probe: str | None = None) -> list[str]:
    if tool == "openocd":
        return _openocd_base(probe) + ["-c", f"program {img} verify reset exit"
                                       + (f" {FLASH_BASE}" if img.suffix == ".bin" else "")]
    if tool == "st-flash":
        return ["st-flash", "--reset"] + (["--serial", probe] if probe else []) + ["write", str(_as_bin(img)),
                                                                                   FLASH_BASE]
    if not _pyocd_has_target():
        raise FirmwareError(f"pyOCD has no {PYOCD_TARGET} target (not built in): run `pyocd pack install "
                            f"{PYOCD_TARGET}` once (Keil.STM32F7xx_DFP pack), or use --tool openocd/st-flash")
    return (["pyocd", "flash", "-t", PYOCD_TARGET] + (["-u", probe] if probe else []) + [str(img)]
            + (["--base-address", FLASH_BASE] if img.suffix == ".bin" else []))


def flash(path: str, tool: str = "auto", probe: str | None = None) -> int:
    img = _image(path)
    tool = choose_tool(tool)
    cmd = flash_command(img, tool, probe)
    print(" ".join(cmd))
    res = subprocess.run(cmd)
    if res.returncode != 0:
        raise FirmwareError(f"{tool} failed with exit code {res.returncode} (is the board connected over USB "
                            f"(CN14, ST-LINK) and the ST-LINK firmware up to date?)")
    return 0


def debug_commands(elf: Path, probe: str | None = None, port: int = 3333) -> tuple[list[str], list[str]]:
    """(GDB server command, GDB command) for a debug session on the board."""
    server = _openocd_base(probe) + ["-c", f"gdb_port {port}"]
    gdb = next((g for g in GDBS if shutil.which(g)), GDBS[0])
    client = [gdb, str(elf), "-ex", f"target extended-remote localhost:{port}", "-ex", "monitor reset halt",
              "-ex", "load", "-ex", "break fault_report", "-ex", "break main"]
    return server, client


def debug(path: str, probe: str | None = None, port: int = 3333, print_only: bool = False) -> int:
    elf = _image(path, ".elf")
    server, client = debug_commands(elf, probe, port)
    if print_only:
        print(shlex.join(server) + " &")
        print(shlex.join(client))
        return 0
    missing = [t for t in (server[0], client[0]) if not shutil.which(t)]
    if missing:
        raise FirmwareError(f"{' and '.join(missing)} not installed (sudo apt-get install openocd gdb-multiarch); "
                            f"`netaug-mcu debug {path} --print` shows the commands")
    srv = subprocess.Popen(server)
    try:
        return subprocess.run(client).returncode
    finally:
        srv.terminate()
        try:
            srv.wait(5)
        except subprocess.TimeoutExpired:
            srv.kill()
