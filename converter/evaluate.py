"""Run an int8 .tflite with tf.lite/LiteRT (optimized and reference kernels) and the TFLM host
interpreter; accuracy and agreement report.

Inputs are prepared with netaug_mcu.common.preprocess (numpy), exactly as the HIL host does for the board.
"""
from __future__ import annotations

import sys
from typing import Callable

import numpy as np

from ..common.host_tflm import HostTFLM, quiet_fd2
from ..common.preprocess import dequantize, quantize as quantize_input
from .errors import ConvertError


def _progress(total: int, desc: str, quiet: bool):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    disable = quiet or not console.is_terminal
    return Progress(TextColumn(desc), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console, transient=True, disable=disable)


class LiteRTRunner:
    """tf.lite-compatible interpreter from ai_edge_litert (bit-exact with tf.lite of TF 2.19)."""

    def __init__(self, model_bytes: bytes, reference: bool = False):
        try:
            from ai_edge_litert import interpreter as lite
        except ModuleNotFoundError:  # fall back to TensorFlow's copy
            import tensorflow.lite as lite  # type: ignore[no-redef]
        kind = lite.OpResolverType.BUILTIN_REF if reference else lite.OpResolverType.AUTO
        try:
            with quiet_fd2():
                self.it = lite.Interpreter(model_content=model_bytes, experimental_op_resolver_type=kind,
                                           num_threads=1)
                self.it.allocate_tensors()
        except Exception as exc:  # noqa: BLE001
            raise ConvertError(f"tf.lite cannot load the model: {str(exc).splitlines()[0]}") from exc
        self.inp = self.it.get_input_details()[0]
        self.out = self.it.get_output_details()[0]

    @property
    def input_quant(self) -> tuple[float, int]:
        s, z = self.inp["quantization"]
        return float(s), int(z)

    @property
    def output_quant(self) -> tuple[float, int]:
        s, z = self.out["quantization"]
        return float(s), int(z)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.it.set_tensor(self.inp["index"], x.reshape(self.inp["shape"]).astype(self.inp["dtype"]))
        self.it.invoke()
        return self.it.get_tensor(self.out["index"]).copy()


def _quantize_for(runner: LiteRTRunner, x: np.ndarray) -> np.ndarray:
    dt = np.dtype(runner.inp["dtype"])
    if dt.kind == "f":
        return x.astype(dt)
    s, z = runner.input_quant
    if dt == np.int8:
        return quantize_input(x, s, z)
    v = np.asarray(x, np.float32) / np.float32(s)
    r = np.sign(v) * np.floor(np.abs(v) + np.float32(0.5)) + z
    info = np.iinfo(dt)
    return np.clip(r, info.min, info.max).astype(dt)


def _run_all(fn: Callable[[np.ndarray], np.ndarray], xs: np.ndarray, desc: str, quiet: bool) -> np.ndarray:
    outs = []
    with _progress(len(xs), desc, quiet) as prog:
        task = prog.add_task(desc, total=len(xs))
        for x in xs:
            outs.append(fn(x[None]).reshape(-1))
            prog.advance(task)
    return np.stack(outs) if outs else np.zeros((0, 0))


def _pct(a: np.ndarray) -> float:
    return round(float(np.mean(a)) * 100.0, 2) if len(a) else float("nan")


