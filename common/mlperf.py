"""MLPerf Tiny benchmark facts shared by the firmware generator and the HIL protocol: the model name the
official runner keys its test scripts by, and how the reference submitters' th_load_tensor turns a dataset
file into the int8 input tensor (th_results: dequantized outputs, or ad01's MSE)."""
from __future__ import annotations

INPUT_FORMATS = ("int8", "uint8", "float32")   # raw tensor bytes | uint8 minus 128 | float32 LE, quantized
INPUT_ITEM_BYTES = {"int8": 1, "uint8": 1, "float32": 4}   # dataset-file bytes per input tensor element


def db_bytes_needed(fmt: str, elements: int) -> int:
    """The device's db/bload buffer: the dataset-file bytes one inference reads (ad01: 4 per element)."""
    return elements * INPUT_ITEM_BYTES[fmt]

MLPERF_BENCHMARKS = {
    "ic01": {"input": "uint8", "results": "dequantized"},
    "kws01": {"input": "int8", "results": "dequantized"},
    "vww01": {"input": "uint8", "results": "dequantized"},
    "ad01": {"input": "float32", "results": "mse"},     # one value: mean((dequant(out) - in)^2)
}
