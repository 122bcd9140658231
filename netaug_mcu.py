"""`netaug-mcu`: the one console command. Subcommands live in each stage's `cli` module.

Each stage package (trainer, converter, firmware, hil_tests) has a `cli.py` with
`register(subparsers)`; it adds its subcommands and sets `func` on each parser.
Those modules import only light things at top level so that `netaug-mcu --help`
and the HIL commands work on a host without torch or tensorflow.

Errors: any exception carrying an integer `exit_code` attribute is a user error:
it is printed as one line and the process exits with that code. Anything else is
an internal error: one line plus a hint (set NETAUG_MCU_DEBUG=1 for the traceback).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

__version__ = "0.1.0"

# Order = order in --help. A stage whose optional dependencies are missing still
# registers its commands (cli modules import no heavy packages at top level).
STAGES = ("trainer.cli", "converter.cli", "firmware.cli", "hil_tests.cli")

PIPELINE = """\
pipeline:  train (NetAug) -> convert (int8 TFLite) -> analyze/check (arena, flash)
           -> firmware (TFLM + CMSIS-NN) -> hil (accuracy, latency on a board,
           QEMU or the virtual board).  `netaug-mcu demo` runs all of it.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netaug-mcu",
        description="Train tiny CNNs with Network Augmentation and deploy them to microcontrollers "
        "(STM32F746 by default): int8 conversion, exact TFLM memory analysis, firmware, "
        "hardware-in-the-loop tests.",
        epilog=PIPELINE + "\nRun `netaug-mcu COMMAND --help` for the options of a command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"netaug-mcu {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in STAGES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # stage not present in this checkout
            if exc.name and name.startswith(exc.name.split(".")[0]):
                continue
            raise
        mod.register(sub)
    _register_demo(sub)
    return parser


def _register_demo(sub) -> None:
    p = sub.add_parser(
        "demo", help="the whole pipeline end to end on the defaults, with one report",
        description="Train mbv2-tiny with NetAug on Fashion-MNIST (a short schedule), convert it to int8, "
        "analyze and check it against the STM32F746G-DISCO, generate the firmware (and build it and run "
        "it in QEMU when arm-none-eabi-gcc, qemu-system-arm and a TFLM tree are available), measure "
        "accuracy and latency over the serial protocol on the virtual board, and write OUT/report.md. "
        "Each stage is an ordinary `netaug-mcu` command; the report lists them so that any stage can be "
        "re-run alone.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default="runs/demo", help="output directory")
    p.add_argument("--model", default="mbv2-tiny", help="zoo model")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--epochs", type=int, default=5, help="training epochs (short schedule)")
    p.add_argument("--train-limit", type=int, default=20000, help="training images used")
    p.add_argument("--hil-limit", type=int, default=1000, help="test images sent to the device")
    p.add_argument("--eval-samples", type=int, default=1000,
                   help="test images for the float / int8 / TFLM accuracy of the converter")
    p.add_argument("--board", default="stm32f746g-disco", help="budget board for `check`")
    p.add_argument("--no-netaug", action="store_true", help="train the baseline instead")
    p.add_argument("--no-qemu", action="store_true", help="skip the firmware build and QEMU run")
    p.add_argument("--resume", action="store_true", help="continue an interrupted demo (training checkpoint, HIL journals)")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args) -> int:
    from demo_pipeline import run_demo  # heavy imports stay out of --help

    return run_demo(args)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    debug = os.environ.get("NETAUG_MCU_DEBUG") == "1"
    try:
        rc = args.func(args)
        return int(rc or 0)
    except KeyboardInterrupt:
        print(f"netaug-mcu {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
        code = getattr(exc, "exit_code", None)
        if debug:
            raise
        if isinstance(code, int):
            print(f"netaug-mcu {args.command}: error: {exc}", file=sys.stderr)
            return code
        if isinstance(exc, ModuleNotFoundError):
            print(f"netaug-mcu {args.command}: error: missing dependency '{exc.name}' "
                  f"(install with `pip install -e .[all]` or `make install`)", file=sys.stderr)
            return 2
        print(f"netaug-mcu {args.command}: internal error: {type(exc).__name__}: {exc} "
              f"(set NETAUG_MCU_DEBUG=1 for the traceback)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
