"""The TFLM reference interpreter on the host (the `tflite-micro` wheel: reference kernels, bit-exact
with the firmware's reference path and with tf.lite's BUILTIN_REF kernels).

One wrapper for the converter's evaluation, the analyzer's measurements, the virtual board and the
HIL host's bit-exactness reference. `tflite_micro` is imported when an interpreter is built, so this
module itself stays importable without it. TFLM prints to the C stderr (fd 2): model loading chatter
is silenced, `print_allocations()` is captured.
"""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading

import numpy as np

from .errors import UserError

_FD2_LOCK = threading.Lock()


@contextlib.contextmanager
def quiet_fd2():
    """Silence C++ stderr chatter (TFLM's 'Didn't find op ...', LiteRT's XNNPACK notice)."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as dn:
            os.dup2(dn.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def capture_fd2(fn):
    """(fn(), what fn wrote to fd 2)."""
    with _FD2_LOCK:
        fd, tmp = tempfile.mkstemp(prefix="tflm-fd2-")
        saved = os.dup(2)
        try:
            os.dup2(fd, 2)
            try:
                res = fn()
            finally:
                os.dup2(saved, 2)
            os.lseek(fd, 0, 0)
            out = b""
            while chunk := os.read(fd, 65536):
                out += chunk
        finally:
            os.close(saved)
            os.close(fd)
            os.unlink(tmp)
    return res, out.decode("utf-8", "replace")


def default_arena_size(model) -> int:
    """A generous host arena: every activation byte + 2x the model + 1 MiB (`model`: a TFLiteModel)."""
    act = sum(t.bytes for t in model.tensors if not t.has_data)
    return (act + 2 * model.file_bytes + (1 << 20)) // 16 * 16


class HostTFLM:
    """`HostTFLM(model_bytes)(x)` -> the output tensor; not thread-safe (one per thread)."""

    def __init__(self, model_bytes: bytes, arena_size: int | None = None, name: str = "model"):
        from tflite_micro.python.tflite_micro import runtime

        from .tflite_model import load

        self.model = load(model_bytes)
        self.arena_size = arena_size or default_arena_size(self.model)
        try:
            with quiet_fd2():
                self.interp = runtime.Interpreter.from_bytes(bytes(model_bytes), arena_size=self.arena_size)
        except Exception as exc:  # noqa: BLE001 - TFLM reports every load failure as RuntimeError
            lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
            raise UserError(f"host TFLM cannot load {name}: {lines[-1] if lines else type(exc).__name__}") \
                from None
        self.input_details = self.interp.get_input_details(0)
        self.output_details = self.interp.get_output_details(0)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        d = self.input_details
        self.interp.set_input(np.asarray(x).reshape(d["shape"]).astype(d["dtype"]), 0)
        self.interp.invoke()
        return np.array(self.interp.get_output(0), copy=True)

    def run(self, x: np.ndarray) -> np.ndarray:
        """int8 input bytes/array -> flat int8 output (what a device returns)."""
        return self(np.asarray(x, dtype=np.int8)).astype(np.int8).reshape(-1)

    def allocations(self) -> dict:
        """RecordingMicroAllocator figures: {'total', 'head', 'tail', '<category>': {...}}."""
        _, text = capture_fd2(self.interp.print_allocations)
        return parse_allocations(text)

    def arena_used(self) -> int | None:
        """'Arena allocation total' = arena_used_bytes() of the host build."""
        try:
            return self.allocations()["total"]
        except UserError:
            return None


def parse_allocations(text: str) -> dict:
    res: dict = {}
    for key in ("total", "head", "tail"):
        m = re.search(rf"Arena allocation {key} (\d+) bytes", text)
        if not m:
            raise UserError(f"no 'Arena allocation {key}' line in TFLM's print_allocations output: {text[:200]!r}")
        res[key] = int(m.group(1))
    for m in re.finditer(r"'([^']+)' used (\d+) bytes with alignment overhead \(requested (\d+) bytes for (\d+)",
                         text):
        res[m.group(1)] = {"used": int(m.group(2)), "requested": int(m.group(3)), "count": int(m.group(4))}
    return res


def op_host_times(model_bytes: bytes, x: np.ndarray, repeats: int = 3) -> list[int]:
    """Host time (ns, best of `repeats`) of each operator of subgraph 0 in the tflite-micro wheel: the
    wheel has no per-op profiler, so every op runs as a one-op model (the same tensors and weights) on
    the values the whole model computed for input x (kPreserveAllTensors)."""
    import time

    import flatbuffers
    from tflite_micro.python.tflite_micro import runtime
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

    from .tflite_model import load
    parsed = load(model_bytes)
    arena = default_arena_size(parsed)
    with quiet_fd2():
        full = runtime.Interpreter(bytes(model_bytes), [], arena, runtime.InterpreterConfig.kPreserveAllTensors)
        d = full.get_input_details(0)
        full.set_input(np.asarray(x, dtype=np.int8).reshape(d["shape"]).astype(d["dtype"]), 0)
        full.invoke()
    values = {t.index: np.array(full.GetTensor(t.index, 0)["tensor_data"], copy=True)
              for t in parsed.tensors if not t.has_data}
    m = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(bytes(model_bytes), 0))
    sg, ops = m.subgraphs[0], list(m.subgraphs[0].operators)
    times = []
    for op in ops:
        ins = [int(i) for i in (op.inputs if op.inputs is not None else []) if i >= 0 and not parsed.tensors[i].has_data]
        sg.operators, sg.inputs, sg.outputs = [op], ins, [int(o) for o in op.outputs]
        b = flatbuffers.Builder(len(model_bytes) + 4096)
        b.Finish(m.Pack(b), file_identifier=b"TFL3")
        with quiet_fd2():
            one = runtime.Interpreter(bytes(b.Output()), [], arena)
            for k, t in enumerate(ins):
                one.set_input(values[t].reshape(one.get_input_details(k)["shape"]), k)
            best = None
            for _ in range(repeats):
                t0 = time.perf_counter_ns()
                one.invoke()
                dt = time.perf_counter_ns() - t0
                best = dt if best is None else min(best, dt)
        times.append(best)
    return times
