"""The MLPerf Tiny runner adapter: the pty bridge and devices.yaml here; the official runner itself only when
MLPERF_TINY_DIR points at a mlcommons/tiny checkout (opt-in, it needs scikit-learn/pyusb/matplotlib)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from netaug_mcu.hil import protocol as P
from netaug_mcu.hil.mlperf_runner import PtyBridge, devices_yaml, summary
from netaug_mcu.hil.model import host_reference, load_model  # noqa: F401
from netaug_mcu.hil.virtual_board import VirtualBoard

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "hil_tests" / "data" / "tiny_fmnist32.tflite"


def _cmd(ser, text: str, timeout: float = 10.0) -> list[str]:
    ser.write(text.encode() + b"%")
    buf, end = b"", time.monotonic() + timeout
    while b"m-ready\r\n" not in buf and time.monotonic() < end:
        buf += ser.read(4096)
    return [ln for ln in buf.decode("latin-1").split("\r\n") if ln][:-1]


def test_pty_bridge_keeps_one_target_session_across_opens():
    import serial
    with VirtualBoard(MODEL, transport="tcp") as vb:
        br = PtyBridge(vb.url, 115200)
        try:
            for _ in range(3):       # the runner opens its port three times
                with serial.Serial(br.path, 115200, timeout=0.1) as s:
                    time.sleep(0.2)
                    s.reset_input_buffer()
                    assert _cmd(s, "name") == [P.MSG_NAME.format(name=P.DUT_NAME)]
            assert vb.connections == 1 and vb.engine.resets == 0
        finally:
            br.close()


def test_devices_yaml_and_summary():
    import yaml
    d = yaml.safe_load(devices_yaml({"performance": 115200, "accuracy": 115200, "energy": 9600}))
    assert d[0]["type"] == "dut" and d[0]["usb"] == {0x0483: 0x374B} and d[0]["baud"]["energy"] == 9600
    s = summary(["0101.120000 ulp-mlperf: Top 1% = 91.7", "0101.120000 ulp-mlperf: AUC = 0.950",
                 "0101.1 ulp-mlperf: Median throughput is     42.000 inf./sec."])
    assert s["top1"] == 91.7 and s["auc"] == 0.95 and s["median_latency_ms"] == pytest.approx(1000 / 42)


def _runner_dir() -> Path:
    d = os.environ.get("MLPERF_TINY_DIR")
    if not d:
        pytest.skip("MLPERF_TINY_DIR is not set (a mlcommons/tiny checkout runs the official runner)")
    r = Path(d) / "benchmark" / "runner"
    if not (r / "main.py").is_file():
        pytest.skip(f"{r}/main.py missing")
    for mod in ("sklearn", "yaml", "matplotlib", "usb"):
        pytest.importorskip(mod, reason=f"the runner needs {mod}")
    return r


def test_official_runner_accuracy_on_the_virtual_board(tmp_path):
    runner = _runner_dir()
    from netaug_mcu.hil.mlperf_runner import run
    from netaug_mcu.hil.runner import prepare_inputs
    m = load_model(MODEL)
    try:
        xq, labels, _ = prepare_inputs(m, "fashion-mnist", limit=60)
    except Exception as exc:  # noqa: BLE001 - the data set is optional here
        pytest.skip(f"Fashion-MNIST test split unavailable: {exc}")
    ref = host_reference(m)
    host = [int(np.argmax(ref.run(x.reshape(-1)))) for x in xq]
    ds = tmp_path / "ds" / "ic01"
    ds.mkdir(parents=True)
    rows = []
    for k, x in enumerate(xq):     # Fashion-MNIST images as ic01-style uint8 files, true labels
        (ds / f"f{k:03d}.bin").write_bytes(P.encode_input(x.tobytes(), "uint8", 1, 0))
        rows.append(f"f{k:03d}.bin,10,{int(labels[k])}")
    (ds / "y_labels.csv").write_text("\n".join(rows) + "\n")
    want = 100.0 * float(np.mean(np.asarray(host) == labels[:len(host)]))
    with VirtualBoard(m, mlperf="ic01", transport="tcp") as vb:
        rc, lines = run(vb.url, "a", str(tmp_path / "ds"), str(tmp_path / "out"), runner_dir=str(runner),
                        echo=lambda *_: None, timeout=600)
    s = summary(lines)
    assert rc == 0, lines[-20:]
    # the runner's Top-1 equals host TFLM's on the same 60 images (normalising probabilities keeps the argmax
    # of a softmax model; this logits model may differ where the runner's division by the sum flips it)
    assert "top1" in s, s["lines"]
    if m.meta.get("softmax"):
        assert s["top1"] == pytest.approx(want, abs=0.05)
