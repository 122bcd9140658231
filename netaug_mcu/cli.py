"""`netaug-mcu`: the one console command. Each stage's `commands` module registers its subcommands.

`register(subparsers)` in netaug_mcu.{trainer,converter,firmware,hil}.commands adds the stage's
subcommands and sets `func` (the handler) and `extra` (the package extra the handler needs) on each
parser. Those modules import only light things at top level so that `netaug-mcu --help` and the
HIL commands work on a host without torch or TensorFlow; the extra is checked here, once, before
the handler runs, with a one-line message naming it.

Errors: a `netaug_mcu.common.errors.UserError` is printed as one line and the process exits with
its `exit_code`; anything else is an internal error: one line plus a hint (NETAUG_MCU_DEBUG=1 for
the traceback), exit 3.
"""
from __future__ import annotations

import argparse
import os
import sys

from . import __version__
from .common import extras
from .common.errors import UserError

PIPELINE = """\
pipeline:  train (NetAug) -> convert (int8 TFLite) -> analyze/check (arena, flash)
           -> firmware (TFLM + CMSIS-NN) -> hil (accuracy, latency on a board,
           QEMU or the virtual board).  `netaug-mcu demo` runs all of it.
"""


def build_parser() -> argparse.ArgumentParser:
    from .converter import commands as converter_commands
    from .firmware import commands as firmware_commands
    from .hil import commands as hil_commands
    from .trainer import commands as trainer_commands

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
    for stage in (trainer_commands, converter_commands, firmware_commands, hil_commands):
        stage.register(sub)
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
    p.set_defaults(func=_cmd_demo, extra="all")


def _cmd_demo(args) -> int:
    from .demo import run_demo  # heavy imports stay out of --help

    return run_demo(args)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    debug = os.environ.get("NETAUG_MCU_DEBUG") == "1"
    try:
        if getattr(args, "extra", None):
            extras.require(args.extra, "this command")
        rc = args.func(args)
        return int(rc or 0)
    except KeyboardInterrupt:
        print(f"netaug-mcu {args.command}: interrupted", file=sys.stderr)
        return 130
    except UserError as exc:
        if debug:
            raise
        print(f"netaug-mcu {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
        if debug:
            raise
        print(f"netaug-mcu {args.command}: internal error: {type(exc).__name__}: {exc} "
              f"(set NETAUG_MCU_DEBUG=1 for the traceback)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
