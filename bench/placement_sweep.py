"""Placement sweep: `check` verdict vs the STM32F746 firmware link, model by model.

For each .tflite: the gate's verdict with the placement planner (`check --board stm32f746g-disco`),
the old single-formula verdict (arena + 28 KiB reserve <= 320 KiB, what `check` said before), the
planner's layout, and - when arm-none-eabi-gcc and a built libtflm.a are present - the result of
`netaug-mcu firmware MODEL --board stm32f746g-disco --build` with the ELF's section addresses
checked against the plan. Writes bench/results/placement_sweep.{json,md}.

    nice -n 10 .venv/bin/python bench/placement_sweep.py MODEL.tflite ... [--sdram]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from netaug_mcu.common import boards, placement
from netaug_mcu.common.errors import UserError
from netaug_mcu.common.fsio import atomic_write
from netaug_mcu.common.tflite_model import load
from netaug_mcu.converter import analyzer, budget
from netaug_mcu.firmware import build as fw_build
from netaug_mcu.firmware import generate as gen
from netaug_mcu.firmware import tflm_build

BOARD = "stm32f746g-disco"
RESULTS = Path(__file__).resolve().parent / "results"


def section_addresses(elf: str) -> dict[str, tuple[int, int]]:
    out = subprocess.run(["arm-none-eabi-size", "-A", "-x", elf], stdout=subprocess.PIPE, text=True,
                         check=True).stdout
    return {p[0]: (int(p[2], 16), int(p[1], 16)) for p in (ln.split() for ln in out.splitlines())
            if len(p) == 3 and p[0].startswith(".")}


def elf_matches_plan(elf: str, plan: dict) -> list[str]:
    """Sections .stack/.input/.arena lie inside the regions the plan put them in."""
    secs = section_addresses(elf)
    regions = {r["name"]: (r["origin"], r["origin"] + r["bytes"]) for r in plan["regions"]}
    errors = []
    for sec, item in ((".stack", "stack"), (".input", "input"), (".arena", "arena")):
        lo, hi = regions[plan["where"][item]]
        addr, size = secs[sec]
        if not (lo <= addr and addr + size <= hi):
            errors.append(f"{sec} 0x{addr:08X}+{size} outside {plan['where'][item]}")
    return errors


def row(model_path: Path, sdram: bool, lib_ok: bool, work: Path) -> dict:
    m = load(model_path)
    a = analyzer.analyze(m, "cortex-m7", board=BOARD)
    inp = placement.input_buffer_bytes(m)
    v = budget.check(a, budget.budget(BOARD, external=sdram), str(model_path), input_bytes=inp)
    old = budget.check(a, budget.budget(BOARD, reserve=str(boards.get(BOARD).reserve_bytes)), str(model_path))
    r = {"model": model_path.name, "input_bytes": inp, "arena_bytes": a.min_arena_bytes,
         "flash_bytes": a.flash_bytes, "check": "fits" if v.fits else "over", "check_exit": 0 if v.fits else 1,
         "old_check": "fits" if old.fits else "over", "layout": (v.placement or {}).get("layout", ""),
         "where": (v.placement or {}).get("where", {}), "reason": "" if v.fits else v.refusal(),
         "arena_budget": v.arena_budget, "margin_bytes": v.ram_margin_bytes, "link": "not run"}
    if not lib_ok:
        r["link"] = "skipped (no arm-none-eabi-gcc or libtflm.a)"
        return r
    out = work / model_path.stem
    try:
        proj = gen.generate(model_path, board=BOARD, out=out, sdram=sdram, log=lambda *_: None)
        res = fw_build.build(out, log=lambda *_: None)
    except UserError as exc:
        r["link"] = f"refused (exit {exc.exit_code}): {exc}"
        return r
    bad = elf_matches_plan(res.elf, proj.placement)
    r["link"] = "linked" + (f", ELF off plan: {bad}" if bad else ", sections inside the planned regions")
    r["elf_ram"] = res.ram
    r["elf_sections"] = {k: v for k, v in res.sections.items() if k in (".stack", ".data", ".bss", ".input", ".arena")}
    return r


def markdown(rows: list[dict]) -> str:
    lines = ["| model | input B | arena B | old check | check (planner) | regions | F746 link |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        where = ", ".join(f"{k}:{v}" for k, v in r["where"].items() if k in ("input", "arena")) or "-"
        verdict = f"{r['check']} (exit {r['check_exit']}, margin {r['margin_bytes']:,} B)"
        lines.append(f"| {r['model']} | {r['input_bytes']:,} | {r['arena_bytes']:,} | {r['old_check']} | "
                     f"{verdict} | {r['layout']} {where} | {r['link'].split(':')[0]} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--sdram", action="store_true")
    ap.add_argument("--name", default="placement_sweep")
    args = ap.parse_args(argv)
    tree, _ = tflm_build.find_tree()
    lib_ok = bool(tflm_build.toolchain() and tree and (tflm_build.library_dir(tree) / "complete").is_file())
    with tempfile.TemporaryDirectory(prefix="netaug-sweep-") as d:
        rows = [row(p, args.sdram, lib_ok, Path(d)) for p in args.models]
    doc = {"board": BOARD, "sdram": args.sdram, "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    atomic_write(RESULTS / f"{args.name}.json", json.dumps(doc, indent=1) + "\n")
    atomic_write(RESULTS / f"{args.name}.md", markdown(rows))
    sys.stdout.write(markdown(rows))
    agree = all((r["check"] == "fits") == r["link"].startswith("linked") for r in rows if r["link"] != "not run"
                and not r["link"].startswith("skipped"))
    print(f"check and link agree on every model: {agree}")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
