"""Firmware generator unit tests (always run: no toolchain, no TFLM tree needed)."""
from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

from netaug_mcu.common import boards
from netaug_mcu.common.tflite_model import load as load_tflite
from netaug_mcu.converter import analyzer, budget
from netaug_mcu.firmware import generate as gen
from netaug_mcu.firmware.errors import FirmwareError, ModelRefused

ROOT = Path(__file__).resolve().parents[1]
MODEL32 = ROOT / "hil_tests" / "data" / "tiny_fmnist32.tflite"
MODEL16 = ROOT / "hil_tests" / "data" / "tiny_fmnist16.tflite"


def _need(p: Path) -> Path:
    if not p.is_file():
        pytest.skip(f"{p} not in this checkout")
    return p


def parse_c_array(src: str) -> bytes:
    body = src[src.index("{") + 1:src.index("};")]
    return bytes(int(v, 16) for v in re.findall(r"0x([0-9a-f]{2})", body))


def test_c_array_roundtrip_and_alignment():
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, size=1000, dtype=np.uint8).tobytes()
    src = gen.model_c_array(data)
    assert parse_c_array(src) == data
    assert "__attribute__((aligned(16))) const unsigned char g_model_data[1000]" in src
    assert "g_model_data_len = 1000u;" in src
    # 16 bytes per line
    assert max(len(re.findall(r"0x", ln)) for ln in src.splitlines()) == 16


def test_c_array_of_a_real_model():
    data = _need(MODEL32).read_bytes()
    assert parse_c_array(gen.model_c_array(data)) == data


def test_resolver_has_exactly_the_ops():
    src = gen.resolver_source(["SOFTMAX", "CONV_2D", "CONV_2D", "DEPTHWISE_CONV_2D", "SOFTMAX"])
    assert "#define NETAUG_NUM_OPS 3" in src
    calls = re.findall(r"r\.(Add\w+)\(\)", src)
    assert calls == ["AddConv2D", "AddDepthwiseConv2D", "AddSoftmax"]


def test_resolver_int8_specialisation():
    src = gen.resolver_source(["CONV_2D", "MEAN", "SOFTMAX"], int8_only={"CONV_2D", "MEAN"})
    assert "r.AddConv2D(tflite::Register_CONV_2D_INT8())" in src
    assert "r.AddMean()" in src            # no int8-only variant exists
    assert "r.AddSoftmax()" in src          # not int8-only in this model


def test_int8_only_ops_from_tensor_types():
    s = load_tflite(_need(MODEL32).read_bytes())
    ops = {o.name for o in s.ops}
    assert gen.int8_only_ops(s) == ops & set(gen.INT8_REGISTRATIONS)
    s.tensors[s.ops[0].outputs[0]].dtype = "int16"     # one int16 activation disables it for that op
    assert s.ops[0].name not in gen.int8_only_ops(s)


def test_resolver_refuses_unknown_op():
    with pytest.raises(ModelRefused, match="HASHTABLE_LOOKUP"):
        gen.resolver_source(["CONV_2D", "HASHTABLE_LOOKUP"])


def test_arena_size_alignment():
    assert gen.arena_size(1000) == 1008 + gen.ARENA_SLACK
    assert gen.arena_size(1024) == 1024 + gen.ARENA_SLACK
    assert gen.arena_size(1) % 16 == 0
    with pytest.raises(FirmwareError):
        gen.arena_size(0)


def test_arena_region_choice():
    f7 = boards.get("stm32f746g-disco")
    assert gen.arena_region(f7, 20 * 1024, 1024)[0] == "DTCM"
    assert gen.arena_region(f7, 100 * 1024, 1024)[0] == "SRAM"
    assert gen.arena_region(f7, 280 * 1024, 1024)[0] == "RAM"     # spans DTCM+SRAM1+SRAM2
    assert gen.arena_region(boards.get("mps2-an500"), 100 * 1024, 1024)[0] == "RAM"


def _config(out: Path) -> dict:
    vals = {}
    for m in re.finditer(r"#define (NETAUG_\w+) (\S+)", (out / "model_config.h").read_text()):
        vals[m.group(1)] = m.group(2).rstrip("u")
    return vals


def test_generate_project_from_model_ops_and_analyzer(tmp_path, monkeypatch):
    """The arena comes from the analyzer's prediction (stubbed here to a known figure)."""
    model = _need(MODEL32)
    calls = []

    real = gen.analyze_model

    def fake_pred(m, board=None):
        calls.append(model)
        return dataclasses.replace(real(m, board), arena_bytes=12345, min_arena_bytes=12345)
    monkeypatch.setattr(gen, "analyze_model", fake_pred)
    proj = gen.generate(model, board="stm32f746g-disco", out=tmp_path / "fw", log=lambda *_: None)
    assert calls == [model]
    cfg = _config(tmp_path / "fw")
    assert int(cfg["NETAUG_ARENA_BYTES"]) == gen.arena_size(12345) == proj.arena_bytes
    summary = load_tflite(model.read_bytes())
    ops = sorted({op.name for op in summary.ops})
    assert proj.ops == ops
    src = (tmp_path / "fw" / "model_ops.h").read_text()
    assert f"#define NETAUG_NUM_OPS {len(ops)}" in src
    assert len(re.findall(r"r\.Add\w+\(", src)) == len(ops)
    # every op of this int8 model that has an int8-only CMSIS-NN kernel gets it (less flash)
    for o in ops:
        if o in gen.INT8_REGISTRATIONS:
            assert f"{gen.INT8_REGISTRATIONS[o]}()" in src
    tin = summary.tensors[summary.inputs[0]]
    assert int(cfg["NETAUG_INPUT_BYTES"]) == int(np.prod(tin.shape))
    assert parse_c_array((tmp_path / "fw" / "model_data.c").read_text()) == model.read_bytes()
    link = (tmp_path / "fw" / "link.ld").read_text()
    assert 'REGION_ALIAS("REGION_ARENA", DTCM)' in link
    assert "ORIGIN = 0x08000000, LENGTH = 1024K" in link
    for f in ("main.cc", "board.c", "startup.c", "sections.ld", "Makefile", "cm7_device.h", "board.h"):
        assert (tmp_path / "fw" / f).is_file()


