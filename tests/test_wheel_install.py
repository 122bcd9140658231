"""Light install: the wheel holds every sub-package and data file, and installed with the `check`
extra in a clean venv (no torch, no TensorFlow) its `netaug-mcu check` and `hil` work there.

Building the wheel needs no network. Installing it into the clean venv fetches numpy/rich/tflite from
the package index: when pip cannot reach one, that test skips with the reason."""
from __future__ import annotations

import shutil
import subprocess
import sys
import venv
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".venv", ".git", "build", "runs", "__pycache__", ".pytest_cache", ".hypothesis", "bench"}
OFFLINE_HINTS = ("No matching distribution", "Could not find a version", "NewConnectionError",
                 "Temporary failure in name resolution", "Network is unreachable", "ConnectTimeout")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """`pip wheel` of a copy of the source tree (no build isolation: no network needed)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=lambda d, names: [n for n in names if n in SKIP_DIRS or n.endswith(".egg-info")])
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(tmp / "dist"), str(src)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    (whl,) = (tmp / "dist").glob("netaug_mcu-*.whl")
    return whl


def test_wheel_holds_every_package_and_data_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    stage = {"netaug_mcu": "netaug_mcu", "common": "netaug_mcu/common", "trainer": "netaug_mcu/trainer",
             "converter": "netaug_mcu/converter", "firmware": "netaug_mcu/firmware", "hil_tests": "netaug_mcu/hil"}
    for folder, pkg in stage.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.relative_to(ROOT / folder)
            if "__pycache__" not in rel.parts:
                assert f"{pkg}/{rel.as_posix()}" in names, f"{pkg}/{rel} missing from the wheel"
    for data in ("netaug_mcu/common/data/boards.json", "netaug_mcu/converter/data/targets.json",
                 "netaug_mcu/converter/data/flash.json"):
        assert data in names


@pytest.mark.slow
def test_clean_venv_check_and_hil(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True, system_site_packages=False)
    py, exe = env_dir / "bin" / "python", env_dir / "bin" / "netaug-mcu"
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", f"{wheel}[check]"], capture_output=True, text=True,
                       timeout=900)
    if r.returncode != 0 and any(h in r.stdout + r.stderr for h in OFFLINE_HINTS):
        pytest.skip(f"offline: pip cannot fetch the check dependencies ({(r.stderr.strip().splitlines() or ['?'])[-1]})")
    assert r.returncode == 0, r.stderr[-2000:]
    probe = "import importlib.util as u; print([m for m in ('torch', 'tensorflow', 'onnx') if u.find_spec(m)])"
    assert subprocess.run([str(py), "-c", probe], capture_output=True, text=True).stdout.strip() == "[]"
    from keras_models import model_path
    model = model_path("residual")
    r = subprocess.run([str(exe), "check", str(model), "--all-boards", "--junit", str(tmp_path / "j.xml")],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0 and "smallest board that fits" in r.stdout, r.stderr
    assert ET.parse(tmp_path / "j.xml").getroot().find("testsuite") is not None
    r = subprocess.run([str(exe), "check", str(model), "--board", "stm32f746g-disco"], capture_output=True, text=True)
    assert r.returncode == 0 and "FITS" in r.stdout, r.stderr
    r = subprocess.run([str(exe), "analyze", str(model), "--layers"], capture_output=True, text=True)
    assert r.returncode == 0 and "per-layer profile" in r.stdout, r.stderr
    r = subprocess.run([str(exe), "hil", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "usage: netaug-mcu hil" in r.stdout, r.stderr
    r = subprocess.run([str(exe), "convert", "--zoo", "mbv2-tiny", "--out", str(tmp_path / "x.tflite")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "'convert' extra" in r.stderr and "Traceback" not in r.stderr
