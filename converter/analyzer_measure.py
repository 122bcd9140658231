"""Ground truth from the `tflite-micro` Python wheel (x86-64, reference kernels).

The wheel has no arena_used_bytes() binding: `print_allocations()` writes the
RecordingMicroAllocator report to the C-level stderr, so file descriptor 2 is redirected to
a temporary file around the call and the "Arena allocation total/head/tail" lines parsed.
Arena sizes passed to the interpreter are multiples of 16 (new[] returns 16-aligned memory),
the configuration the analyzer models.

Every public function runs the wheel in a child process (`python -m netaug_mcu.converter.analyzer_measure`):
the wheel's native library and TensorFlow's must not share a process (segfaults), and a
crash in the interpreter on odd input then cannot take the caller down.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from ..common.host_tflm import capture_fd2, parse_allocations


def _runtime():
    from tflite_micro.python.tflite_micro import runtime
    return runtime


def default_arena(data: bytes) -> int:
    return max(10 * len(data), 1 << 20) // 16 * 16


def _allocations(data: bytes, arena_size: int | None = None) -> dict:
    """{'total','head','tail', categories...} from print_allocations()."""
    rt = _runtime()
    size = arena_size or default_arena(data)

    def go():
        it = rt.Interpreter.from_bytes(bytes(data), arena_size=size)
        it.print_allocations()
        return it

    _, text = capture_fd2(go)
    return parse_allocations(text)


def _measure_arena(data: bytes) -> int:
    return _allocations(data)["total"]


def _constructs(data: bytes, arena_size: int) -> bool:
    rt = _runtime()

    def go():
        try:
            rt.Interpreter.from_bytes(bytes(data), arena_size=arena_size)
            return True
        except (RuntimeError, ValueError):
            return False

    ok, _ = capture_fd2(go)
    return ok


def _constructs_forked(data: bytes, arena_size: int) -> bool:
    """_constructs in a forked child: the wheel can segfault on arenas too small for its own objects."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            ok = _constructs(data, arena_size)
        except BaseException:  # noqa: BLE001
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def _min_arena(data: bytes, hi: int | None = None, lo: int = 16, step: int = 8) -> int:
    """Smallest arena_size (multiple of `step`) for which AllocateTensors succeeds."""
    hi = hi or default_arena(data)
    if not _constructs_forked(data, hi):
        raise RuntimeError(f"model does not allocate even with {hi} B")
    lo = lo // step
    hi_s = hi // step
    while lo < hi_s:
        mid = (lo + hi_s) // 2
        if _constructs_forked(data, mid * step):
            hi_s = mid
        else:
            lo = mid + 1
    return hi_s * step


def _run_tflm(data: bytes, inputs: list, arena_size: int | None = None) -> list:
    from ..common.tflite_model import load
    rt = _runtime()
    n_out = len(load(data).outputs)

    def go():
        it = rt.Interpreter.from_bytes(bytes(data), arena_size=arena_size or default_arena(data))
        for i, x in enumerate(inputs):
            it.set_input(x, i)
        it.invoke()
        return [it.get_output(i).copy() for i in range(n_out)]

    outs, _ = capture_fd2(go)
    return outs


# ---- child-process wrappers -----------------------------------------------------------------

def _child(cmd: str, data: bytes, **kw):
    import numpy as np
    with tempfile.TemporaryDirectory(prefix="tflm-measure-") as d:
        mp = os.path.join(d, "model.tflite")
        with open(mp, "wb") as f:
            f.write(bytes(data))
        if "inputs" in kw:
            np.savez(os.path.join(d, "inputs.npz"), *kw.pop("inputs"))
        arg = json.dumps({"cmd": cmd, "dir": d, **kw})
        env = dict(os.environ, OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3")
        r = subprocess.run([sys.executable, "-m", __name__, arg], capture_output=True, text=True, env=env)
        if r.returncode != 0:
            raise RuntimeError(f"tflite-micro child failed ({r.returncode}): {r.stderr.strip()[-300:]}")
        res = json.loads(r.stdout.strip().splitlines()[-1])
        if cmd == "run":
            z = np.load(os.path.join(d, "outputs.npz"))
            return [z[f"arr_{i}"] for i in range(len(z.files))]
        return res


def allocations(data: bytes, arena_size: int | None = None) -> dict:
    """{'total','head','tail', per-category dicts} from print_allocations()."""
    return _child("alloc", data, arena_size=arena_size)


def measure_arena(data: bytes) -> int:
    return allocations(data)["total"]


def constructs(data: bytes, arena_size: int) -> bool:
    return _child("constructs", data, arena_size=arena_size)


def min_arena(data: bytes, hi: int | None = None, lo: int = 16, step: int = 8) -> int:
    """Smallest arena_size (multiple of `step`) for which AllocateTensors succeeds (binary search)."""
    return _child("min", data, hi=hi, lo=lo, step=step)


def run_tflm(data: bytes, inputs: list, arena_size: int | None = None) -> list:
    return _child("run", data, inputs=list(inputs), arena_size=arena_size)


def _main(arg: str) -> None:
    import numpy as np
    a = json.loads(arg)
    with open(os.path.join(a["dir"], "model.tflite"), "rb") as f:
        data = f.read()
    if a["cmd"] == "alloc":
        res = _allocations(data, a.get("arena_size"))
    elif a["cmd"] == "constructs":
        res = _constructs_forked(data, a["arena_size"])
    elif a["cmd"] == "min":
        res = _min_arena(data, a.get("hi"), a.get("lo") or 16, a.get("step") or 8)
    elif a["cmd"] == "run":
        z = np.load(os.path.join(a["dir"], "inputs.npz"))
        outs = _run_tflm(data, [z[f"arr_{i}"] for i in range(len(z.files))], a.get("arena_size"))
        np.savez(os.path.join(a["dir"], "outputs.npz"), *outs)
        res = len(outs)
    else:
        raise SystemExit(f"unknown command {a['cmd']}")
    print(json.dumps(res))


if __name__ == "__main__":
    _main(sys.argv[1])
