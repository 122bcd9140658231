"""`hil profile`: the prof% reply parser, per-op rows, the PNG, and the virtual board end to end."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from netaug_mcu.cli import main
from netaug_mcu.common.tflite_model import load
from netaug_mcu.hil import profile as prof
from netaug_mcu.hil.client import ProtocolError

MODEL = Path(__file__).resolve().parents[1] / "hil_tests" / "data" / "tiny_fmnist32.tflite"


def test_parse_prof_reply():
    n, ticks, total = prof.parse_prof(["m-prof-ops-3", "m-prof-ticks-[10,20,5]", "m-prof-total-40", "m-prof-done"])
    assert (n, ticks, total) == (3, [10, 20, 5], 40)
    with pytest.raises(ProtocolError, match="3 operators but 2"):
        prof.parse_prof(["m-prof-ops-3", "m-prof-ticks-[10,20]", "m-prof-total-40"])
    with pytest.raises(ProtocolError, match="no m-prof-total"):
        prof.parse_prof(["m-prof-ops-1", "m-prof-ticks-[1]"])


def test_rows_name_ops_and_convert_ticks(tmp_path):
    model = load(MODEL.read_bytes())
    ticks = [100 * (i + 1) for i in range(len(model.operators))]
    rows = prof.op_rows(model, ticks, clock_hz=1_000_000)
    assert [r["op"] for r in rows] == [op.name for op in model.operators]
    assert rows[0]["ms"] == 0.1 and rows[0]["output_shape"] == list(model.tensors[model.operators[0].outputs[0]].shape)
    assert abs(sum(r["share_pct"] for r in rows) - 100) < 0.1
    res = {"model": str(MODEL), "device_model": "m", "timer": "dwt", "timer_label": "cycles", "ops": rows,
           "invoke_ms": 1.0, "invoke_ticks": 1000, "ops_ticks": sum(ticks)}
    png = prof.write_png(res, tmp_path / "p.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_hil_profile_virtual_board(tmp_path, capsys):
    pytest.importorskip("tflite_micro")
    rc = main(["hil", "profile", "--port", "virtual", "--model", str(MODEL), "--out", str(tmp_path),
               "--png", str(tmp_path / "p.png")])
    out = capsys.readouterr().out
    assert rc in (0, None)
    res = json.loads((tmp_path / "profile.json").read_text())
    model = load(MODEL.read_bytes())
    assert res["timer"] == "host" and len(res["ops"]) == len(model.operators)
    assert all(r["ticks"] > 0 for r in res["ops"]) and "CONV_2D" in out
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_host_op_times_one_per_op():
    pytest.importorskip("tflite_micro")
    from netaug_mcu.common.host_tflm import op_host_times
    model = load(MODEL.read_bytes())
    t = op_host_times(MODEL.read_bytes(), np.zeros(model.io_tensor("input").nbytes, np.int8), repeats=1)
    assert len(t) == len(model.operators) and min(t) > 0


def test_hil_profile_bad_port_is_one_line(capsys):
    rc = main(["hil", "profile", "--port", "/dev/nonexistent-netaug", "--timeout", "0.5"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1
