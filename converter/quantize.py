"""Run the onnx2tf int8 worker (converter._onnx2tf_worker) in a scratch directory, offline."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..common.paths import cache_root
from .errors import ConvertError


def log_dir() -> Path:
    return cache_root() / "logs"


def offline_env() -> dict[str, str]:
    """Environment for the worker: proxies to a closed port (defence in depth; the worker also
    disables sockets), quiet TensorFlow, no GPU probing."""
    env = dict(os.environ)
    for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        env[k] = "http://127.0.0.1:9"
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env["CUDA_VISIBLE_DEVICES"] = ""
    env["TF_ENABLE_ONEDNN_OPTS"] = "0"
    return env


def _error_line(log: str) -> str:
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "CALIB_SHAPE_MISMATCH" in ln:
            return ln.split("CALIB_SHAPE_MISMATCH", 1)[1].strip()
    for ln in reversed(lines):
        low = ln.lower()
        if ("error" in low or "exception" in low or "not yet implemented" in low) and len(ln) < 400:
            return ln
    return lines[-1][:300] if lines else "no output"


def onnx_to_int8_tflite(onnx_proto, calib_nhwc: np.ndarray, input_name: str = "input",
                        quant_type: str = "per-channel", timeout: float = 1800, simplified: bool = False) -> tuple[bytes, dict, float]:
    """ONNX ModelProto + normalised NHWC float32 calibration data -> (tflite bytes, layer map, seconds)."""
    calib = np.ascontiguousarray(calib_nhwc, dtype=np.float32)
    if calib.ndim != 4 or calib.shape[0] < 1:
        raise ConvertError(f"calibration data must be NHWC float32 [N,H,W,C], got shape {calib.shape}")
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="netaug-onnx2tf-") as tmp:
        tmpd = Path(tmp)
        onnx_path = tmpd / "model.onnx"
        onnx_path.write_bytes(onnx_proto.SerializeToString())
        np.save(tmpd / "calib.npy", calib)
        out = tmpd / "model_full_integer_quant.tflite"
        job = {"onnx": str(onnx_path), "calib": str(tmpd / "calib.npy"), "out": str(out),
               "input_name": input_name, "quant_type": quant_type, "simplified": bool(simplified)}
        (tmpd / "job.json").write_text(json.dumps(job))
        log_path = tmpd / "onnx2tf.log"
        with open(log_path, "wb") as logf:
            try:
                proc = subprocess.run([sys.executable, "-m", f"{__package__}._onnx2tf_worker", str(tmpd / "job.json")],
                                      cwd=tmpd, env=offline_env(), stdout=logf, stderr=subprocess.STDOUT,
                                      timeout=timeout, check=False)
                rc = proc.returncode
            except subprocess.TimeoutExpired:
                rc = -999
        log = log_path.read_text(errors="replace")
        if rc != 0 or not out.is_file():
            saved = _save_log(log)
            if rc == 3:
                raise ConvertError(f"calibration data of the wrong shape: {_error_line(log)}")
            why = "timed out" if rc == -999 else f"failed (exit {rc})"
            raise ConvertError(f"onnx2tf int8 conversion {why}: {_error_line(log)} (log: {saved})")
        data = out.read_bytes()
        layer_map_path = Path(str(out) + ".layers.json")
        layer_map = json.loads(layer_map_path.read_text()) if layer_map_path.is_file() else {}
    return data, layer_map, time.time() - t0


def _save_log(log: str) -> str:
    try:
        d = log_dir()
        d.mkdir(parents=True, exist_ok=True)
        p = d / f"onnx2tf-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        p.write_text(log)
        if os.environ.get("NETAUG_MCU_DEBUG") == "1":  # errors stay one line unless debugging
            tail = "\n".join(log.splitlines()[-15:])
            print(f"--- onnx2tf log tail ---\n{tail}\n--- end (full log {p}) ---", file=sys.stderr)
        return str(p)
    except OSError:
        return "unsaved"
