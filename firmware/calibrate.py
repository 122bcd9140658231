"""Measure what the memory analyzer predicts, on the real Cortex-M7 build (QEMU mps2-an500).

For each model: build the firmware (generous arena), boot it in QEMU, read `info%` (arena_used_bytes()),
optionally a RecordingMicroAllocator build's `alloc%` breakdown, and attribute the ELF's flash to the
archive members it came from (linker map). Prints Markdown.

    python -m netaug_mcu.firmware.calibrate MODEL.tflite [...] [--recording] [--out calib.md]
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from ..common.qemu import Qemu
from . import build, tflm_build
from . import generate as gen

ARENA_FOR_CALIBRATION = 200 * 1024


def map_sizes(map_path: Path) -> dict[str, int]:
    """Bytes in the final image per input object (archive member or project object), from the GNU ld map."""
    sizes: dict[str, int] = defaultdict(int)
    text = map_path.read_text(errors="replace")
    body = text.split("Linker script and memory map", 1)[-1]
    pending = None
    for line in body.splitlines():
        m = re.match(r"^ (\.(?:text|rodata|data|isr_vector|ARM\.exidx|ARM\.extab|init_array)\S*)\s*$", line)
        if m:
            pending = m.group(1)
            continue
        m = re.match(r"^ (\.(?:text|rodata|data|isr_vector|ARM\.exidx|ARM\.extab|init_array)\S*)?\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S+)",
                     line)
        if m and (m.group(1) or pending):
            size = int(m.group(3), 16)
            src = m.group(4)
            am = re.search(r"\(([^)]+)\)$", src)
            name = am.group(1) if am else Path(src).name
            if "libtflm.a" in src:
                name = "tflm:" + name
            elif am:
                name = Path(src.split("(")[0]).name + ":" + name
            sizes[name] += size
        pending = None
    return dict(sizes)


def measure(model: Path, tree: Path, lib: Path, recording: bool = False) -> dict:
    import serial

    out = Path(tempfile.mkdtemp(prefix="calib-"))
    proj = gen.generate(model, board="mps2-an500", out=out, arena_bytes=ARENA_FOR_CALIBRATION,
                        recording=recording, tree=tree, lib=lib, log=lambda *_: None)
    res = build.build(out, tree=tree, lib=lib, log=lambda *_: None)
    with Qemu(res.elf) as q:
        s = serial.serial_for_url(q.url, timeout=10)
        def cmd(c):
            s.write(c.encode() + b"%")
            lines = []
            while True:
                ln = s.readline().decode("latin-1").strip()
                if not ln:
                    raise RuntimeError(f"timeout after {c}: {lines}")
                if ln == "m-ready":
                    return lines
                lines.append(ln)
        boot = []
        while True:
            ln = s.readline().decode("latin-1").strip()
            if ln == "m-ready" or not ln:
                break
            boot.append(ln)
        info = cmd("info")[0]
        alloc = cmd("alloc")[0] if recording else ""
        s.close()
    body = info[info.index("[") + 1:-1]
    fields = dict(kv.split("=", 1) for kv in body.split(","))
    return {"model": model.name, "ops": proj.ops, "model_bytes": proj.model_bytes,
            "arena_used": int(fields["arena_used"]), "flash": res.flash, "text": res.text, "data": res.data,
            "alloc": alloc, "boot_errors": [b for b in boot if b.startswith("e-")],
            "members": map_sizes(out / "fw.map"), "elf": res.elf}


OP_SIZE_OPS = ["CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MAX_POOL_2D", "SOFTMAX",
               "ADD", "MUL", "MEAN", "RESHAPE", "PAD", "CONCATENATION", "QUANTIZE", "DEQUANTIZE", "TRANSPOSE",
               "LOGISTIC", "HARD_SWISH", "RELU", "RELU6", "STRIDED_SLICE", "REDUCE_MAX", "SQUEEZE", "MAXIMUM",
               "MINIMUM", "SUB", "RESIZE_NEAREST_NEIGHBOR", "SPLIT", "PACK", "TANH", "LEAKY_RELU", "PRELU"]


def op_sizes(model: Path, tree: Path, lib: Path, ops=OP_SIZE_OPS, log=print, carrier=()) -> dict:
    """Flash cost of each op's kernel alone: link the firmware with a resolver that registers only that
    op (int8-only CMSIS-NN registration where one exists) and subtract the build that registers none."""
    out = Path(tempfile.mkdtemp(prefix="opsize-"))
    gen.generate(model, board="mps2-an500", out=out, arena_bytes=ARENA_FOR_CALIBRATION, tree=tree, lib=lib,
                 log=lambda *_: None)

    def flash_with(op_list) -> tuple[int, dict]:
        (out / "model_ops.h").write_text(gen.resolver_source(op_list, set(gen.INT8_REGISTRATIONS)))
        res = build.build(out, tree=tree, lib=lib, log=lambda *_: None)
        return res.flash, map_sizes(out / "fw.map")

    base, members = flash_with(list(carrier))
    model_bytes = model.stat().st_size
    tflm = sum(v for k, v in members.items() if k.startswith("tflm:"))
    app = sum(v for k, v in members.items() if k.split(":")[0] in ("main.o", "board.o", "startup.o"))
    other = base - tflm - app - members.get("model_data.o", model_bytes)
    result = {"carrier": list(carrier), "base_flash": base, "model_bytes": model_bytes, "runtime_tflm": tflm, "app_main_board_startup": app,
              "libc_libgcc_libm_other": other, "ops": {}}
    log(f"no ops: flash {base} (model {model_bytes}, TFLM runtime {tflm}, app {app}, libc/other {other})")
    for op in ops:
        if op in carrier:
            continue
        f, _ = flash_with(list(carrier) + [op])
        result["ops"][op] = f - base
        log(f"  {op}: +{f - base} B")
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--recording", action="store_true", help="also a RecordingMicroAllocator build")
    ap.add_argument("--json", default=None, help="write the raw figures here")
    ap.add_argument("--op-sizes", action="store_true", help="per-op kernel flash (first model as the carrier)")
    ap.add_argument("--with", dest="carrier", default="", help="ops always registered (comma list) for --op-sizes")
    ap.add_argument("--ops", default="", help="comma list of ops for --op-sizes (default: a common set)")
    args = ap.parse_args(argv)
    tree = tflm_build.require_tree()
    lib = tflm_build.build_library(tree)
    if args.op_sizes:
        ops = [o for o in args.ops.split(",") if o] or OP_SIZE_OPS
        carrier = [o for o in args.carrier.split(",") if o]
        r = op_sizes(Path(args.models[0]), tree, lib, ops=ops, carrier=carrier,
                     log=lambda m: print(m, file=sys.stderr))
        print(json.dumps(r, indent=1))
        return 0
    rows = []
    for m in args.models:
        r = measure(Path(m), tree, lib)
        if args.recording:
            rr = measure(Path(m), tree, lib, recording=True)
            r["recording_arena_used"], r["alloc"] = rr["arena_used"], rr["alloc"]
        rows.append(r)
        print(f"{r['model']}: arena_used {r['arena_used']} flash {r['flash']} model {r['model_bytes']} "
              f"{r['alloc']}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    print("| model | ops | arena_used_bytes() | ELF flash (text+data) | model bytes | flash - model |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {' '.join(r['ops'])} | {r['arena_used']} | {r['flash']} | {r['model_bytes']} | "
              f"{r['flash'] - r['model_bytes']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