def test_generate_with_the_real_analyzer(tmp_path):
    model = _need(MODEL16)
    expected = analyzer.analyze(str(model), target="cortex-m7").arena_bytes
    proj = gen.generate(model, board="mps2-an500", out=tmp_path / "fw", log=lambda *_: None)
    assert proj.arena_predicted == expected
    assert int(_config(tmp_path / "fw")["NETAUG_ARENA_BYTES"]) == gen.arena_size(expected)


def test_refuses_over_budget_model(tmp_path):
    model = _need(MODEL32)
    with pytest.raises(ModelRefused, match="tensor arena") as ei:
        gen.generate(model, out=tmp_path / "fw", arena_bytes=400 * 1024, log=lambda *_: None)
    assert ei.value.exit_code == 1
    assert not (tmp_path / "fw" / "main.cc").exists()


def _with_unsupported_op(data: bytes) -> bytes:
    """Rewrite the first operator code to HASHTABLE_LOOKUP (10), an op TFLM does not have."""
    import tflite
    buf = bytearray(data)
    model = tflite.Model.GetRootAsModel(buf, 0)
    oc = model.OperatorCodes(0)
    tab = oc._tab
    patched = False
    for slot, fmt, size in ((4, "<b", 1), (10, "<i", 4)):   # deprecated_builtin_code, builtin_code
        off = tab.Offset(slot)
        if off:
            import struct
            struct.pack_into(fmt, buf, tab.Pos + off, 10)
            patched = True
    if not patched:
        pytest.skip("could not patch the operator code in place")
    return bytes(buf)


def test_refuses_unsupported_op(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(_with_unsupported_op(_need(MODEL16).read_bytes()))
    with pytest.raises(FirmwareError, match="HASHTABLE_LOOKUP") as ei:
        gen.generate(bad, out=tmp_path / "fw", arena_bytes=10000, log=lambda *_: None)
    assert ei.value.exit_code in (1, 2)


def _run_cli(argv) -> tuple[int, str]:
    """Dispatch like netaug_mcu.cli.main: user errors -> exit_code + one line."""
    from netaug_mcu.firmware import commands as cli
    parser = argparse.ArgumentParser(prog="netaug-mcu")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0), ""
    except Exception as exc:  # noqa: BLE001
        code = getattr(exc, "exit_code", None)
        assert isinstance(code, int), f"internal error escaped: {exc!r}"
        return code, str(exc)


def test_cli_errors_are_one_line(tmp_path):
    code, msg = _run_cli(["firmware", str(tmp_path / "missing.tflite"), "--arena-bytes", "1000"])
    assert code == 2 and "not found" in msg and "\n" not in msg
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer at all")
    code, msg = _run_cli(["firmware", str(junk), "--arena-bytes", "1000", "--out", str(tmp_path / "o")])
    assert code == 2 and "\n" not in msg
    code, msg = _run_cli(["firmware", str(_need(MODEL32)), "--arena-bytes", str(500 * 1024),
                          "--out", str(tmp_path / "o")])
    assert code == 1 and "arena" in msg


def test_flash_without_image_is_a_clear_error(tmp_path):
    code, msg = _run_cli(["flash", str(tmp_path)])
    assert code == 2 and "not found" in msg


def test_refusal_carries_the_budget_gate_message(tmp_path, monkeypatch):
    """An over-budget verdict of the analyzer's `check` gate stops generation with its figures."""
    model = _need(MODEL32)
    real = budget.check(analyzer.analyze(model, "cortex-m7"), budget.budget("stm32f746g-disco"), str(model))
    assert real.fits          # the tiny model fits ...
    verdict = dataclasses.replace(real, fits=False, ram_over_bytes=1234, min_arena_bytes=real.arena_budget + 1234,
                                  suggestions=["shrink the tensors live at op 3"])
    monkeypatch.setattr(budget, "check", lambda *a, **k: verdict)   # ... pretend it does not
    with pytest.raises(ModelRefused, match="1234 B over.*shrink the tensors") as ei:
        gen.generate(model, out=tmp_path / "fw", log=lambda *_: None)
    assert ei.value.exit_code == 1


def test_placement_reserves_the_db_buffer_a_float32_benchmark_reads(tmp_path, monkeypatch):
    """--mlperf ad01 reads float32 dataset files: the .input buffer is 4x the int8 tensor, and the placement
    (check + linker script) must reserve that, not the tensor's bytes."""
    model = _need(MODEL16)
    seen = []
    real = gen._check_fits

    def spy(model_path, board, a, arena, input_bytes, *rest, **kw):
        seen.append(input_bytes)
        return real(model_path, board, a, arena, input_bytes, *rest, **kw)
    monkeypatch.setattr(gen, "_check_fits", spy)
    gen.generate(model, board="stm32f746g-disco", out=tmp_path / "kws", mlperf="kws01", log=lambda *_: None)
    with pytest.raises(FirmwareError, match="MSE"):     # this model's output is not input-sized
        gen.generate(model, board="stm32f746g-disco", out=tmp_path / "ad", mlperf="ad01", log=lambda *_: None)
    n = load_tflite(model.read_bytes()).io_tensor("input").nbytes
    assert seen == [n, 4 * n]
