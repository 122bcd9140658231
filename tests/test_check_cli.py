"""CLI of the memory analyzer: analyze/check/optimize output contracts, exit codes, bad input."""
from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET

import flatbuffers
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netaug_mcu import cli as netaug_mcu_cli
from netaug_mcu.converter import analyzer
from keras_models import float_model_path, model_path
from netaug_mcu.common.tflite_model import TFLiteError, load


@pytest.fixture(scope="session")
def models():
    return {n: model_path(n) for n in ("plain_cnn", "residual", "fc_only", "branchy", "avgpool")}


def run(argv, capsys):
    rc = netaug_mcu_cli.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def _schema():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as sch
    return sch


def _repack(data: bytes, edit) -> bytes:
    sch = _schema()
    m = sch.ModelT.InitFromPackedBuf(bytearray(data), 0)
    edit(m, sch)
    b = flatbuffers.Builder(0)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def test_analyze_json_keys_exact(models, capsys):
    rc, out, _ = run(["analyze", str(models["residual"]), "--json"], capsys)
    assert rc == 0
    d = json.loads(out)
    assert set(d) == {"arena_bytes", "head_bytes", "tail_bytes", "flash_bytes", "peak_op", "ops"}
    a = analyzer.analyze(models["residual"], "cortex-m7")
    assert d["arena_bytes"] == a.arena_bytes == d["head_bytes"] + d["tail_bytes"]
    assert len(d["ops"]) == len(load(models["residual"]).operators)
    assert {"op", "output_shape", "live_bytes", "scratch_bytes", "high_water"} <= set(d["ops"][0])
    assert max(o["high_water"] for o in d["ops"]) == d["head_bytes"]
    assert d["peak_op"].split(":")[1] == d["ops"][int(d["peak_op"].split(":")[0])]["op"]


def test_analyze_table_and_plot(models, tmp_path, capsys):
    png = tmp_path / "mem.png"
    rc, out, _ = run(["analyze", str(models["plain_cnn"]), "--target", "host", "--plot", str(png)], capsys)
    assert rc == 0 and "arena_bytes" in out and "peak op" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_host_and_m7_differ_in_tail_not_head_for_reference_like_model(models):
    h = analyzer.analyze(models["fc_only"], "host")
    m = analyzer.analyze(models["fc_only"], "cortex-m7")
    assert h.head_bytes == m.head_bytes and m.tail_bytes < h.tail_bytes


def test_check_fits_and_over_budget(models, tmp_path, capsys):
    j, x = tmp_path / "r.json", tmp_path / "r.xml"
    rc, out, _ = run(["check", str(models["residual"]), "--board", "stm32f746g-disco", "--json", str(j),
                      "--junit", str(x)], capsys)
    assert rc == 0 and "FITS" in out
    res = json.loads(j.read_text())
    assert res["fits"] and res["ram_margin_bytes"] == res["arena_budget"] - res["min_arena_bytes"]
    assert ET.parse(x).getroot().find(".//failure") is None
    a = analyzer.analyze(models["residual"], "cortex-m7")
    sram = a.min_arena_bytes + 28 * 1024 - 100  # 100 B short with the default 28 KiB reserve
    rc, out, _ = run(["check", str(models["residual"]), "--sram", str(sram), "--flash", "1M", "--junit", str(x),
                      "--json", str(j)], capsys)
    assert rc == 1 and "OVER BUDGET" in out and "help:" in out and a.peak_op in out
    res = json.loads(j.read_text())
    assert res["ram_over_bytes"] == 100 and not res["fits"]
    assert ET.parse(x).getroot().find(".//failure") is not None
    rc, out, _ = run(["check", str(models["residual"]), "--board", "stm32f746g-disco", "--flash", "20K"], capsys)
    assert rc == 1 and "flash" in out


def test_check_list_boards(capsys):
    rc, out, _ = run(["check", "x", "--list-boards"], capsys)
    assert rc == 0
    for b in ("stm32f746g-disco", "stm32f767zi", "stm32h743zi", "nucleo-l4r5zi", "nrf52840"):
        assert b in out
    assert "320 KiB" in out.replace("  ", " ") or " 320 KiB" in out


def test_optimize_reorders_and_verifies(models, tmp_path, capsys):
    out_p = tmp_path / "opt.tflite"
    rc, out, _ = run(["optimize", str(models["branchy"]), "--out", str(out_p)], capsys)
    assert rc == 0 and "identical" in out
    before = analyzer.analyze(models["branchy"], "cortex-m7")
    after = analyzer.analyze(out_p, "cortex-m7")
    assert after.arena_bytes < before.arena_bytes - 10_000
    m0, m1 = load(models["branchy"]), load(out_p)
    assert [o.name for o in m0.operators] != [o.name for o in m1.operators] or \
        [o.outputs for o in m0.operators] != [o.outputs for o in m1.operators]
    assert sorted(map(tuple, (o.outputs for o in m0.operators))) == sorted(map(tuple, (o.outputs for o in m1.operators)))


BAD_CASES = ["truncated", "random", "text", "empty", "float", "subgraphs", "dynamic", "huge", "missing", "onnx-ish"]


