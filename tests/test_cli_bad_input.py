"""Every command that reads a .tflite answers a truncated or random file with one line and exit 2."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TINY = Path(__file__).resolve().parents[1] / "hil_tests" / "data" / "tiny_fmnist32.tflite"


@pytest.fixture(scope="module", params=["truncated", "random"])
def bad_model(request, tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("bad") / f"{request.param}.tflite"
    data = TINY.read_bytes()
    p.write_bytes(data[: len(data) // 2] if request.param == "truncated" else os.urandom(len(data)))
    return p


@pytest.mark.parametrize("argv", [
    ["analyze", "{m}"],
    ["check", "{m}", "--board", "stm32f746g-disco"],
    ["optimize", "{m}", "--out", "{d}/o.tflite"],
    ["firmware", "{m}", "--board", "mps2-an500", "--out", "{d}/fw"],
    ["evaluate", "{m}", "--eval-samples", "5"],
])
def test_bad_tflite_one_line_exit_2(bad_model, argv, tmp_path):
    args = [a.format(m=bad_model, d=tmp_path) for a in argv]
    proc = subprocess.run([sys.executable, "-m", "netaug_mcu", *args], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"netaug-mcu {args[0]}: error:"), proc.stderr
    assert not (tmp_path / "o.tflite").exists() and not (tmp_path / "fw").exists()
