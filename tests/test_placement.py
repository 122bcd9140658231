"""The placement planner (common.placement), the gate that uses it (`check`) and the linker scripts it
generates. Always run: no toolchain needed."""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from netaug_mcu.common import boards
from netaug_mcu.common import placement as P
from netaug_mcu.converter import analyzer, budget
from netaug_mcu.firmware import generate as gen
from netaug_mcu.firmware.errors import ModelRefused

ROOT = Path(__file__).resolve().parents[1]
MODEL32 = ROOT / "hil_tests" / "data" / "tiny_fmnist32.tflite"
F7 = boards.get("stm32f746g-disco")
STACK, RUNTIME = F7.reserve["stack"], F7.reserve["firmware_ram"]
DTCM, SRAM, RAM = 65536, 262144, 327680


def test_board_regions_fastest_first():
    regs = P.board_regions(F7)
    assert [(r.name, r.origin, r.bytes) for r in regs] == [
        ("DTCM", 0x20000000, DTCM), ("SRAM", 0x20010000, SRAM), ("RAM", 0x20000000, RAM)]
    assert regs[0].tier < regs[1].tier < regs[2].tier
    assert [r.name for r in P.board_regions(boards.get("mps2-an500"))] == ["RAM"]


def test_tiny_model_all_in_dtcm():
    p = P.plan(F7, 5504, 1024)
    assert p.fits and p.layout == "split" and set(p.where.values()) == {"DTCM"}
    d = p.region("DTCM")
    assert d.items["stack"] == [0x20000000, STACK]            # stack first: overflow -> MPU guard
    assert d.items["arena"][0] % 16 == 0 and d.used == STACK + RUNTIME + 1024 + 5504


def test_issue_case_input_over_46k_goes_to_sram():
    """mbv3-w0.35 @128: input 49,152 B + arena 199,136 B. DTCM cannot hold stack + runtime + input
    (the link failure of the issue); the planner moves the input buffer next to the arena in SRAM."""
    assert STACK + RUNTIME + 49152 > DTCM
    p = P.plan(F7, 199136, 49152)
    assert p.fits and p.where == {"stack": "DTCM", "runtime": "DTCM", "input": "SRAM", "arena": "SRAM"}
    assert p.region("SRAM").used == 49152 + 199136 <= SRAM


