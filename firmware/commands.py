"""Firmware-stage subcommands: `firmware` (generate/build the TFLM firmware) and `flash`."""
from __future__ import annotations

import argparse

from ..common import boards
from ..common import cliargs as ca
from ..common.mlperf import MLPERF_BENCHMARKS


def register(sub) -> None:
    p = sub.add_parser(
        "firmware", help="generate (and build) the TFLM + CMSIS-NN firmware for a .tflite model",
        description="Generate a Make project that runs MODEL with TFLM + CMSIS-NN on a Cortex-M7 board and "
        "answers the netaug-mcu serial protocol (hil_tests/PROTOCOL.md): the model as a 16-byte aligned C "
        "array, a MicroMutableOpResolver with exactly the model's ops, the tensor arena sized from the "
        "memory analyzer's cortex-m7 prediction, board support, linker script, Makefile. With --build it is "
        "compiled with arm-none-eabi-gcc against a cached libtflm.a (built once per TFLM revision and flags). "
        "The TFLM tree comes from $TFLM_TREE, else ~/.cache/netaug-mcu/tflm/<rev>, else --fetch-deps clones "
        "the pinned upstream revisions from GitHub. Exit 1: the model does not fit the board; 2: bad input, "
        "an op TFLM cannot run, or a missing tool.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("model", help="int8 .tflite model")
    p.add_argument("--board", choices=boards.firmware_boards(), default="stm32f746g-disco",
                   help="target board (mps2-an500 = QEMU's Cortex-M7 machine)")
    p.add_argument("--out", default="build/fw", help="output project directory")
    p.add_argument("--build", action="store_true", help="also compile it (fw.elf, fw.bin)")
    p.add_argument("--fetch-deps", action="store_true",
                   help="get the pinned TFLM/CMSIS-NN sources from GitHub into the cache if missing")
    p.add_argument("--baud", type=ca.BAUD, default=None, help="UART baud rate (default 115200, 9600 with --energy; the ST-LINK VCP handles up to "
                   "2 Mbaud; the host must use the same value)")
    p.add_argument("--arena-bytes", type=ca.POSITIVE, default=None,
                   help="size the arena from this arena_used_bytes figure instead of asking the analyzer")
    p.add_argument("--name", default=None, help="model name reported by the device (default: file stem)")
    p.add_argument("--jobs", "-j", type=ca.POSITIVE, default=2, help="parallel compile jobs")
    p.add_argument("--sdram", action="store_true", help="stm32f746g-disco: initialise the board's 8 MB SDRAM "
                   "(FMC, 0xC0000000) and place the arena/input buffer there when on-chip RAM is not enough")
    p.add_argument("--allow-estimate", action="store_true",
                   help="size the arena from an estimate when the analyzer does not model an op's kernel "
                   "allocations (default: refuse, exit 2; or give --arena-bytes)")
    p.add_argument("--mlperf", choices=sorted(MLPERF_BENCHMARKS), default=None,
                   help="MLPerf Tiny reference behaviour for this benchmark: m-model-[BENCH], dataset-file input "
                        "conversion (ic01/vww01 uint8 minus 128, kws01 int8, ad01 float32 quantized on the device), "
                        "ad01 result = MSE")
    p.add_argument("--energy", action="store_true",
                   help="energy-mode build: m-timestamp-mode-energy, timestamps pulse the board's timestamp GPIO "
                        "(STM32F746G-DISCO: Arduino D7 = PI3; QEMU logs m-timestamp-pin-<us>), 9600 baud unless "
                        "--baud is given")
    p.add_argument("--recording", action="store_true", help=argparse.SUPPRESS)  # calibration builds
    p.add_argument("--fault-test", action="store_true", help=argparse.SUPPRESS)  # `fault stack|bus%` command
    p.set_defaults(func=_cmd_firmware)
    ca.declare_paths(p, inputs=("model",), out_dirs=("out",))

    f = sub.add_parser(
        "flash", help="program a built firmware into the STM32F746G-DISCO (OpenOCD, st-flash or pyOCD)",
        description="Write DIR/fw.elf (or an .elf/.bin path) to the board's flash at 0x08000000 through the "
        "on-board ST-LINK and reset it. --tool auto uses the first installed of: openocd (OpenOCD's "
        "board/stm32f7discovery.cfg; Debian package openocd), st-flash (stlink-tools), pyocd (target "
        "stm32f746nghx from the Keil.STM32F7xx_DFP pack: `pyocd pack install stm32f746nghx` once).")
    f.add_argument("path", nargs="?", default="build/fw", help="project directory, fw.elf or fw.bin")
    f.add_argument("--tool", choices=("auto", "openocd", "st-flash", "pyocd"), default="auto")
    f.add_argument("--probe", default=None, help="ST-LINK serial number (when several are connected)")
    f.set_defaults(func=_cmd_flash)

    d = sub.add_parser(
        "debug", help="debug the firmware on the STM32F746G-DISCO: OpenOCD GDB server + GDB",
        description="Start OpenOCD (board/stm32f7discovery.cfg) as a GDB server and GDB (arm-none-eabi-gdb or "
        "gdb-multiarch) on DIR/fw.elf: it connects, resets and halts the core, loads the image and sets "
        "breakpoints on main and fault_report (the e-[fault ...] printer). --print only shows the two commands.")
    d.add_argument("path", nargs="?", default="build/fw", help="project directory or fw.elf")
    d.add_argument("--probe", default=None, help="ST-LINK serial number")
    d.add_argument("--port", type=int, default=3333, help="GDB server port")
    d.add_argument("--print", dest="print_only", action="store_true", help="print the commands, run nothing")
    d.set_defaults(func=_cmd_debug)


def _cmd_firmware(args) -> int:
    from rich.console import Console

    from ..common.locks import output_lock
    from . import build, generate, tflm_build

    console = Console(stderr=True)

    def log(msg):
        console.print(msg, markup=False, highlight=False)

    tree = None
    if args.fetch_deps:
        tree = tflm_build.require_tree(fetch=True, log=log)
    if args.arena_bytes is None and not args.allow_estimate:
        _require_exact_arena(args.model)
    baud = args.baud if args.baud is not None else (9600 if args.energy else 115200)
    with output_lock(args.out):
        proj = generate.generate(args.model, board=args.board, out=args.out, baud=baud,
                                 arena_bytes=args.arena_bytes, recording=args.recording, name=args.name,
                                 tree=tree, sdram=args.sdram, fault_test=args.fault_test, log=log,
                                 mlperf=args.mlperf, energy=args.energy)
    if args.build:
        if tree is None:
            tree = tflm_build.require_tree(fetch=False, log=log)
        with console.status("compiling"):
            res = build.build(proj.out, jobs=args.jobs, log=log, tree=tree)
        b = boards.get(args.board)
        ram_total = b.sram_bytes + (sum(r["bytes"] for r in b.extra.get("external", [])) if args.sdram else 0)
        log(f"flash {res.flash} / {b.flash_bytes} B ({100 * res.flash / b.flash_bytes:.1f} %), "
            f"RAM {res.ram} / {ram_total} B ({100 * res.ram / ram_total:.1f} %"
            f"{', on-chip + SDRAM' if args.sdram else ''})")
        print(res.elf)
    else:
        print(proj.out)
    return 0


def _require_exact_arena(model_path: str) -> None:
    """No arena sized from a figure the analyzer cannot compute (unmodelled kernel allocations)."""
    from pathlib import Path

    from ..common.errors import UserError
    from .generate import analyze_model, read_model
    a = analyze_model(read_model(Path(model_path)))
    if a.unmodelled_ops:
        raise UserError(f"{Path(model_path).name}: the kernel allocations of {', '.join(a.unmodelled_ops)} are not "
                        "modelled, so the arena size would be a guess: give --arena-bytes N (e.g. measured with "
                        "a --recording build) or --allow-estimate")


def _cmd_flash(args) -> int:
    from . import flash
    return flash.flash(args.path, tool=args.tool, probe=args.probe)


def _cmd_debug(args) -> int:
    from . import flash
    from .errors import FirmwareError
    if not 0 < args.port < 65536:
        raise FirmwareError(f"--port {args.port} is not a TCP port")
    return flash.debug(args.path, probe=args.probe, port=args.port, print_only=args.print_only)
