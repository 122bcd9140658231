"""action.yml (composite GitHub Action) and .pre-commit-hooks.yaml run `check` with JUnit output:
their command lines are executed here as CI would run them."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from netaug_mcu import cli
from keras_models import model_path

yaml = pytest.importorskip("yaml")
ROOT = Path(__file__).resolve().parents[1]


def _action_check_step() -> dict:
    doc = yaml.safe_load((ROOT / "action.yml").read_text())
    assert doc["runs"]["using"] == "composite"
    return next(s for s in doc["runs"]["steps"] if s.get("id") == "check")


def _run_action(tmp_path, **inputs) -> tuple[int, str]:
    """Run the action's check step with bash, inputs as the env GitHub would set."""
    step = _action_check_step()
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    defaults = {"NETAUG_BOARD": "stm32f746g-disco", "NETAUG_ALL_BOARDS": "false", "NETAUG_JUNIT": "junit.xml",
                "NETAUG_JSON": "", "NETAUG_ARGS": ""}
    env.update(defaults)
    env.update({f"NETAUG_{k.upper()}": v for k, v in inputs.items()})
    assert set(step["env"]) == set(defaults) | {"NETAUG_MODELS"}
    r = subprocess.run(["bash", "-c", step["run"]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    return r.returncode, r.stdout + r.stderr


def test_action_gate_passes_and_fails_with_junit(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    for n in ("residual", "plain_cnn"):
        (models / f"{n}.tflite").write_bytes(model_path(n).read_bytes())
    rc, out = _run_action(tmp_path, models="models/*.tflite", board="nrf52840")
    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert rc == 0 and "FITS" in out and suite.get("tests") == "2" and suite.get("failures") == "0"
    rc, out = _run_action(tmp_path, models="models/residual.tflite", all_boards="true", args="--reserve 1024M",
                          junit="all.xml", json="all.json")
    suite = ET.parse(tmp_path / "all.xml").getroot().find("testsuite")
    assert rc == 1 and int(suite.get("failures")) > 0 and (tmp_path / "all.json").is_file()
    rc, out = _run_action(tmp_path, models="nothing/*.tflite")
    assert rc == 2 and "no model matches" in out


def test_action_installs_the_light_extra():
    doc = yaml.safe_load((ROOT / "action.yml").read_text())
    assert doc["inputs"]["extras"]["default"] == "check"
    install = next(s for s in doc["runs"]["steps"] if s.get("name") == "Install netaug-mcu")
    assert "[${NETAUG_EXTRAS}]" in install["run"]


def test_pre_commit_hook_runs_check_with_junit(tmp_path, monkeypatch, capsys):
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    hook = next(h for h in hooks if h["id"] == "netaug-mcu-check")
    assert re.search(hook["files"], "models/kws.tflite") and not re.search(hook["files"], "model.onnx")
    entry = shlex.split(hook["entry"])
    assert entry[:2] == ["netaug-mcu", "check"]
    monkeypatch.chdir(tmp_path)
    rc = cli.main(entry[1:] + ["--board", "stm32f746g-disco", str(model_path("residual"))])
    assert rc == 0 and "FITS" in capsys.readouterr().out
    junit = tmp_path / entry[entry.index("--junit") + 1]
    assert ET.parse(junit).getroot().find("testsuite").get("failures") == "0"
    rc = cli.main(entry[1:] + ["--board", "arduino-uno-r4-wifi", "--sram", "8K", str(model_path("residual"))])
    assert rc == 1 and ET.parse(junit).getroot().find(".//failure") is not None
