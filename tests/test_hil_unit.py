"""HIL unit tests: protocol helpers, board engine state machine, dataset preprocessing, journal, report, targets."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from netaug_mcu.common import preprocess as D
from netaug_mcu.common.datasets import load_fashion_mnist
from netaug_mcu.hil import protocol as P
from netaug_mcu.hil.model import ModelError, load_model
from netaug_mcu.hil.runner import Journal, percentile
from netaug_mcu.hil.virtual_board import BoardEngine, BoardError, Faults

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "hil_tests" / "data" / "tiny_fmnist32.tflite"


# ---- protocol ------------------------------------------------------------------------------------
def test_crc32_is_ieee():
    assert P.crc32(b"123456789") == 0xCBF43926


def test_db_commands_fit_and_reassemble():
    data = bytes(range(256)) * 4 + b"\x01\x02\x03"
    cmds = P.db_commands(data)
    assert cmds[0] == f"db load {len(data)}"
    assert all(len(c) <= P.MAX_COMMAND for c in cmds)
    assert b"".join(bytes.fromhex(c.split()[1]) for c in cmds[1:]) == data
    with pytest.raises(ValueError):
        P.command_bytes("x" * 81)


@pytest.mark.parametrize("n", [400, 1024, 3072, 27648])
def test_wire_efficiency(n):
    assert n / P.wire_bytes_binary(n) >= 0.95
    assert 0.44 <= n / P.wire_bytes_hex(n) <= 0.48


def test_clean_line_drops_noise():
    assert P.clean_line(b"\x93\x01\xffm-ready\r\n") == "m-ready"
    assert P.clean_line(b"\x80\x81\x82\r\n") is None
    assert P.clean_line(b"e-[bload crc mismatch]\r\n") == "e-[bload crc mismatch]"


def test_parse_info_and_brackets():
    line = P.format_info({"model": "m", "arena": 100, "timer": "dwt", "bin": 1})
    assert P.parse_info(P.bracket(line, "m-info")) == {"model": "m", "arena": 100, "timer": "dwt", "bin": 1}
    assert P.bracket("m-results-q-[1,-2,3]", "m-results-q") == "1,-2,3"
    assert P.bracket("m-results-q-[1,-2,3]", "m-results") is None
    assert P.parse_lap("m-lap-us-123") == 123 and P.parse_lap("m-lap-us-") is None
    with pytest.raises(ValueError):
        P.parse_info("a=1,broken")


# ---- engine --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model():
    return load_model(MODEL)


def _lines(b: bytes) -> list[str]:
    return [x for x in b.decode("latin-1").split("\r\n") if x]


def test_engine_boot_banner_and_commands(model):
    e = BoardEngine(model)
    assert _lines(e.boot())[0] == P.BANNER_FIRST and _lines(e.boot())[-2:] == [P.INIT_DONE, P.READY]
    assert _lines(e.feed(b"name%")) == ["m-name-dut-[netaug-mcu]", P.READY]
    assert _lines(e.feed(b"%")) == ["e-[Unknown command: ]", P.READY]


def test_engine_byte_by_byte_equals_bulk(model):
    data = np.arange(model.input.nbytes, dtype=np.uint8).tobytes()
    stream = P.command_bytes(P.bload_command(data)) + data + b"infer 1 0%results%"
    a, b = BoardEngine(model), BoardEngine(model)
    out_bulk = _lines(a.feed(stream))
    out_bytes = []
    for i in range(len(stream)):
        out_bytes += _lines(b.feed(stream[i:i + 1]))
    strip = [x for x in out_bulk if not x.startswith(("m-lap-us-", "m-infer-cycles-"))]
    assert strip == [x for x in out_bytes if not x.startswith(("m-lap-us-", "m-infer-cycles-"))]
    assert out_bulk[-3].startswith("m-results-[") and out_bulk[-2].startswith("m-results-q-[")


def test_engine_db_is_bounds_checked(model):
    e = BoardEngine(model)
    n = model.input.nbytes
    e.feed(f"db load {n}%".encode())
    for c in P.db_commands(bytes(n))[1:-1]:
        e.feed(P.command_bytes(c))
    # surplus digits in the completing command are disregarded (reference): m-load-done, buffer not overrun
    assert _lines(e.feed(P.command_bytes("db " + "11" * 38)))[0] == P.LOAD_DONE
    assert len(e.db_buf) == n and e.db_pos == n
    assert _lines(e.feed(P.command_bytes("db " + "22" * 38))) == [P.READY]    # beyond N: ignored
    last = len(bytes.fromhex(P.db_commands(bytes(n))[-1].split()[1]))
    assert e.input == bytes(n - last) + b"\x11" * last


def test_engine_bload_timeout_and_crc(model):
    e = BoardEngine(model)
    data = bytes(model.input.nbytes)
    assert _lines(e.feed(P.command_bytes(P.bload_command(data)), now=100.0)) == [P.BLOAD_READY]
    e.feed(data[:10], now=100.1)
    assert e.poll(now=100.5) == b""
    assert _lines(e.poll(now=100.7)) == ["e-[bload timeout]", P.READY]
    bad = P.command_bytes(f"bload {len(data)} {P.crc32(data) ^ 1:08x}") + data
    assert _lines(e.feed(bad))[-2:] == ["e-[bload crc mismatch]", P.READY] and e.input is None


def test_engine_prof_replies_like_the_firmware(model):
    e = BoardEngine(model)
    assert _lines(e.feed(b"prof%")) == [P.ERR_NOT_LOADED.format(have=0, need=model.input.nbytes), P.READY]
    assert _lines(e.feed(b"prof 1%")) == ["e-[usage: prof]", P.READY]
    data = bytes(model.input.nbytes)
    e.feed(P.command_bytes(P.bload_command(data)) + data)
    out = _lines(e.feed(b"prof%"))
    assert out[-2:] == ["m-prof-done", P.READY], out
    from netaug_mcu.common.tflite_model import load
    n_ops = len(load(MODEL.read_bytes()).operators)
    assert out[0] == f"m-prof-ops-{n_ops}" and out[2].startswith("m-prof-total-")
    assert len(out[1].removeprefix("m-prof-ticks-[").rstrip("]").split(",")) == n_ops


def test_engine_handler_failure_is_one_error_line(model, monkeypatch):
    e = BoardEngine(model)
    monkeypatch.setattr(e, "_cmd_name", lambda args, now: 1 / 0)
    out = _lines(e.feed(b"name%"))
    assert out == ["e-[virtual board internal error in name: ZeroDivisionError: division by zero]", P.READY]
    assert _lines(e.feed(b"profile%"))[-1] == P.READY      # the board keeps answering


def test_engine_overlong_command(model):
    e = BoardEngine(model)
    # the reference keeps the first 80 characters and runs them
    assert _lines(e.feed(b"y" * 200 + b"%")) == ["e-[Unknown command: " + "y" * 80 + "]", P.READY]
    assert _lines(e.feed(b"name" + b" " * 100 + b"%"))[0].startswith("m-name-dut-")
    assert _lines(e.feed(b" " * 200 + b"%")) == ["e-[Unknown command: ]", P.READY]


def test_fault_spec_parsing():
    f = Faults.parse(["reset-after=3,garbage-every=2", "wrong-name"])
    assert (f.reset_after, f.garbage_every, f.wrong_name) == (3, 2, True)
    for bad in (["nope=1"], ["garbage-every=x"], ["garbage-every=0"]):
        with pytest.raises(BoardError):
            Faults.parse(bad)


# ---- dataset / model -----------------------------------------------------------------------------
def test_local_resize_matches_reference_points():
    img = np.zeros((1, 2, 2), dtype=np.uint8)
    img[0, 0, 0] = 255
    x = D.preprocess(img, {"resolution": 4, "channels": 1, "mean": [0.0], "std": [1.0]})
    # half-pixel centres: output (0,0) maps to src -0.25 -> clamped 0 -> exactly the corner value
    assert x.shape == (1, 4, 4, 1) and x[0, 0, 0, 0] == pytest.approx(1.0)
    assert x[0, 1, 1, 0] == pytest.approx(0.75 * 0.75)       # src 0.25: 0.75 of the corner in each axis
    assert x[0, 3, 3, 0] == pytest.approx(0.0)
    const = np.full((2, 28, 28), 128, dtype=np.uint8)
    y = D.preprocess(const, {"resolution": 32, "channels": 3, "mean": [0.5] * 3, "std": [0.25] * 3})
    assert y.shape == (2, 32, 32, 3) and np.allclose(y, (128 / 255 - 0.5) / 0.25, atol=1e-6)


def test_numpy_preprocessing_matches_the_trainers_torch_path():
    """The HIL host (numpy, common.preprocess) and the trainer (torch, per batch) compute the same inputs."""
    torch_data = pytest.importorskip("netaug_mcu.trainer.data")
    images, labels = load_fashion_mnist("test")
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    pre = {"dataset": "fashion-mnist", "resolution": 32, "channels": 3, "mean": [0.3, 0.2, 0.1],
           "std": [0.5, 0.4, 0.3]}
    a = D.preprocess(images[:16], pre)
    b = torch_data.preprocess_images(images[:16], pre).permute(0, 2, 3, 1).numpy()
    assert a.shape == b.shape == (16, 32, 32, 3)
    assert np.max(np.abs(a - b)) < 1e-5


def test_quantize_rounds_half_away_from_zero():
    q = D.quantize(np.array([0.5, -0.5, 1.49, 300.0, -300.0], dtype=np.float32), 1.0, 0)
    assert q.tolist() == [1, -1, 1, 127, -128]


def test_model_info_from_flatbuffer_and_json(model):
    assert model.input.shape == [1, 32, 32, 1] and model.input.nbytes == 1024
    assert model.output.nbytes == 10
    assert model.preprocess["resolution"] == 32 and model.accuracy("tflm_top1") is not None


def test_model_rejects_non_int8_and_garbage(tmp_path):
    p = tmp_path / "x.tflite"
    p.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError):
        load_model(p)


# ---- journal / stats / report --------------------------------------------------------------------
def test_journal_torn_tail_and_repair(tmp_path):
    p = tmp_path / "j.jsonl"
    j = Journal(p).open()
    j.append({"i": 0, "q": [1]})
    j.append({"i": 1, "q": [2]})
    j.close()
    with open(p, "a") as fh:
        fh.write('{"i": 2, "q"')
    assert sorted(Journal.read(p)) == [0, 1]
    Journal.read(p, repair=True)
    assert p.read_text().endswith("\n") and p.read_text().count("\n") == 2
    p.write_text('{"i":0,"q":[1]}\nnot json\n{"i":1,"q":[1]}\n')
    with pytest.raises(Exception, match="corrupt"):
        Journal.read(p)


def test_percentile():
    assert percentile([1, 2, 3, 4, 5], 50) == 3
    assert percentile([1, 2, 3, 4, 5], 90) == pytest.approx(4.6)
    assert percentile([7], 90) == 7


def test_report_from_results(tmp_path):
    from netaug_mcu.hil.report import build_report
    acc = {"model": str(MODEL), "device_top1": 50.0, "host_tflm_top1": 50.0, "samples": 4, "complete": True,
           "bit_exact": 4, "bit_exact_rate": 1.0, "top1_agreement_with_host": 100.0,
           "confusion_matrix": [[1, 1], [1, 1]], "classes": ["a", "b"],
           "boards": [{"url": "/dev/x", "samples": 4, "info": {"arena": 100, "arena_used": 60, "timer": "dwt"}}]}
    lat = {"min_ms": 1.0, "median_ms": 2.0, "p90_ms": 3.0, "max_ms": 4.0, "runs": 5, "warmup": 1, "timer": "dwt",
           "timer_label": P.timer_label("dwt"), "clock_hz": 216000000, "source": "cycles"}
    (tmp_path / "accuracy.json").write_text(json.dumps(acc))
    (tmp_path / "latency.json").write_text(json.dumps(lat))
    rep = build_report(str(tmp_path))
    md = (tmp_path / "report.md").read_text()
    assert rep["arena"] == {"arena_bytes": 100, "arena_used_bytes": 60}
    assert rep["accuracy"]["float_top1"] == load_model(MODEL).accuracy("float_top1")
    assert "**50.00 %**" in md and "| 2.000 ms |" in md and "60 B used of 100 B" in md
    assert json.loads((tmp_path / "report.json").read_text())["latency"]["median_ms"] == 2.0


# ---- packaging constraints / targets -------------------------------------------------------------
def test_hil_tests_import_no_torch_tensorflow_trainer():
    code = ("import sys, netaug_mcu.hil.commands, netaug_mcu.hil.client, netaug_mcu.hil.runner, "
            "netaug_mcu.hil.virtual_board, netaug_mcu.hil.report, netaug_mcu.hil.targets;"
            "from netaug_mcu.hil.model import load_model, host_reference; from netaug_mcu.hil.runner import prepare_inputs;"
            "m = load_model('hil_tests/data/tiny_fmnist32.tflite'); x, y, _ = prepare_inputs(m, limit=4);"
            "host_reference(m).run(x[0]);"
            "bad=[m for m in ('torch','tensorflow','netaug_mcu.trainer','netaug_mcu.converter') if m in sys.modules];"
            " print(bad); sys.exit(bool(bad))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


def test_qemu_command_line():
    from netaug_mcu.common.qemu import qemu_command
    cmd = " ".join(qemu_command("fw.elf"))
    for part in ("-M mps2-an500", "-nographic", "-monitor none", "-serial pty",
                 "-icount shift=0,align=off,sleep=off", "-semihosting-config enable=on,target=native",
                 "-kernel fw.elf"):
        assert part in cmd
    assert "tcp:127.0.0.1:5555,server=on" in " ".join(qemu_command("fw.elf", "tcp", 5555))


def test_start_qemu_missing_elf_is_a_clear_error(tmp_path):
    from netaug_mcu.hil.client import HilError
    from netaug_mcu.hil.targets import start_qemu
    with pytest.raises(HilError, match="not found"):
        start_qemu(tmp_path / "none.elf")


def test_converter_style_model_json(tmp_path):
    """model.json as converter/convert.py writes it: input/output dicts (scale may be None), top-level *_top1."""
    import shutil
    m = tmp_path / "model.tflite"
    shutil.copy(MODEL, m)
    meta = {"input": {"name": "x", "shape": [1, 32, 32, 1], "dtype": "int8", "scale": None, "zero_point": None},
            "output": {"name": "y", "shape": [1, 10], "dtype": "int8", "scale": 0.18, "zero_point": 32},
            "preprocess": {"resolution": 32, "channels": 1, "mean": [0.286], "std": [0.353]},
            "float_top1": 80.5, "int8_top1": 80.0, "tflm_top1": 79.5}
    (tmp_path / "model.json").write_text(json.dumps(meta))
    info = load_model(m)
    assert info.meta_path == tmp_path / "model.json" and info.accuracy("int8_top1") == 80.0
    assert info.input.scale == load_model(MODEL).input.scale        # the .tflite is authoritative
    meta["input"]["scale"] = 0.5
    (tmp_path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="disagrees"):
        load_model(m)
