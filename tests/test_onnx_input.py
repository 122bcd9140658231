"""`.onnx` input for analyze/check: converted with the project's converter, random calibration said,
the arena independent of calibration values, bad calibration refused in one line."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from netaug_mcu import cli

pytestmark = pytest.mark.skipif(importlib.util.find_spec("onnx2tf") is None or importlib.util.find_spec("onnx") is None,
                                reason="needs the 'convert' extra (onnx, onnx2tf, tensorflow)")


def _tiny_onnx(path):
    """Conv(s2) -> ReLU -> Conv -> ReLU -> GlobalAveragePool -> Flatten -> Gemm, NCHW 1x3x32x32."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    w = {"w1": rng.standard_normal((8, 3, 3, 3)) * 0.3, "b1": np.zeros(8), "w2": rng.standard_normal((16, 8, 3, 3)) * 0.2,
         "b2": np.zeros(16), "wf": rng.standard_normal((10, 16)) * 0.2, "bf": np.zeros(10)}
    nodes = [helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"]), helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]), helper.make_node("Gemm", ["f", "wf", "bf"], ["logits"], transB=1)]
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
                          [numpy_helper.from_array(v.astype(np.float32), k) for k, v in w.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx")
    return _tiny_onnx(d / "tiny.onnx")


def test_analyze_and_check_onnx(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NETAUG_MCU_CACHE", str(tmp_path / "cache"))
    assert cli.main(["analyze", str(tiny), "--layers", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["onnx"]["random_calibration"] and any("random calibration" in n for n in d["notes"])
    convs = [r for r in d["layers"] if r["op"] == "CONV_2D"]
    assert [r["output_shapes"][0] for r in convs[:2]] == [[1, 16, 16, 8], [1, 16, 16, 16]]
    assert d["layer_totals"]["macs"] == 16 * 16 * 8 * 27 + 16 * 16 * 16 * 72 + 16 * 10
    # calibration values change the scales, never the arena
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(1).uniform(0, 1, (4, 32, 32, 3)).astype(np.float32))
    rc = cli.main(["check", str(tiny), "--all-boards", "--calib-data", str(calib), "--json", "-"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and not doc["onnx"]["random_calibration"] and doc["model"] == str(tiny)
    m7 = doc["targets"]["cortex-m7"]
    assert m7["arena_bytes"] == d["arena_bytes"]
    rc = cli.main(["check", str(tiny), "--board", "nucleo-f401re"])
    out, err = capsys.readouterr()
    assert rc == 0 and "FITS" in out and "random calibration" in err


def test_bad_onnx_input_is_one_line(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NETAUG_MCU_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((2, 16, 16, 3), np.float32))
    assert cli.main(["analyze", str(tiny), "--calib-data", str(bad)]) == 2
    assert "NHWC [N,32,32,3]" in capsys.readouterr().err
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not a model" * 10)
    assert cli.main(["check", str(junk)]) == 2
    err = capsys.readouterr().err
    assert "not a readable ONNX model" in err and "Traceback" not in err
    model = tmp_path / "m.tflite"
    model.write_bytes(b"x")
    assert cli.main(["analyze", str(model), "--calib-data", str(bad)]) == 2
