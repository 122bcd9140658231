"""Ground truth from the `tflite-micro` Python wheel (x86-64, reference kernels).

The wheel has no arena_used_bytes() binding: `print_allocations()` writes the
RecordingMicroAllocator report to the C-level stderr, so file descriptor 2 is redirected to
a temporary file around the call and the "Arena allocation total/head/tail" lines parsed.
Arena sizes passed to the interpreter are multiples of 16 (new[] returns 16-aligned memory),
the configuration the analyzer models.
"""
from __future__ import annotations

import os
import re
import tempfile
import threading

_LOCK = threading.Lock()


def _runtime():
    from tflite_micro.python.tflite_micro import runtime
    return runtime


def _capture_fd2(fn):
    with _LOCK:
        fd, tmp = tempfile.mkstemp(prefix="tflm-alloc-")
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


def default_arena(data: bytes) -> int:
    return max(10 * len(data), 1 << 20) // 16 * 16


def allocations(data: bytes, arena_size: int | None = None) -> dict:
    """{'total','head','tail', categories...} from print_allocations()."""
    rt = _runtime()
    size = arena_size or default_arena(data)

    def go():
        it = rt.Interpreter.from_bytes(bytes(data), arena_size=size)
        it.print_allocations()
        return it

    _, text = _capture_fd2(go)
    res: dict = {}
    for key in ("total", "head", "tail"):
        m = re.search(rf"Arena allocation {key} (\d+) bytes", text)
        if not m:
            raise RuntimeError(f"no 'Arena allocation {key}' line in print_allocations output: {text[:200]!r}")
        res[key] = int(m.group(1))
    for m in re.finditer(r"'([^']+)' used (\d+) bytes with alignment overhead \(requested (\d+) bytes for (\d+)", text):
        res[m.group(1)] = {"used": int(m.group(2)), "requested": int(m.group(3)), "count": int(m.group(4))}
    return res


def measure_arena(data: bytes) -> int:
    return allocations(data)["total"]


def constructs(data: bytes, arena_size: int) -> bool:
    rt = _runtime()

    def go():
        try:
            rt.Interpreter.from_bytes(bytes(data), arena_size=arena_size)
            return True
        except (RuntimeError, ValueError):
            return False

    ok, _ = _capture_fd2(go)
    return ok


def min_arena(data: bytes, hi: int | None = None, lo: int = 16, step: int = 8) -> int:
    """Smallest arena_size (multiple of `step`) for which AllocateTensors succeeds."""
    hi = hi or default_arena(data)
    if not constructs(data, hi):
        raise RuntimeError(f"model does not allocate even with {hi} B")
    lo = lo // step
    hi_s = hi // step
    while lo < hi_s:
        mid = (lo + hi_s) // 2
        if constructs(data, mid * step):
            hi_s = mid
        else:
            lo = mid + 1
    return hi_s * step


def run_tflm(data: bytes, inputs: list, arena_size: int | None = None) -> list:
    from .tflite_model import load
    rt = _runtime()
    n_out = len(load(data).outputs)

    def go():
        it = rt.Interpreter.from_bytes(bytes(data), arena_size=arena_size or default_arena(data))
        for i, x in enumerate(inputs):
            it.set_input(x, i)
        it.invoke()
        return [it.get_output(i).copy() for i in range(n_out)]

    outs, _ = _capture_fd2(go)
    return outs
