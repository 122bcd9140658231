"""The board database (common/data/boards.json): schema, sane regions, coverage; `check --all-boards`
and `check --list-boards` agree with `check --board`."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from netaug_mcu import cli
from netaug_mcu.common import boards
from netaug_mcu.converter.analyzer.facts import DATA_DIR
from keras_models import model_path

REQUIRED = {"mcu": str, "vendor": str, "core": str, "exact": bool, "clock_mhz": int, "flash": dict,
            "regions": list, "dsp": bool, "kernels": str, "source": str}
NULLABLE = ("target", "fpu", "mve", "reserve")
CORES = {"cortex-m0+", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55", "xtensa-lx6", "xtensa-lx7",
         "riscv32-rv32imc"}
KERNELS = {"cmsis_nn_dsp", "cmsis_nn_mve", "cmsis_nn_c", "esp_nn", "reference"}


def _doc():
    return json.loads(boards.PATH.read_text())


def _targets():
    return set(json.loads((DATA_DIR / "targets.json").read_text())["targets"])


def run(argv, capsys):
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("name", sorted(_doc()["boards"]))
def test_board_has_every_field(name):
    b = _doc()["boards"][name]
    for key, typ in REQUIRED.items():
        assert isinstance(b.get(key), typ), f"{name}: {key} missing or not {typ.__name__}"
    for key in NULLABLE:
        assert key in b, f"{name}: {key} missing"
    assert b["source"].strip() and b["mcu"].strip()
    assert b["core"] in CORES and b["kernels"] in KERNELS
    assert b["target"] is None or b["target"] in _targets() - {"host"}
    assert b["target"] is not None or not b["exact"], "no model can't be exact"
    if b["exact"]:
        assert b["target"] == b["core"], f"{name}: exact means the core's own target"
    assert b["fpu"] in (None, "sp", "dp") and b["mve"] in (None, "int", "int+fp")
    assert (b["kernels"] == "cmsis_nn_mve") == (b["mve"] is not None)
    assert 1 <= b["clock_mhz"] <= 2000
    assert b["reserve"] == "default" or set(b["reserve"]) == {"stack", "heap", "firmware_ram"}


@pytest.mark.parametrize("name", sorted(_doc()["boards"]))
def test_board_regions_are_sane(name):
    b = boards.get(name)
    assert b.flash_bytes > 0 and b.flash_origin >= 0
    assert b.data_regions, "a board needs data RAM"
    spans = sorted((r.origin, r.end, r.name) for r in b.regions)
    assert len({r.name for r in b.regions}) == len(b.regions)
    for (o1, e1, n1), (o2, _, n2) in zip(spans, spans[1:]):
        assert e1 <= o2, f"{name}: {n1} overlaps {n2}"
    for r in b.regions:
        assert 1024 <= r.bytes <= 64 << 20 and r.origin % 16 == 0, f"{name}: {r.name}"
        assert r.usage in ("data", "code", "data only, no DMA") and r.kind in ("sram", "psram")
    # the budget is one contiguous run, never the total when the blocks are apart
    assert b.sram_bytes == max(n for _, n in b.contiguous_runs) <= sum(r.bytes for r in b.data_regions)
    run_regions = [r for r in b.data_regions if r.name in b.largest_run_regions()]
    assert sum(r.bytes for r in run_regions) == b.sram_bytes
    assert b.reserve_bytes > 0


def test_database_covers_what_tinyml_users_deploy_to():
    bs = [boards.get(n) for n in boards.names()]
    assert len(bs) >= 40
    mcus = " ".join(b.mcu for b in bs)
    for chip in ("STM32F4", "STM32F7", "STM32H7", "STM32L4", "STM32U5", "nRF52840", "nRF5340", "RP2040",
                 "RP2350", "ESP32-S3", "ESP32-D0WD", "i.MX RT1062", "i.MX RT1176", "Apollo4", "Alif Ensemble",
                 "EFR32MG24"):
        assert chip in mcus, chip
    names = boards.names()
    for board in ("arduino-nano-33-ble", "arduino-portenta-h7", "arduino-nicla-vision", "teensy-4.0",
                  "teensy-4.1", "esp32-s3-devkitc-1-n8", "esp32-s3-devkitc-1-n8r8"):
        assert board in names
    psram = [b for b in bs if any(r.kind == "psram" for r in b.regions)]
    assert any("ESP32-S3" in b.mcu for b in psram) and any("ESP32-D0WD" in b.mcu for b in psram)


def test_known_contiguous_runs():
    assert boards.get("stm32f746g-disco").sram_bytes == 320 * 1024
    assert boards.get("rpi-pico").sram_bytes == 264 * 1024          # SRAM0-5 contiguous
    assert boards.get("stm32h743zi").sram_bytes == 512 * 1024       # AXI SRAM, not the 1 MB total
    assert boards.get("nucleo-f429zi").sram_bytes == 192 * 1024     # CCM apart
    assert boards.get("stm32f429i-disc1").largest_run_regions() == ["SRAM1", "SRAM2", "SRAM3"]
    assert boards.get("esp32-s3-devkitc-1-n8r8").largest_run_regions() == ["PSRAM (octal, mapped)"]


@pytest.fixture(scope="module")
def residual():
    return str(model_path("residual"))


def test_all_boards_rows_agree_with_single_board_check(residual, tmp_path, capsys):
    j, x = tmp_path / "all.json", tmp_path / "all.xml"
    rc, out, _ = run(["check", residual, "--all-boards", "--json", str(j), "--junit", str(x)], capsys)
    doc = json.loads(j.read_text())
    assert rc == 0 and "smallest board that fits" in out
    rows = doc["boards"]
    assert {r["board"] for r in rows} == set(boards.names())
    fits = [r for r in rows if r["verdict"] == "fits"]
    assert doc["smallest_fit"] == fits[0]["board"]
    assert [r["arena_budget"] for r in fits] == sorted(r["arena_budget"] for r in fits)
    order = [r["verdict"] for r in rows]
    assert order == sorted(order, key=["fits", "over", "unsupported core"].index)
    for r in rows:
        if r["verdict"] == "unsupported core":
            assert boards.get(r["board"]).target is None and r["fits"] is None
            continue
        rc1, out1, _ = run(["check", residual, "--board", r["board"], "--json", "-"], capsys)
        single = json.loads(out1)
        assert (rc1 == 0) == single["fits"] == r["fits"], r["board"]
        assert single["min_arena_bytes"] == r["min_arena_bytes"] and single["flash_bytes"] == r["flash_bytes"]
        assert single["arena_budget"] == r["arena_budget"]
        if not r["exact"]:
            assert "derived" in r and any("derived" in n for n in single["notes"])
    suite = ET.parse(x).getroot().find("testsuite")
    assert int(suite.get("tests")) == len(rows)
    assert int(suite.get("skipped")) == doc["counts"]["unsupported core"]
    assert int(suite.get("failures")) == doc["counts"]["over"]


def test_all_boards_over_everywhere_exits_1(residual, capsys):
    rc, out, _ = run(["check", residual, "--all-boards", "--reserve", "1024M", "--json", "-"], capsys)
    doc = json.loads(out)
    assert rc == 1 and doc["smallest_fit"] is None
    over = [r for r in doc["boards"] if r["verdict"] == "over"]
    assert over and all(r["ram_over_bytes"] > 0 for r in over)
    rc, out, _ = run(["check", residual, "--all-boards", "--reserve", "1024M"], capsys)
    assert "over by" in out and "on SRAM" in out and "unsupported core" in out


def test_all_boards_rejects_single_board_flags(residual, capsys):
    rc, _, err = run(["check", residual, "--all-boards", "--board", "nrf52840"], capsys)
    assert rc == 2 and "--board" in err and "Traceback" not in err


def test_unsupported_core_board_refuses_without_target(residual, capsys):
    rc, _, err = run(["check", residual, "--board", "esp32-s3-devkitc-1-n8"], capsys)
    assert rc == 2 and "no analyzer memory model" in err
    rc, out, _ = run(["check", residual, "--board", "esp32-s3-devkitc-1-n8", "--target", "cortex-m7"], capsys)
    assert rc == 0 and "FITS" in out


def test_list_boards_without_model(capsys):
    rc, out, _ = run(["check", "--list-boards", "--json"], capsys)
    rows = json.loads(out)
    assert rc == 0 and len(rows) == len(boards.names()) >= 40
    f746 = next(r for r in rows if r["board"] == "stm32f746g-disco")
    assert f746["sram_run_bytes"] == 320 * 1024 and f746["arena_regions"] == ["DTCM", "SRAM1", "SRAM2"]
    rc, out, _ = run(["check", "--list-boards"], capsys)
    assert rc == 0 and "rpi-pico" in out and "(derived)" in out and "unsupported" in out
    rc, _, err = run(["check"], capsys)
    assert rc == 2 and "give one or more .tflite" in err
