"""`flash` / `debug`: the tool choice and the exact command lines, with stand-in tools on PATH that record
their arguments (no board needed)."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from netaug_mcu.firmware import flash
from netaug_mcu.firmware.errors import FirmwareError


def _fake(bin_dir: Path, name: str, stdout: str = "", rc: int = 0) -> None:
    p = bin_dir / name
    p.write_text(f"#!/bin/sh\necho \"$0 $*\" >> {bin_dir}/calls.log\nprintf '%s\\n' '{stdout}'\nexit {rc}\n")
    p.chmod(p.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def env(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    proj = tmp_path / "fw"
    proj.mkdir()
    (proj / "fw.elf").write_bytes(b"\x7fELF")
    (proj / "fw.bin").write_bytes(b"\0" * 16)
    (proj / "project.json").write_text(json.dumps({"board": "stm32f746g-disco"}))
    return bin_dir, proj


def _calls(bin_dir: Path) -> list[str]:
    log = bin_dir / "calls.log"
    return log.read_text().splitlines() if log.is_file() else []


def test_auto_prefers_openocd_with_the_disco_board_file(env):
    bin_dir, proj = env
    for t in ("openocd", "st-flash", "pyocd"):
        _fake(bin_dir, t)
    assert flash.flash(str(proj), probe="0670FF") == 0
    (call,) = _calls(bin_dir)
    assert call.endswith(f"openocd -f board/stm32f7discovery.cfg -c adapter serial 0670FF -c program "
                         f"{proj / 'fw.elf'} verify reset exit")


def test_st_flash_writes_the_bin_at_0x08000000(env):
    bin_dir, proj = env
    _fake(bin_dir, "st-flash")
    flash.flash(str(proj))
    assert _calls(bin_dir)[0].endswith(f"st-flash --reset write {proj / 'fw.bin'} 0x08000000")


def test_pyocd_uses_the_pack_target_and_says_how_to_get_it(env):
    bin_dir, proj = env
    _fake(bin_dir, "pyocd", stdout="stm32f051   STMicroelectronics  builtin")
    with pytest.raises(FirmwareError, match="pyocd pack install stm32f746nghx") as ei:
        flash.flash(str(proj))
    assert ei.value.exit_code == 2
    (bin_dir / "calls.log").unlink()
    _fake(bin_dir, "pyocd", stdout="stm32f746nghx  STMicroelectronics  pack")
    flash.flash(str(proj))
    assert _calls(bin_dir)[-1].endswith(f"pyocd flash -t stm32f746nghx {proj / 'fw.elf'}")


def test_no_tool_and_failures_are_one_line_errors(env):
    bin_dir, proj = env
    with pytest.raises(FirmwareError, match="no flasher found: install one of openocd"):
        flash.flash(str(proj))
    with pytest.raises(FirmwareError, match="st-flash is not installed"):
        flash.flash(str(proj), tool="st-flash")
    _fake(bin_dir, "openocd", rc=1)
    with pytest.raises(FirmwareError, match="openocd failed with exit code 1"):
        flash.flash(str(proj))


def test_refuses_a_qemu_project(env):
    _, proj = env
    (proj / "project.json").write_text(json.dumps({"board": "mps2-an500"}))
    with pytest.raises(FirmwareError, match="generated for mps2-an500"):
        flash.flash(str(proj))


def test_debug_commands(env, capsys):
    bin_dir, proj = env
    assert flash.debug(str(proj), print_only=True) == 0
    server, client = capsys.readouterr().out.splitlines()
    assert server == "openocd -f board/stm32f7discovery.cfg -c 'gdb_port 3333' &"
    assert f"{proj / 'fw.elf'}" in client and "'target extended-remote localhost:3333'" in client
    assert "'break fault_report'" in client
    with pytest.raises(FirmwareError, match="not installed"):
        flash.debug(str(proj))
    assert os.environ["PATH"].startswith(str(bin_dir))
