"""HIL subcommands: `virtual-board` and `hil {accuracy,latency,report,info}`. Stdlib-only at import time."""
from __future__ import annotations

import argparse
import math
import sys

from ..common import cliargs as ca
from ..common.errors import UserError
from .protocol import MLPERF_BENCHMARKS


class CliError(UserError):
    pass


def _floats(text: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not vals or not all(math.isfinite(v) for v in vals):
        raise argparse.ArgumentTypeError(f"expected comma-separated finite numbers, got {text!r}")
    return vals


def _stds(text: str) -> list[float]:
    vals = _floats(text)
    if any(v <= 0 for v in vals):
        raise argparse.ArgumentTypeError(f"every std must be > 0, got {text!r}")
    return vals


def _pre_override(args) -> dict:
    return {"mean": args.preprocess_mean, "std": args.preprocess_std,
            "resolution": args.preprocess_resolution, "channels": args.preprocess_channels}


def _add_conn(p, many: bool = False) -> None:
    if many:
        p.add_argument("--port", action="append", required=True, metavar="URL",
                       help="serial port or pyserial URL (/dev/ttyACM0, /dev/pts/N, socket://HOST:PORT, "
                            "rfc2217://HOST:PORT), or `virtual` (start a virtual board on --model) or "
                            "`qemu:ELF` (boot ELF on QEMU mps2-an500); repeat to shard the dataset across "
                            "boards in parallel")
    else:
        p.add_argument("--port", required=True, metavar="URL",
                       help="serial port or pyserial URL (/dev/ttyACM0, /dev/pts/N, socket://HOST:PORT, rfc2217://...), "
                            "`virtual` (a virtual board on --model) or `qemu:ELF`")
    p.add_argument("--baud", type=ca.BAUD, default=115200, help="UART baud rate (default 115200; ignored by ptys/sockets)")
    p.add_argument("--timeout", type=ca.SECONDS, default=5.0, help="seconds to wait for a reply to a command (default 5)")
    p.add_argument("--infer-timeout", type=ca.SECONDS, default=120.0,
                   help="seconds to wait for an `infer` reply (default 120)")


def _add_pre(p) -> None:
    g = p.add_argument_group("preprocessing (only needed when no model.json sits next to the model)")
    g.add_argument("--model-json", metavar="F", help="model.json to use (default: MODEL.json or model.json beside MODEL)")
    g.add_argument("--preprocess-mean", type=_floats, metavar="M[,M..]", help="per-channel mean")
    g.add_argument("--preprocess-std", type=_stds, metavar="S[,S..]", help="per-channel std")
    g.add_argument("--preprocess-resolution", type=ca.RESOLUTION, metavar="R", help="resize to RxR (default: model input)")
    g.add_argument("--preprocess-channels", type=ca.CHANNELS, metavar="C", help="channels (default: model input)")


def register(sub) -> None:
    vb = sub.add_parser(
        "virtual-board", help="serve the device protocol with host TFLM on a pty (a board without hardware)",
        description="Open a pseudo-terminal (or a TCP port), print its path and answer the netaug-mcu device "
                    "protocol (MLPerf Tiny + bload/info) with the tflite-micro interpreter: the default target "
                    "for `make demo`, CI and `netaug-mcu hil`. Runs until Ctrl-C / SIGTERM.")
    vb.add_argument("model", help="int8 .tflite model")
    vb.add_argument("--port-file", metavar="F", help="also write the port path/URL to F (atomically)")
    vb.add_argument("--baud", type=ca.COUNT, default=None,
                    help="emulate this UART line rate (10 bits/byte); default 0 = as fast as the pty goes "
                         "(9600 with --energy)")
    vb.add_argument("--mlperf", choices=sorted(MLPERF_BENCHMARKS), default=None,
                    help="behave as the MLPerf Tiny reference firmware for this benchmark: m-model-[BENCH], "
                         "dataset-file input conversion (ic01/vww01: uint8 minus 128, kws01: int8, ad01: float32 "
                         "quantized on the device), ad01 result = MSE")
    vb.add_argument("--name", default=None, help="model name in m-model-[...] (default: BENCH or the file stem)")
    vb.add_argument("--energy", action="store_true",
                    help="energy-mode firmware: m-timestamp-mode-energy banner, 9600 baud, timestamps logged "
                         "(m-timestamp-pin-<us>) where the board would pulse its GPIO")
    vb.add_argument("--tcp", type=ca.LISTEN_PORT, metavar="PORT", default=None,
                    help="serve on socket://127.0.0.1:PORT instead of a pty (0 = any free port)")
    vb.add_argument("--fault", action="append", metavar="SPEC",
                    help="fault injection for tests, e.g. silent-after=N, reset-after=N, reset-every=N, "
                         "garbage-every=N, garbage-lines-every=N, corrupt-bload-every=N, vanish-after=N, "
                         "wrong-name, seed=S (repeatable or comma-separated)")
    vb.set_defaults(func=_virtual_board, extra="hil")
    ca.declare_paths(vb, inputs=("model",), out_files=("port_file",))

    mr = sub.add_parser(
        "mlperf-runner", help="run the official MLPerf Tiny runner (unmodified) against any port",
        description="Run mlcommons/tiny benchmark/runner/main.py against --port: a serial device, a pty (the "
                    "virtual board's), or a pyserial URL (socket://... of QEMU or `virtual-board --tcp`), "
                    "bridged to a pty. The runner finds the port through a generated devices.yaml (VID:PID "
                    "0483:374B) and the port list handed to its interpreter; its code is not changed. Its "
                    "output is passed through; its session log stays in --out/sessions/.")
    mr.add_argument("--port", required=True, metavar="URL", help="device path or pyserial URL")
    mr.add_argument("--runner-dir", metavar="DIR", help="benchmark/runner of a mlcommons/tiny checkout "
                    "(default: $MLPERF_TINY_DIR/benchmark/runner)")
    mr.add_argument("--mode", choices=("a", "p", "e"), default="p", help="accuracy, performance or energy")
    mr.add_argument("--dataset", required=True, metavar="DIR", help="dataset root (DIR/<model>/y_labels.csv)")
    mr.add_argument("--test-script", metavar="YAML", help="runner test script (default: its tests_<mode>.yaml)")
    mr.add_argument("--out", default="runs/mlperf-runner", metavar="DIR", help="working directory of the run")
    mr.add_argument("--baud", type=ca.BAUD, default=115200, help="DUT baud rate in the generated devices.yaml")
    mr.add_argument("--python", metavar="EXE", help="interpreter with the runner's requirements "
                    "(pyserial, pyyaml, numpy, scikit-learn, matplotlib, pyusb); default: this one")
    mr.set_defaults(func=_mlperf_runner, extra="hil")

    hil = sub.add_parser("hil", help="hardware-in-the-loop: on-device accuracy, latency, report",
                         description="Measure a model on a board, on QEMU or on the virtual board over the "
                                     "serial protocol (hil_tests/PROTOCOL.md).")
    hs = hil.add_subparsers(dest="hil_command", metavar="SUBCOMMAND")
    hil.set_defaults(func=lambda a: _no_subcommand(hil))

    acc = hs.add_parser("accuracy", help="on-device top-1, confusion matrix and bit-exactness vs host TFLM",
                        description="Stream the test set to the device(s), collect the raw int8 outputs, compare with "
                                    "host TFLM. Every finished sample is appended (fsync'd) to OUT/journal.jsonl; "
                                    "--resume continues an interrupted run without repeating or losing a sample.")
    _add_conn(acc, many=True)
    acc.add_argument("--model", required=True, help="the int8 .tflite the device runs")
    acc.add_argument("--dataset", default="fashion-mnist", choices=["fashion-mnist"], help="test set")
    acc.add_argument("--limit", type=ca.POSITIVE, default=None, metavar="N", help="first N test images (default: all)")
    acc.add_argument("--out", required=True, metavar="DIR", help="output directory (journal, accuracy.json)")
    acc.add_argument("--resume", action="store_true", help="continue the journal in DIR")
    acc.add_argument("--hex", action="store_true", help="force MLPerf `db` hex loading even if bload is offered")
    acc.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_pre(acc)
    acc.set_defaults(func=_accuracy, extra="hil")
    ca.declare_paths(acc, inputs=("model", "model_json"), out_dirs=("out",))

    lat = hs.add_parser("latency", help="per-inference latency from the device's own timer",
                        description="Per-inference time from the device timestamps (m-infer-cycles / clock_hz from "
                                    "info%, else m-lap-us): min/median/p90/max. QEMU's figure is an instruction-count "
                                    "proxy, the virtual board's is host time; both are labelled.")
    _add_conn(lat)
    lat.add_argument("--model", help="the .tflite (optional: a real test image as input, shape check)")
    lat.add_argument("--runs", type=ca.POSITIVE, default=20, help="timed runs (default 20)")
    lat.add_argument("--warmup", type=ca.COUNT, default=3, help="warm-up invokes first (default 3)")
    lat.add_argument("--out", metavar="DIR", help="also write DIR/latency.json")
    lat.add_argument("--model-json", metavar="F", help=argparse.SUPPRESS)
    lat.set_defaults(func=_latency, extra="hil")
    ca.declare_paths(lat, inputs=("model", "model_json"), out_dirs=("out",))

    prof = hs.add_parser("profile", help="per-operator time from the device (prof%%), one row per op, PNG",
                         description="Load an input (a test image when --model has preprocessing, else zeros), "
                                     "run one warm-up and one profiled Invoke() on the device and print one row "
                                     "per operator: op, output shape, MACs, timer ticks, ms, share. Timer: DWT "
                                     "cycles on a board, QEMU's instruction-count proxy (systick-icount), host "
                                     "time on the virtual board (labelled).")
    _add_conn(prof)
    prof.add_argument("--model", help="the .tflite the device runs (op names, shapes, MACs; needed for virtual)")
    prof.add_argument("--out", metavar="DIR", help="write DIR/profile.json")
    prof.add_argument("--png", metavar="F", help="write a bar chart of the per-op times")
    prof.add_argument("--json", action="store_true", help="print JSON instead of the table")
    prof.set_defaults(func=_profile, extra="hil")
    ca.declare_paths(prof, inputs=("model",), out_dirs=("out",), out_files=("png",))

    rep = hs.add_parser("report", help="markdown + JSON report from the accuracy/latency results in DIR",
                        description="Float vs int8 vs on-device accuracy, bit-exact rate, latency, arena, board info "
                                    "-> DIR/report.md and DIR/report.json.")
    rep.add_argument("--out", required=True, metavar="DIR", help="directory with accuracy.json / latency.json")
    rep.add_argument("--model", help="model (default: the one recorded in accuracy.json)")
    rep.add_argument("--latency", metavar="F", help="latency.json elsewhere")
    rep.set_defaults(func=_report)
    ca.declare_paths(rep, inputs=("model", "latency"))

    info = hs.add_parser("info", help="identify the device on a port (name, profile, info%%)")
    _add_conn(info)
    info.set_defaults(func=_info, extra="hil")


def _no_subcommand(parser) -> int:
    parser.print_help()
    raise CliError("give a SUBCOMMAND: accuracy, latency, report or info (see netaug-mcu hil --help)")


def _virtual_board(args) -> int:
    from .virtual_board import serve_forever
    baud = args.baud if args.baud is not None else (9600 if args.energy else 0)
    if baud < 0:
        raise CliError(f"--baud must be >= 0, got {baud}")
    return serve_forever(args.model, port_file=args.port_file, faults=args.fault, baud=baud, tcp_port=args.tcp,
                         mlperf=args.mlperf, name=args.name, energy=args.energy)


def _mlperf_runner(args) -> int:
    from .mlperf_runner import run, summary
    rc, lines = run(args.port, args.mode, args.dataset, args.out, runner_dir=args.runner_dir, baud=args.baud,
                    test_script=args.test_script, python=args.python)
    s = summary(lines)
    if rc != 0:
        print(f"error: the runner exited with status {rc}", file=sys.stderr)
        return 1
    if not s["lines"]:
        print("error: the runner printed no result line", file=sys.stderr)
        return 1
    return 0


def _accuracy(args) -> int:
    from ..common.locks import output_lock
    from .runner import run_accuracy
    with output_lock(args.out):
        s = run_accuracy(args.port, args.model, args.out, dataset=args.dataset, limit=args.limit, resume=args.resume,
                         preprocess=_pre_override(args), baud=args.baud, timeout=args.timeout,
                         infer_timeout=args.infer_timeout, binary=False if args.hex else None,
                         progress=not args.no_progress and sys.stderr.isatty(), meta_path=args.model_json)
    print(f"on-device top-1 {s['device_top1']:.2f} % ({s['correct']}/{s['samples']}), host TFLM "
          f"{s['host_tflm_top1']:.2f} %, bit-exact {s['bit_exact']}/{s['samples']}, "
          f"{s['new_samples']} new samples ({s['resumed_from']} from the journal) at "
          f"{s['samples_per_s'] or 0} samples/s -> {args.out}/accuracy.json")
    for b in s["boards"]:
        if b["error"]:
            print(f"warning: board {b['url']} failed: {b['error']} (the other boards took over)", file=sys.stderr)
    return 0


def _latency(args) -> int:
    import contextlib

    from ..common.locks import output_lock
    from .runner import run_latency
    with output_lock(args.out) if args.out else contextlib.nullcontext():
        r = run_latency(args.port, args.model, runs=args.runs, warmup=args.warmup, baud=args.baud,
                        timeout=args.timeout, infer_timeout=args.infer_timeout, out_dir=args.out,
                        meta_path=args.model_json)
    print(f"latency per inference over {r['runs']} runs: min {r['min_ms']:.3f} ms, median {r['median_ms']:.3f} ms, "
          f"p90 {r['p90_ms']:.3f} ms, max {r['max_ms']:.3f} ms  [{r['timer']}: {r['timer_label']}]")
    return 0


def _profile(args) -> int:
    import json
    from .profile import profile_device, save, table
    from .runner import _Targets, prepare_inputs
    from .model import load_model
    data = None
    if args.model:
        try:
            data = prepare_inputs(load_model(args.model), "fashion-mnist", limit=1)[0][0].tobytes()
        except Exception:  # noqa: BLE001 - no preprocessing or dataset here: zeros are as good for timing
            data = None
    targets = _Targets([args.port], args.model)
    try:
        res = profile_device(targets.urls[0], args.model, data, baud=args.baud, timeout=args.timeout,
                             infer_timeout=args.infer_timeout)
    finally:
        targets.close()
    res["port"], res["input"] = args.port, "fashion-mnist test image 0" if data is not None else "zeros"
    save(res, args.out, args.png)
    print(json.dumps(res, indent=1) if args.json else table(res))
    return 0


def _report(args) -> int:
    from pathlib import Path

    from .report import build_report
    from .runner import ACCURACY, LATENCY
    for f in (Path(args.out) / ACCURACY, Path(args.latency) if args.latency else Path(args.out) / LATENCY):
        _require_json_object(f)
    rep = build_report(args.out, args.model, args.latency)
    a = rep.get("accuracy") or {}
    print(f"report -> {args.out}/report.md, {args.out}/report.json"
          + (f" (device top-1 {a.get('device_top1')} %, bit-exact rate {a.get('bit_exact_rate')})" if a else ""))
    return 0


def _require_json_object(path) -> None:
    """A results file, when present, must be a JSON object (a list or binary junk is bad input)."""
    import json
    if not path.is_file():
        return
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CliError(f"{path}: not valid JSON ({' '.join(str(exc).split())[:120]})") from None
    if not isinstance(doc, dict):
        raise CliError(f"{path}: expected a JSON object, got {type(doc).__name__}")


def _info(args) -> int:
    from .client import Client
    with Client(args.port, baud=args.baud, timeout=args.timeout).connect() as c:
        prof = c.command("profile")
        print(f"name: {c.name}")
        for ln in prof.lines:
            print(ln)
        for k, v in c.info.items():
            print(f"{k}: {v}")
    return 0