def evaluate_tflite(model_bytes: bytes, inputs_nhwc: np.ndarray, labels: np.ndarray | None = None,
                    float_logits: np.ndarray | None = None, ref_check_samples: int = 100,
                    quiet: bool = False) -> dict:
    """Run tf.lite (default kernels), TFLM and, on the first `ref_check_samples`, tf.lite BUILTIN_REF.

    inputs_nhwc: preprocessed float32 images (quantized here with the model's input parameters).
    Returns the report fields (top-1 in percent, agreement in percent, logit differences in float).
    """
    lite = LiteRTRunner(model_bytes)
    q_in = _quantize_for(lite, inputs_nhwc)
    int8_raw = _run_all(lite, q_in, "tf.lite int8", quiet)
    tflm = HostTFLM(model_bytes)
    tflm_raw = _run_all(tflm, q_in, "TFLM host  ", quiet)
    n_ref = min(int(ref_check_samples), len(q_in))
    ref = LiteRTRunner(model_bytes, reference=True)
    ref_raw = _run_all(ref, q_in[:n_ref], "tf.lite ref", quiet)

    out_dt = np.dtype(lite.out["dtype"])
    if out_dt.kind == "f":
        int8_out, tflm_out = int8_raw.astype(np.float32), tflm_raw.astype(np.float32)
    else:
        s, z = lite.output_quant
        int8_out, tflm_out = dequantize(int8_raw, s, z), dequantize(tflm_raw, s, z)
    rep: dict = {"eval_samples": int(len(q_in))}
    p_int8, p_tflm = int8_out.argmax(1), tflm_out.argmax(1)
    if labels is not None:
        labels = np.asarray(labels)[: len(q_in)]
        rep["int8_top1"] = _pct(p_int8 == labels)
        rep["tflm_top1"] = _pct(p_tflm == labels)
    agreement = {"int8_vs_tflm": _pct(p_int8 == p_tflm)}
    diff = {"int8_vs_tflm": float(np.abs(int8_out - tflm_out).max()) if len(q_in) else 0.0}
    if float_logits is not None:
        fl = np.asarray(float_logits, np.float32)[: len(q_in)]
        p_f = fl.argmax(1)
        if labels is not None:
            rep["float_top1"] = _pct(p_f == labels)
        agreement["float_vs_int8"] = _pct(p_f == p_int8)
        agreement["float_vs_tflm"] = _pct(p_f == p_tflm)
        diff["float_vs_int8"] = float(np.abs(fl - int8_out).max())
        diff["float_vs_tflm"] = float(np.abs(fl - tflm_out).max())
    rep["agreement"] = agreement
    rep["max_logit_diff"] = {k: round(v, 6) for k, v in diff.items()}
    if out_dt.kind != "f":
        rep["max_logit_diff_lsb"] = {"int8_vs_tflm": int(np.abs(int8_raw.astype(np.int32)
                                                                 - tflm_raw.astype(np.int32)).max())
                                     if len(q_in) else 0}
    rep["tflm_vs_tflite_ref"] = {"samples": n_ref,
                                 "bit_exact": bool(np.array_equal(ref_raw, tflm_raw[:n_ref])),
                                 "max_abs_lsb": int(np.abs(ref_raw.astype(np.int64)
                                                           - tflm_raw[:n_ref].astype(np.int64)).max())
                                 if n_ref else 0}
    return rep


def print_report(rep: dict, file=None) -> None:
    """Human summary (rich table) on stdout."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file or sys.stdout)
    t = Table(title=rep.get("title", "int8 model report"), show_header=True)
    t.add_column("metric")
    t.add_column("value", justify="right")
    for key in ("float_top1", "int8_top1", "tflm_top1"):
        if rep.get(key) is not None:
            t.add_row(f"{key} (%)", f"{rep[key]:.2f}")
    for k, v in rep.get("agreement", {}).items():
        t.add_row(f"top-1 agreement {k} (%)", f"{v:.2f}")
    for k, v in rep.get("max_logit_diff", {}).items():
        t.add_row(f"max |logit diff| {k}", f"{v:.5f}")
    r = rep.get("tflm_vs_tflite_ref")
    if r:
        t.add_row("TFLM == tf.lite BUILTIN_REF", f"{r['bit_exact']} ({r['samples']} samples)")
    for key in ("eval_samples", "macs", "weight_bytes", "file_bytes", "conversion_seconds"):
        if rep.get(key) is not None:
            t.add_row(key, f"{rep[key]:,}" if isinstance(rep[key], int) else f"{rep[key]}")
    if rep.get("op_histogram"):
        t.add_row("ops", ", ".join(f"{k} {v}" for k, v in rep["op_histogram"].items()))
    console.print(t)
