"""Device protocol conformance (PROTOCOL.md), against whatever target conftest.py selected."""
from __future__ import annotations

import time

import numpy as np
import pytest

from netaug_mcu.hil import protocol as P


def _input(target, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return rng.integers(-128, 128, target.model.input.nbytes, dtype=np.int8).tobytes()


def test_name_and_profile(client):
    rep = client.command("name")
    assert rep.lines and rep.lines[0].startswith("m-name-dut-["), rep.lines
    rep = client.command("profile")
    assert rep.find("m-profile-[") is not None and rep.find("m-model-[") is not None, rep.lines


def test_info_describes_the_model(client, target):
    info = client.info
    for key in ("model", "arena", "arena_used", "input", "output", "clock_hz", "timer", "bin", "max_frame"):
        assert key in info, f"info% lacks {key}: {info}"
    assert info["input"] == target.model.input.nbytes
    assert info["output"] == target.model.output.nbytes
    assert info["timer"] in P.TIMER_LABELS
    assert info["clock_hz"] > 0
    assert 0 < info["arena_used"] <= info["arena"]
    if info["bin"] == 1:
        assert info["max_frame"] >= info["input"]


def test_unknown_command_is_answered_and_device_stays_usable(client):
    rep = client.command("frobnicate 1 2")
    assert rep.lines == ["e-[Unknown command: frobnicate]"]
    assert client.command("name").find("m-name-dut-") is not None


def test_overlong_command_truncated_and_run(client):
    client.write(b"x" * 120 + b"%")
    rep = client.command("name")  # the long line's reply comes first, then ours
    # command() returned at the first m-ready: that belongs to the long line, cut to 80 characters (reference)
    assert rep.lines == ["e-[Unknown command: " + "x" * P.MAX_COMMAND + "]"], rep.lines
    rep = client.command("name")
    assert rep.find("m-name-dut-") is not None


def test_timestamp_is_monotonic(client):
    a = P.parse_lap(client.command("timestamp").lines[0])
    time.sleep(0.05)
    b = P.parse_lap(client.command("timestamp").lines[0])
    assert a is not None and b is not None and b >= a


def test_db_errors_never_overrun(client, target):
    n = int(client.info.get("db_max") or client.info["max_frame"])
    rep = client.command(f"db load {n + 1}")
    assert rep.errors, "db load above the buffer size must be rejected"
    assert client.command(f"db load {n}").find(f"m-[Expecting {n} bytes]") is not None
    assert client.command("db 123").errors          # odd number of digits
    assert client.command("db zz").errors           # bad digit
    full = bytes(n)
    for c in P.db_commands(full)[1:-1]:
        assert not client.command(c).errors
    last = P.db_commands(full)[-1]
    rest = len(bytes.fromhex(last.split()[1]))
    beyond = "db " + "00" * (rest + 1)
    rep = client.command(beyond)   # surplus digits of the completing command are disregarded (reference)
    assert rep.find(P.LOAD_DONE) is not None and not rep.errors, rep.lines
    assert client.command(last).lines == [], "data beyond N is ignored"


def test_hex_and_binary_loads_give_the_same_bit_exact_result(client, target):
    from netaug_mcu.hil.model import host_reference
    data = _input(target, 1)
    ref = host_reference(target.model).run(np.frombuffer(data, dtype=np.int8))
    client.binary = False
    client.load(data)
    q_hex = client.infer(1, 0)["q"]
    assert np.array_equal(q_hex, ref)
    if client.info.get("bin") != 1:
        pytest.skip("device offers no binary load")
    client.binary = True
    client.load(_input(target, 2))  # different content in between
    client.load(data)
    q_bin = client.infer(1, 0)["q"]
    assert np.array_equal(q_bin, ref)


def test_bload_rejects_bad_crc_and_wrong_size(client, target):
    if client.info.get("bin") != 1:
        pytest.skip("device offers no binary load")
    data = _input(target, 3)
    bad = f"bload {len(data)} {P.crc32(data) ^ 0x1:08x}"
    rep = client.command(bad, payload=data)
    assert rep.find(P.BLOAD_READY) is not None and any("crc" in e for e in rep.errors), rep.lines
    rep = client.command("infer 1 0")
    assert rep.errors, "after a CRC reject the buffer must be marked empty"
    rep = client.command(f"bload {len(data) - 1} {P.crc32(data[:-1]):08x}")
    assert rep.errors and rep.find(P.BLOAD_READY) is None, rep.lines
    client.load(data)
    assert client.infer(1, 0)["q"].shape == (target.model.output.nbytes,)


def test_bload_times_out_mid_frame(client, target):
    if client.info.get("bin") != 1:
        pytest.skip("device offers no binary load")
    if target.kind == "qemu":
        pytest.skip("the QEMU boards time out after 5 s of virtual time, which crawls while the guest polls the "
                    "UART (tests/test_firmware_qemu.py::test_wire_robustness covers it)")
    data = _input(target, 4)
    client.write(P.command_bytes(P.bload_command(data)))
    assert client.readline(time.monotonic() + 5) == P.BLOAD_READY
    client.write(data[: len(data) // 2])
    t0 = time.monotonic()
    lines = [client.readline(t0 + 5), client.readline(t0 + 5)]
    assert lines == ["e-[bload timeout]", P.READY], lines
    if target.kind == "virtual":  # QEMU counts the 500 ms in -icount virtual time
        assert time.monotonic() - t0 >= 0.45


def test_infer_reply_structure(client, target):
    client.load(_input(target, 5))
    rep = client.command("infer 2 1", timeout=120)
    ln = rep.lines
    assert ln[0] == "m-warmup-start-1" and ln[1] == "m-warmup-done" and ln[2] == "m-infer-start-2", ln
    laps = [P.parse_lap(x) for x in ln if P.parse_lap(x) is not None]
    assert len(laps) == 2 and laps[1] >= laps[0]
    assert any(P.parse_cycles(x) is not None for x in ln)
    assert P.INFER_DONE in ln
    q = P.parse_int_list(P.bracket(rep.find("m-results-q-["), "m-results-q"))
    f = P.parse_float_list(P.bracket(rep.find("m-results-["), "m-results"))
    o = target.model.output
    assert len(q) == len(f) == o.nbytes
    np.testing.assert_allclose(f, (np.asarray(q) - o.zero_point) * o.scale, atol=0.0006)
    assert client.command("infer 0 0").errors
    again = client.command("results")
    assert again.find("m-results-q-[") == rep.find("m-results-q-[")


def _is_image_model(model) -> bool:
    return len(model.input.shape) == 4


def test_test_images_bit_exact_with_host_tflm(client, target, limit):
    from netaug_mcu.hil.model import host_reference
    from netaug_mcu.hil.runner import prepare_inputs
    if _is_image_model(target.model):
        xq, labels, _ = prepare_inputs(target.model, limit=limit)
    else:  # not an image model: random int8 inputs
        rng = np.random.default_rng(7)
        xq = rng.integers(-128, 128, (limit, *target.model.input.shape[1:]), dtype=np.int8)
    ref = host_reference(target.model)
    mismatches = [i for i in range(len(xq)) if not np.array_equal(client.classify(xq[i].tobytes()), ref.run(xq[i]))]
    assert mismatches == [], f"{len(mismatches)}/{len(xq)} outputs differ from host TFLM"


def test_accuracy_run_journal_and_report(target, limit, tmp_path):
    import json

    from netaug_mcu.hil.report import build_report
    from netaug_mcu.hil.runner import run_accuracy, run_latency
    if not _is_image_model(target.model):
        pytest.skip(f"model input {target.model.input.shape} is not an image: no dataset accuracy")
    s = run_accuracy([target.url], str(target.model.path), str(tmp_path), limit=limit, progress=False,
                     baud=target.baud, timeout=10.0)
    lines = (tmp_path / "journal.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["i"] for x in lines) == list(range(limit))
    assert s["complete"] and s["bit_exact"] == limit and s["device_top1"] == s["host_tflm_top1"]
    assert sum(map(sum, s["confusion_matrix"])) == limit
    lat = run_latency(target.url, str(target.model.path), runs=5, warmup=1, out_dir=str(tmp_path), baud=target.baud)
    assert 0 < lat["min_ms"] <= lat["median_ms"] <= lat["p90_ms"] <= lat["max_ms"]
    assert lat["timer_label"] == P.timer_label(lat["timer"])
    rep = build_report(str(tmp_path))
    md = (tmp_path / "report.md").read_text()
    assert "on device" in md and "Latency" in md and rep["accuracy"]["bit_exact"] == limit


def test_new_host_session_recovers_from_an_abandoned_frame(target):
    """A host that died mid-`bload` leaves the device inside a frame; the next session must still sync."""
    c = target.client()
    if c.info.get("bin") != 1:
        c.close()
        pytest.skip("device offers no binary load")
    data = _input(target, 6)
    c.write(P.command_bytes(P.bload_command(data)))
    assert c.readline(time.monotonic() + 5) == P.BLOAD_READY
    c.write(data[:7])
    c.close()
    t0 = time.monotonic()
    c2 = target.client()
    try:
        assert time.monotonic() - t0 < 20
        c2.load(data)
        from netaug_mcu.hil.model import host_reference
        assert np.array_equal(c2.infer(1, 0)["q"], host_reference(target.model).run(np.frombuffer(data, np.int8)))
    finally:
        c2.close()
