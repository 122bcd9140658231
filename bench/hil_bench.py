"""HIL transfer benchmark -> bench/results/hil.json.

Measures on the virtual board (host TFLM behind a pty) with the real client:
- wire efficiency (input payload bytes / host->device bytes needed to load it) of the binary `bload` frame
  and of MLPerf `db` hex loading, measured from the client's byte counters and checked against the formula;
- samples/s of `netaug-mcu hil accuracy` (journal + host TFLM reference included) unthrottled, and with the
  virtual board emulating a 921600-baud UART (10 bits per byte), binary and hex;
- the fraction of the 921600-baud line rate the run uses in each direction.

    python bench/hil_bench.py [--samples 600] [--model hil_tests/data/tiny_fmnist32.tflite]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from netaug_mcu.hil import protocol as P  # noqa: E402
from netaug_mcu.hil.client import Client  # noqa: E402
from netaug_mcu.hil.model import load_model  # noqa: E402
from netaug_mcu.hil.runner import run_accuracy  # noqa: E402
from netaug_mcu.hil.virtual_board import VirtualBoard  # noqa: E402

LINE_BAUD = 921600


def measure_load_efficiency(model, binary: bool, reps: int = 20) -> dict:
    import numpy as np
    rng = np.random.default_rng(0)
    with VirtualBoard(model) as vb:
        c = Client(vb.url, binary=binary).connect()
        try:
            out0, in0 = c.stats.bytes_out, c.stats.bytes_in
            for _ in range(reps):
                c.load(rng.integers(-128, 128, model.input.nbytes, dtype=np.int8).tobytes())
            wire_out = (c.stats.bytes_out - out0) / reps
            wire_in = (c.stats.bytes_in - in0) / reps
        finally:
            c.close()
    n = model.input.nbytes
    return {"payload_bytes": n, "host_to_device_bytes": wire_out, "device_to_host_bytes": wire_in,
            "efficiency": round(n / wire_out, 4), "efficiency_incl_replies": round(n / (wire_out + wire_in), 4)}


def measure_throughput(model, samples: int, baud: int, binary: bool) -> dict:
    with VirtualBoard(model, baud=baud) as vb, tempfile.TemporaryDirectory() as d:
        t0 = time.monotonic()
        s = run_accuracy([vb.url], str(model.path), d, limit=samples, progress=False,
                         binary=None if binary else False)
        wall = time.monotonic() - t0
    b = s["boards"][0]
    run_s = s["wall_s"]
    res = {"baud_emulated": baud or None, "transfer": b["transfer"], "samples": s["samples"],
           "samples_per_s": s["samples_per_s"], "run_wall_s": run_s, "total_wall_s": round(wall, 2),
           "bit_exact": s["bit_exact"], "host_to_device_bytes_per_sample": round(b["bytes_out"] / samples, 1),
           "device_to_host_bytes_per_sample": round(b["bytes_in"] / samples, 1)}
    bits_out, bits_in = b["bytes_out"] * 10, b["bytes_in"] * 10
    res["line_rate_fraction_host_to_device_at_921600"] = round(bits_out / run_s / LINE_BAUD, 4)
    res["line_rate_fraction_device_to_host_at_921600"] = round(bits_in / run_s / LINE_BAUD, 4)
    return res


def measure_qemu(model, elf: str, samples: int) -> dict:
    """The same client and runner against the firmware on QEMU mps2-an500 (UART on a pty)."""
    import hashlib
    from netaug_mcu.hil.runner import run_latency
    with tempfile.TemporaryDirectory() as d:
        s = run_accuracy([f"qemu:{elf}"], str(model.path), d, limit=samples, progress=False, timeout=10.0)
        lat = run_latency(f"qemu:{elf}", str(model.path), runs=10, warmup=2, timeout=10.0)
    b = s["boards"][0]
    return {"elf_sha256": hashlib.sha256(Path(elf).read_bytes()).hexdigest(), "samples": s["samples"],
            "samples_per_s": s["samples_per_s"], "bit_exact": s["bit_exact"], "device_top1": s["device_top1"],
            "host_tflm_top1": s["host_tflm_top1"], "transfer": b["transfer"], "board_info": b["info"],
            "latency_median_ms": lat["median_ms"], "latency_min_ms": lat["min_ms"], "latency_max_ms": lat["max_ms"],
            "latency_label": lat["timer_label"],
            "note": "ELF generated and built by the firmware stage (firmware.generate, board mps2-an500, TFLM + "
                    "CMSIS-NN); QEMU serial is a pty, so samples/s reflect QEMU's UART emulation, not 115200 baud"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "hil_tests" / "data" / "tiny_fmnist32.tflite"))
    ap.add_argument("--samples", type=int, default=600)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "hil.json"))
    ap.add_argument("--qemu-elf", help="also measure this mps2-an500 firmware ELF (built for --model) on QEMU")
    ap.add_argument("--qemu-samples", type=int, default=100)
    args = ap.parse_args()
    model = load_model(args.model)
    n = model.input.nbytes
    t0 = time.time()
    eff_bin = measure_load_efficiency(model, binary=True)
    eff_hex = measure_load_efficiency(model, binary=False)
    assert abs(eff_bin["host_to_device_bytes"] - P.wire_bytes_binary(n)) < 1e-9, eff_bin
    assert abs(eff_hex["host_to_device_bytes"] - P.wire_bytes_hex(n)) < 1e-9, eff_hex
    reps = [measure_throughput(model, args.samples, 0, True) for _ in range(3)]   # the box is shared: median
    reps.sort(key=lambda r: r["samples_per_s"])
    runs = {
        "unthrottled_binary": {**reps[1], "samples_per_s_repeats": [r["samples_per_s"] for r in reps]},
        "unthrottled_hex": measure_throughput(model, args.samples, 0, False),
        "uart_921600_binary": measure_throughput(model, args.samples // 2, LINE_BAUD, True),
        "uart_921600_hex": measure_throughput(model, args.samples // 2, LINE_BAUD, False),
    }
    u = runs["uart_921600_binary"]
    sample_bits = (u["host_to_device_bytes_per_sample"]) * 10
    result = {
        "benchmark": "hil transfer (virtual board, host TFLM behind a pty)",
        "model": os.path.relpath(model.path, ROOT), "input_bytes": n, "output_bytes": model.output.nbytes,
        "wire_efficiency_binary": eff_bin["efficiency"],
        "wire_efficiency_hex": eff_hex["efficiency"],
        "wire_efficiency_binary_incl_replies": eff_bin["efficiency_incl_replies"],
        "wire_efficiency_hex_incl_replies": eff_hex["efficiency_incl_replies"],
        "wire_efficiency_binary_by_input_size": {str(k): round(k / P.wire_bytes_binary(k), 4)
                                                 for k in (400, 1024, 3072, 9216, 27648)},
        "wire_efficiency_hex_by_input_size": {str(k): round(k / P.wire_bytes_hex(k), 4)
                                              for k in (400, 1024, 3072, 9216, 27648)},
        "load_bytes": {"binary": eff_bin, "hex": eff_hex},
        "samples_per_s_virtual_board": runs["unthrottled_binary"]["samples_per_s"],
        "samples_per_s_virtual_board_hex": runs["unthrottled_hex"]["samples_per_s"],
        "samples_per_s_at_921600_binary": u["samples_per_s"],
        "samples_per_s_at_921600_hex": runs["uart_921600_hex"]["samples_per_s"],
        "line_rate_fraction_at_921600": u["line_rate_fraction_host_to_device_at_921600"],
        "line_rate_fraction_at_921600_hex": runs["uart_921600_hex"]["line_rate_fraction_host_to_device_at_921600"],
        "line_rate_bound_samples_per_s_at_921600_binary": round(LINE_BAUD / sample_bits, 2),
        "runs": runs,
        "notes": [
            "wire efficiency = input payload bytes / host->device bytes to load it (command + frame or hex); "
            "measured from the client's byte counters, equal to the protocol formula",
            "samples/s include the journal (fdatasync per sample) and the host TFLM reference per sample; "
            "unthrottled_binary is the median of 3 runs (the 2-core machine is shared, see loadavg)",
            "uart_921600_*: the virtual board sleeps 10 bits/byte at 921600 baud for every byte in and out "
            "(an emulated UART); line_rate_fraction = host->device bits per second / 921600",
        ],
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "loadavg_1min_at_end": round(os.getloadavg()[0], 2)},
        "bench_wall_s": round(time.time() - t0, 1),
        "command": "python bench/hil_bench.py " + " ".join(sys.argv[1:]),
    }
    if args.qemu_elf:
        result["qemu"] = measure_qemu(model, args.qemu_elf, args.qemu_samples)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, (dict, list))}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
