"""HIL reliability: fault injection on the virtual board, resume, sharding, bad input -> one-line errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from netaug_mcu.hil.client import Client, HilError
from netaug_mcu.hil.runner import JOURNAL, Journal, run_accuracy
from netaug_mcu.hil.virtual_board import Faults, VirtualBoard

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "hil_tests" / "data" / "tiny_fmnist32.tflite"
MODEL16 = ROOT / "hil_tests" / "data" / "tiny_fmnist16.tflite"
N = 40
FAST = dict(progress=False, timeout=1.0, infer_timeout=1.0)


def _run(out, faults=(), n=N, resume=False, **kw):
    with VirtualBoard(MODEL, faults=Faults.parse(list(faults))) as vb:
        return run_accuracy([vb.url], str(MODEL), str(out), limit=n, resume=resume, **{**FAST, **kw}), vb.engine


def _journal(out) -> list[dict]:
    return [json.loads(x) for x in (Path(out) / JOURNAL).read_text().splitlines()]


def _assert_same_as_clean(out, clean, n=N):
    recs = _journal(out)
    idx = [r["i"] for r in recs]
    assert sorted(idx) == list(range(n)), "lost or duplicated samples"
    by_i = {r["i"]: r["q"] for r in recs}
    assert all(by_i[i] == clean["q"][i] for i in range(n)), "outputs differ from the clean run"


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    out = tmp_path_factory.mktemp("clean")
    s, _ = _run(out)
    return {"summary": s, "q": {r["i"]: r["q"] for r in _journal(out)}}


def test_clean_run(clean):
    s = clean["summary"]
    assert s["complete"] and s["samples"] == N and s["bit_exact"] == N
    assert s["device_top1"] == s["host_tflm_top1"]


@pytest.mark.parametrize("fault,counter", [
    ("reset-after=7", "resets"),
    ("reset-every=13", "resets"),
    ("reset-in-bload=5", "resets"),
    ("garbage-every=3", None),
    ("garbage-lines-every=4", None),
    ("corrupt-bload-every=4", "crc_retries"),
    ("reset-every=3,corrupt-bload-every=2,garbage-every=4,reset-in-bload=7", "crc_retries"),   # all at once
])
def test_recoverable_faults_lose_nothing(tmp_path, clean, fault, counter):
    s, engine = _run(tmp_path, [fault, "seed=3"])
    assert s["complete"]
    assert s["device_top1"] == clean["summary"]["device_top1"]
    assert s["confusion_matrix"] == clean["summary"]["confusion_matrix"]
    _assert_same_as_clean(tmp_path, clean)
    if counter:
        assert s["boards"][0][counter] > 0, f"fault {fault} was not exercised"
    if "reset" in fault:
        assert engine.resets >= 1
    if "garbage" in fault:
        assert engine.noise_bursts >= N // 4, "garbage was not injected"


def test_silent_device_clear_error_then_resume(tmp_path, clean):
    t0 = time.monotonic()
    with pytest.raises(HilError, match="silent") as ei:
        _run(tmp_path, ["silent-after=10"])
    assert time.monotonic() - t0 < 30
    assert "\n" not in str(ei.value) and "--resume" in str(ei.value)
    assert len(_journal(tmp_path)) == 10
    s, _ = _run(tmp_path, resume=True)
    assert s["complete"] and s["resumed_from"] == 10 and s["new_samples"] == N - 10
    _assert_same_as_clean(tmp_path, clean)


def test_port_vanishes_clear_error_then_resume(tmp_path, clean):
    with pytest.raises(HilError, match="vanished"):
        _run(tmp_path, ["vanish-after=12"])
    assert len(_journal(tmp_path)) == 12
    s, _ = _run(tmp_path, resume=True)
    assert s["complete"] and s["new_samples"] == N - 12
    _assert_same_as_clean(tmp_path, clean)


def test_torn_journal_line_is_repaired_on_resume(tmp_path, clean):
    s, _ = _run(tmp_path, n=15)
    with open(tmp_path / JOURNAL, "a") as fh:     # a crash in the middle of writing sample 15
        fh.write('{"i":15,"y":1,"pred":')
    with pytest.raises(HilError, match="--resume"):
        _run(tmp_path)                            # an existing journal needs --resume
    s, _ = _run(tmp_path, resume=True)
    assert s["complete"] and s["resumed_from"] == 15
    _assert_same_as_clean(tmp_path, clean)


def test_resume_with_another_model_is_refused(tmp_path):
    _run(tmp_path, n=3)
    with VirtualBoard(MODEL16) as vb, pytest.raises(HilError, match="model_sha256"):
        run_accuracy([vb.url], str(MODEL16), str(tmp_path), limit=3, resume=True, **FAST)


def test_journal_rejects_conflicting_duplicates(tmp_path):
    p = tmp_path / JOURNAL
    p.write_text('{"i":0,"q":[1]}\n{"i":0,"q":[2]}\n')
    with pytest.raises(HilError, match="twice"):
        Journal.read(p)


def test_sharding_matches_single_board(tmp_path, clean):
    boards = [VirtualBoard(MODEL), VirtualBoard(MODEL, faults=Faults.parse(["garbage-every=5"])),
              VirtualBoard(MODEL, transport="tcp")]
    try:
        urls = [b.start() for b in boards]
        s = run_accuracy(urls, str(MODEL), str(tmp_path), limit=N, **FAST)
    finally:
        for b in boards:
            b.stop()
    assert s["complete"] and s["confusion_matrix"] == clean["summary"]["confusion_matrix"]
    assert sum(b["samples"] > 0 for b in s["boards"]) >= 2, s["boards"]   # the work really was shared
    assert sum(b["samples"] for b in s["boards"]) == N
    _assert_same_as_clean(tmp_path, clean)


def test_sharding_survives_one_board_vanishing(tmp_path, clean):
    boards = [VirtualBoard(MODEL, faults=Faults.parse(["vanish-after=5"])), VirtualBoard(MODEL)]
    try:
        urls = [b.start() for b in boards]
        s = run_accuracy(urls, str(MODEL), str(tmp_path), limit=N, **FAST)
    finally:
        for b in boards:
            b.stop()
    assert s["complete"]
    assert s["boards"][0]["error"] and "vanished" in s["boards"][0]["error"]
    assert s["boards"][0]["samples"] == 5 and s["boards"][1]["samples"] == N - 5
    _assert_same_as_clean(tmp_path, clean)


def test_sharding_idle_board_takes_over_a_late_failure(tmp_path, clean):
    """Board 0 hangs on its 4th sample while board 1 empties the queue; board 1 must wait and take it over."""
    boards = [VirtualBoard(MODEL, faults=Faults.parse(["silent-after=3"])), VirtualBoard(MODEL)]
    try:
        urls = [b.start() for b in boards]
        s = run_accuracy(urls, str(MODEL), str(tmp_path), limit=20, **FAST)
    finally:
        for b in boards:
            b.stop()
    assert s["complete"] and s["boards"][0]["error"] and "silent" in s["boards"][0]["error"]
    assert s["boards"][0]["samples"] == 3 and s["boards"][1]["samples"] == 17
    _assert_same_as_clean(tmp_path, clean, n=20)


def test_hex_transfer_gives_identical_results(tmp_path, clean):
    s, _ = _run(tmp_path, n=10, binary=False)
    assert s["boards"][0]["transfer"] == "hex" and s["complete"]
    assert all(r["q"] == clean["q"][r["i"]] for r in _journal(tmp_path))


# ---- bad input: one line on stderr, non-zero exit ------------------------------------------------
def _cli(argv, capsys):
    from netaug_mcu import cli as netaug_mcu_cli
    rc = netaug_mcu_cli.main(argv)
    err = capsys.readouterr().err.strip()
    return rc, err


def _one_line_error(rc, err, pattern):
    assert rc != 0
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert pattern in err, err


def test_cli_no_such_port(tmp_path, capsys):
    rc, err = _cli(["hil", "accuracy", "--port", "/dev/ttyNOPE9", "--model", str(MODEL), "--limit", "2",
                    "--out", str(tmp_path)], capsys)
    _one_line_error(rc, err, "no such port")


def test_cli_port_busy(tmp_path, capsys):
    with VirtualBoard(MODEL) as vb:
        holder = Client(vb.url).open()
        try:
            rc, err = _cli(["hil", "latency", "--port", vb.url, "--runs", "2"], capsys)
        finally:
            holder.close()
    _one_line_error(rc, err, "port busy")


def test_cli_wrong_device(tmp_path, capsys):
    with VirtualBoard(MODEL, faults=Faults(wrong_name=True)) as vb:
        rc, err = _cli(["hil", "accuracy", "--port", vb.url, "--model", str(MODEL), "--limit", "2",
                        "--out", str(tmp_path), "--timeout", "1"], capsys)
    _one_line_error(rc, err, "m-name-dut-")


def test_cli_silent_device_at_connect(tmp_path, capsys):
    import tty
    master, slave = os.openpty()            # a port with nothing behind it
    tty.setraw(slave)
    try:
        rc, err = _cli(["hil", "latency", "--port", os.ttyname(slave), "--timeout", "0.5"], capsys)
    finally:
        os.close(master)
        os.close(slave)
    _one_line_error(rc, err, "silent")


def test_cli_model_device_shape_mismatch(tmp_path, capsys):
    with VirtualBoard(MODEL) as vb:
        rc, err = _cli(["hil", "accuracy", "--port", vb.url, "--model", str(MODEL16), "--limit", "2",
                        "--out", str(tmp_path)], capsys)
    _one_line_error(rc, err, "disagree on the input")


@pytest.mark.parametrize("argv,pattern", [
    (["hil", "accuracy", "--port", "/dev/null", "--model", "/nonexistent.tflite", "--out", "X"], "not found"),
    (["hil", "accuracy", "--port", "/dev/null", "--model", __file__, "--out", "X"], "not a readable .tflite"),
    (["hil", "report", "--out", "/nonexistent-dir"], "nothing to report"),
    (["virtual-board", str(MODEL), "--fault", "explode=3"], "unknown fault"),
])
def test_cli_bad_arguments(argv, pattern, capsys):
    rc, err = _cli(argv, capsys)
    _one_line_error(rc, err, pattern)


def test_cli_virtual_board_process_end_to_end(tmp_path):
    """The real commands as a user runs them: `netaug-mcu virtual-board` + `netaug-mcu hil ...`."""
    pf = tmp_path / "port"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    vb = subprocess.Popen([sys.executable, "-m", "netaug_mcu", "virtual-board", str(MODEL), "--port-file", str(pf)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        for _ in range(300):
            if pf.exists() or vb.poll() is not None:
                break
            time.sleep(0.05)
        assert pf.exists(), vb.stderr.read() if vb.poll() is not None else "no port file"
        url = pf.read_text().strip()
        out = tmp_path / "run"
        base = [sys.executable, "-m", "netaug_mcu", "hil"]
        r = subprocess.run(base + ["accuracy", "--port", url, "--model", str(MODEL), "--limit", "25",
                                   "--out", str(out)], capture_output=True, text=True, env=env, cwd=ROOT)
        assert r.returncode == 0, r.stderr
        assert "bit-exact 25/25" in r.stdout
        r = subprocess.run(base + ["latency", "--port", url, "--runs", "5", "--out", str(out)],
                           capture_output=True, text=True, env=env, cwd=ROOT)
        assert r.returncode == 0 and "host" in r.stdout, r.stderr
        r = subprocess.run(base + ["report", "--out", str(out)], capture_output=True, text=True, env=env, cwd=ROOT)
        assert r.returncode == 0, r.stderr
        md = (out / "report.md").read_text()
        assert "on device" in md and "virtual board" in md
    finally:
        vb.terminate()
        assert vb.wait(timeout=10) == 0


def test_cli_port_virtual_shards_over_two_in_process_boards(tmp_path, capsys, clean):
    from netaug_mcu import cli as netaug_mcu_cli
    rc = netaug_mcu_cli.main(["hil", "accuracy", "--port", "virtual", "--port", "virtual", "--model", str(MODEL),
                          "--limit", str(N), "--out", str(tmp_path), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0 and f"bit-exact {N}/{N}" in out, out
    s = json.loads((tmp_path / "accuracy.json").read_text())
    assert len(s["boards"]) == 2 and s["boards"][0]["url"] != s["boards"][1]["url"]
    _assert_same_as_clean(tmp_path, clean)