@pytest.fixture(scope="session")
def bad_inputs(models, tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    good = models["plain_cnn"].read_bytes()
    rng = np.random.default_rng(1)
    files = {
        "truncated": good[: len(good) // 3],
        "random": rng.integers(0, 256, 5000, dtype=np.uint8).tobytes(),
        "text": b"hello, this is not a model\n" * 10,
        "empty": b"",
        "float": float_model_path().read_bytes(),
        "subgraphs": _repack(good, lambda m, s: m.subgraphs.append(m.subgraphs[0])),
        "dynamic": _repack(good, lambda m, s: setattr(m.subgraphs[0].tensors[m.subgraphs[0].inputs[0]],
                                                       "shapeSignature", [1, -1, -1, 1])),
        "huge": _repack(good, lambda m, s: setattr(m.subgraphs[0].tensors[m.subgraphs[0].outputs[0]],
                                                   "shape", [1, 100000, 100000, 8])),
        "onnx-ish": b"\x08\x07\x12\x07pytorch" + bytes(100),
    }
    paths = {}
    for k, v in files.items():
        p = d / f"{k}.tflite"
        p.write_bytes(v)
        paths[k] = p
    paths["missing"] = d / "nope.tflite"
    return paths


@pytest.mark.parametrize("case", BAD_CASES)
@pytest.mark.parametrize("cmd", ["analyze", "check"])
def test_bad_input_one_line_exit_2(bad_inputs, case, cmd, capsys):
    rc, out, err = run([cmd, str(bad_inputs[case])], capsys)
    assert rc == 2, (case, out, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"netaug-mcu {cmd}: error: "), err
    assert "Traceback" not in err
    if case == "float":
        assert "float" in err and "TFLM" in err
    if case == "subgraphs":
        assert "subgraphs" in err
    if case == "dynamic":
        assert "dynamic" in err
    if case == "huge":
        assert "huge" in err


def test_bad_board_and_sizes(models, capsys):
    rc, _, err = run(["check", str(models["fc_only"]), "--board", "arduino-uno"], capsys)
    assert rc == 2 and "unknown board" in err
    rc, _, err = run(["check", str(models["fc_only"]), "--sram", "lots", "--flash", "1M"], capsys)
    assert rc == 2 and "bad size" in err


# ---- fuzz: mutations of a real model never escape as anything but TFLiteError/AnalyzerError ----

@pytest.fixture(scope="module")
def seed_models(models):
    return [models["fc_only"].read_bytes(), models["avgpool"].read_bytes()]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_mutations_raise_clean_errors(seed_models, data):
    base = bytearray(data.draw(st.sampled_from(seed_models)))
    kind = data.draw(st.sampled_from(["flip", "overwrite", "truncate", "splice"]))
    if kind == "flip":
        for _ in range(data.draw(st.integers(1, 16))):
            i = data.draw(st.integers(0, len(base) - 1))
            base[i] ^= 1 << data.draw(st.integers(0, 7))
    elif kind == "overwrite":
        i = data.draw(st.integers(0, len(base) - 4))
        base[i:i + 4] = data.draw(st.binary(min_size=4, max_size=4))
    elif kind == "truncate":
        base = base[: data.draw(st.integers(0, len(base)))]
    else:
        i = data.draw(st.integers(0, len(base)))
        base[i:i] = data.draw(st.binary(min_size=1, max_size=64))
    for target in ("cortex-m7", "host"):
        try:
            a = analyzer.analyze(bytes(base), target)
        except (TFLiteError, analyzer.AnalyzerError) as exc:
            assert exc.exit_code == 2 and "\n" not in str(exc)
        else:
            assert a.arena_bytes == a.head_bytes + a.tail_bytes >= 0


def test_parse_speed_and_no_tensorflow_import():
    """The analyzer must not import TensorFlow (firmware generation and the HIL host use it)."""
    import subprocess
    import sys
    code = ("import sys, netaug_mcu.converter.analyzer as a, netaug_mcu.converter.budget, "
            "netaug_mcu.converter.commands, netaug_mcu.firmware.generate; "
            "assert 'tensorflow' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=os.path.dirname(os.path.dirname(__file__)))
    assert r.returncode == 0, r.stderr


@pytest.mark.opt_in
@pytest.mark.timeout(1800)
def test_fit_mcunet_in1_f746(tmp_path, capsys):
    """Heavy (converts several resolutions): largest fitting resolution is a multiple of 16 and the next does not fit."""
    j = tmp_path / "fit.json"
    rc, out, _ = run(["fit", "--zoo", "mcunet-in1", "--board", "stm32f746g-disco", "--channels", "3",
                      "--classes", "10", "--json", str(j)], capsys)
    assert rc == 0
    res = json.loads(j.read_text())
    best = res["best_resolution"]
    assert best % 16 == 0 and res["best"]["fits"]
    above = [r for r in res["probed"] if r["resolution"] == best + 16]
    assert not above or not above[0]["fits"]


def test_flash_estimate_is_additive(models):
    """flash = model bytes + fixed runtime + board support + measured kernel code (converter/data/flash.json)."""
    a = analyzer.analyze(models["fc_only"], "cortex-m7", board="stm32f746g-disco")
    b = analyzer.analyze(models["fc_only"], "cortex-m7", board="mps2-an500")
    assert a.flash_breakdown["model"] == models["fc_only"].stat().st_size
    assert a.flash_bytes - b.flash_bytes == a.flash_breakdown["board_support"] > 0
    assert a.flash_bytes == sum(a.flash_breakdown.values())
    r = analyzer.analyze(models["residual"], "cortex-m7")  # CONV_2D ADD MEAN FC: more kernels than FC+SOFTMAX
    assert r.flash_breakdown["kernels"] > a.flash_breakdown["kernels"] > 0
    assert not any("provisional" in n for n in r.notes)
