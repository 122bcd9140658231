"""End to end: `netaug-mcu demo` on a tiny budget; every artefact and every number of the report is
present and consistent across stages."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

N = 120  # test images for both the converter's TFLM accuracy and the virtual board


def _demo(out: Path, *extra: str) -> None:
    cmd = [sys.executable, "-m", "netaug_mcu", "demo", "--out", str(out), "--epochs", "1",
           "--train-limit", "300", "--eval-samples", str(N), "--hil-limit", str(N), "--no-qemu", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    _demo(out)
    return out


def _json(p: Path) -> dict:
    assert p.is_file(), f"missing {p}"
    return json.loads(p.read_text())


def test_artefacts_exist(demo_dir):
    for rel in ("train/model.pt", "train/metrics.jsonl", "train/curves.png", "model.tflite", "model.json",
                "analyze.json", "memory.png", "check.json", "budget.png",
                "fw-stm32f746g-disco/Makefile", "hil-virtual/accuracy.json", "hil-virtual/journal.jsonl",
                "hil-virtual/latency.json", "report.md"):
        p = demo_dir / rel
        assert p.exists() and p.stat().st_size > 0, f"missing or empty: {rel}"


def test_on_device_accuracy_equals_converter_tflm(demo_dir):
    model = _json(demo_dir / "model.json")
    acc = _json(demo_dir / "hil-virtual" / "accuracy.json")
    assert model["eval_samples"] == N and acc["samples"] == N and acc["complete"]
    # Same first-N test images, same preprocessing code, same interpreter: identical.
    assert acc["device_top1"] == pytest.approx(model["tflm_top1"], abs=1e-9)
    assert acc["bit_exact"] == N
    assert abs(model["int8_top1"] - model["tflm_top1"]) <= 100.0 * 3 / N  # optimized vs reference kernels


def test_report_numbers_match_artefacts(demo_dir):
    report = (demo_dir / "report.md").read_text()
    model = _json(demo_dir / "model.json")
    an = _json(demo_dir / "analyze.json")
    acc = _json(demo_dir / "hil-virtual" / "accuracy.json")
    lat = _json(demo_dir / "hil-virtual" / "latency.json")
    for v in (model["float_top1"], model["int8_top1"], model["tflm_top1"], acc["device_top1"]):
        assert f"{v:.2f} %" in report
    assert f"{an['arena_bytes']:,} B" in report and f"{an['flash_bytes']:,} B" in report
    assert f"{lat['median_ms']:.3f} ms" in report
    for png in re.findall(r"!\[[^]]*\]\(([^)]+)\)", report):
        assert (demo_dir / png).is_file(), png
    assert "failed" not in report


def test_memory_analysis_consistent(demo_dir):
    an = _json(demo_dir / "analyze.json")
    check = _json(demo_dir / "check.json")
    assert an["arena_bytes"] == an["head_bytes"] + an["tail_bytes"] or an["arena_bytes"] >= an["head_bytes"]
    assert an["flash_bytes"] > (demo_dir / "model.tflite").stat().st_size
    assert check["fits"] is True


def test_demo_runs_again_in_the_same_directory(demo_dir):
    """A second `make demo` (and `demo --resume`) reuses the folder instead of tripping on old runs."""
    before = _json(demo_dir / "hil-virtual" / "accuracy.json")
    _demo(demo_dir, "--resume")
    after = _json(demo_dir / "hil-virtual" / "accuracy.json")
    assert after["samples"] == N and after["device_top1"] == before["device_top1"]