def test_small_arena_stays_in_dtcm_when_only_the_input_is_big():
    p = P.plan(F7, 30000 // 16 * 16, 49152)
    assert p.where["arena"] == "DTCM" and p.where["input"] == "SRAM"


def test_span_layout_and_exact_boundary():
    inp = 62208
    limit = P.max_arena_array(F7, inp)
    assert limit == RAM - STACK - RUNTIME - inp               # the whole contiguous run, nothing lost
    ok, over = P.plan(F7, limit, inp), P.plan(F7, limit + 16, inp)
    assert ok.fits and ok.layout == "span" and ok.region("RAM").used == RAM
    assert not over.fits and "no placement" in over.reason and f"{RAM:,} B of RAM" in over.reason
    assert P.arena_used_limit(limit) + 16 <= limit and P.arena_array_bytes(P.arena_used_limit(limit)) == limit


def test_sizes_come_from_the_board_reserve_without_heap():
    p = P.plan(F7, 1024, 16)
    assert p.sizes == {"stack": STACK, "runtime": RUNTIME, "input": 16, "arena": 1024}
    assert "heap" not in p.sizes      # heap-free runtime: nothing calls malloc


def test_arena_array_rounding():
    assert P.arena_array_bytes(1) == 32 and P.arena_array_bytes(16) == 32 and P.arena_array_bytes(17) == 48
    with pytest.raises(ValueError):
        P.arena_array_bytes(0)


def _analysis(arena: int):
    a = analyzer.analyze(str(MODEL32), "cortex-m7", board="stm32f746g-disco")
    return dataclasses.replace(a, arena_bytes=arena, min_arena_bytes=arena)


@pytest.mark.parametrize("inp", [1024, 49152, 62208])
def test_check_verdict_is_the_planner_boundary(inp):
    """`check` fits exactly up to the planner's limit and is over (with the planner's reason) 16 B later."""
    bud = budget.budget("stm32f746g-disco")
    limit = P.arena_used_limit(P.max_arena_array(F7, inp))
    ok = budget.check(_analysis(limit), bud, "m", input_bytes=inp)
    over = budget.check(_analysis(limit + 16), bud, "m", input_bytes=inp)
    assert ok.fits and ok.ram_margin_bytes == 0 and ok.placement["fits"]
    assert not over.fits and over.ram_over_bytes == 16 and not over.placement["fits"]
    assert over.arena_budget == limit and over.sram_bytes - over.reserve_bytes == limit
    assert over.refusal().startswith("no placement:")


def test_custom_budget_keeps_the_single_formula():
    bud = budget.budget("stm32f746g-disco", reserve="28K")
    res = budget.check(_analysis(1024), bud, "m", input_bytes=1024)
    assert res.placement is None and res.arena_budget == RAM - 28 * 1024


def test_check_json_has_the_placement(capsys):
    from netaug_mcu.cli import main
    rc = main(["check", str(MODEL32), "--board", "stm32f746g-disco", "--json", "-"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["placement"]["layout"] == "split" and doc["placement"]["where"]["arena"] == "DTCM"


def _link(tmp_path, arena_used: int, monkeypatch, board="stm32f746g-disco") -> tuple[str, dict]:
    real = gen.analyze_model
    monkeypatch.setattr(gen, "analyze_model", lambda m, *b: dataclasses.replace(
        real(m, *b), arena_bytes=arena_used, min_arena_bytes=arena_used))
    proj = gen.generate(MODEL32, board=board, out=tmp_path / "fw", log=lambda *_: None)
    return (tmp_path / "fw" / "link.ld").read_text(), proj.placement


def _aliases(ld: str) -> dict:
    return dict(re.findall(r'REGION_ALIAS\("REGION_(\w+)", (\w+)\);', ld))


def test_linker_script_follows_the_plan(tmp_path, monkeypatch):
    ld, plan = _link(tmp_path, 5488, monkeypatch)
    assert _aliases(ld) == {"STACK": "DTCM", "DATA": "DTCM", "INPUT": "DTCM", "ARENA": "DTCM"}
    assert f"STACK_SIZE = {STACK};" in ld and f"RUNTIME_RAM_MAX = {RUNTIME};" in ld
    assert "DTCM  (rwx) : ORIGIN = 0x20000000, LENGTH = 64K" in ld
    assert "SRAM  (rwx) : ORIGIN = 0x20010000, LENGTH = 256K" in ld
    ld, plan = _link(tmp_path, 150000, monkeypatch)
    assert _aliases(ld) == {"STACK": "DTCM", "DATA": "DTCM", "INPUT": "DTCM", "ARENA": "SRAM"}
    ld, plan = _link(tmp_path, 290000, monkeypatch)          # > SRAM1+2: one run through 320 KB
    assert set(_aliases(ld).values()) == {"RAM"} and plan["layout"] == "span"
    sections = (tmp_path / "fw" / "sections.ld").read_text()
    assert "> REGION_INPUT" in sections and "ASSERT(_ebss - _sdata <= RUNTIME_RAM_MAX" in sections
    assert 'section(".input")' in (tmp_path / "fw" / "main.cc").read_text()


def test_generator_refuses_what_cannot_be_placed(tmp_path, monkeypatch):
    limit = P.arena_used_limit(P.max_arena_array(F7, 1024))
    _link(tmp_path, limit, monkeypatch)                      # exactly at the limit: generated
    with pytest.raises(ModelRefused, match="no placement") as ei:
        _link(tmp_path, limit + 16, monkeypatch)
    assert ei.value.exit_code == 1


def test_qemu_board_uses_one_region(tmp_path, monkeypatch):
    ld, plan = _link(tmp_path, 150000, monkeypatch, board="mps2-an500")
    assert set(_aliases(ld).values()) == {"RAM"}
