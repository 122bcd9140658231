"""`analyze --layers`: per-layer profile (table and JSON) agrees with the model and the exact arena."""
from __future__ import annotations

import json

from netaug_mcu import cli
from netaug_mcu.common.tflite_model import load
from netaug_mcu.converter import analyzer
from keras_models import model_path


def test_layers_json_matches_model_and_arena(capsys):
    path = model_path("residual")
    assert cli.main(["analyze", str(path), "--layers", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    m, a = load(path), analyzer.analyze(path, "cortex-m7")
    rows = d["layers"]
    assert [r["op"] for r in rows] == [op.name for op in m.operators]
    assert d["layer_totals"]["macs"] == m.macs == sum(op.macs for op in m.operators) > 0
    assert d["layer_totals"]["max_arena_high_water"] == a.arena_bytes == d["arena_bytes"]
    peak = max(rows, key=lambda r: (r["arena_high_water"], -r["index"]))
    assert f"{peak['index']}:{peak['op']}" == d["peak_op"]
    first = rows[0]   # CONV_2D 40x40x3 -> 20x20x16, 3x3 filter, int8 weights + int32 bias
    assert first["input_shapes"] == [[1, 40, 40, 3]] and first["output_shapes"] == [[1, 20, 20, 16]]
    assert first["macs"] == 20 * 20 * 16 * 3 * 3 * 3
    assert first["params"] == 16 * 3 * 3 * 3 + 16 and first["weight_bytes"] == 16 * 27 + 16 * 4
    assert first["activation_bytes"] == 40 * 40 * 3 + 20 * 20 * 16
    adds = [r for r in rows if r["op"] == "ADD"]
    assert adds and all(r["params"] == 0 and r["macs"] == 0 for r in adds)
    assert all(r["arena_high_water"] == a.tail_bytes + r["head_high_water"] for r in rows)


def test_layers_table(capsys):
    assert cli.main(["analyze", str(model_path("plain_cnn")), "--layers", "--target", "host"]) == 0
    out = capsys.readouterr().out
    assert "per-layer profile" in out and "MACs" in out and "total" in out and "CONV_2D" in out
