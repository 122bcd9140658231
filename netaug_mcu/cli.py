"""`netaug-mcu`: the one console command. Each stage's `commands` module registers its subcommands.

`register(subparsers)` in netaug_mcu.{trainer,converter,firmware,hil}.commands adds the stage's
subcommands and sets `func` (the handler) and `extra` (the package extra the handler needs) on each
parser. Those modules import only light things at top level so that `netaug-mcu --help` and the
HIL commands work on a host without torch or TensorFlow; the extra is checked here, once, before
the handler runs, with a one-line message naming it.

Exit codes (README "Exit codes"): 0 ok; 1 over budget / test failed (`OverBudget`); 2 bad input
(`UserError`, argparse errors, environment errors such as a full disk, all one line); 3 internal
bug (one line plus a hint: NETAUG_MCU_DEBUG=1 for the traceback); 130 SIGINT, 143 SIGTERM (both
raise KeyboardInterrupt in the main thread, so journals are flushed on the way out). A closed
stdout (`netaug-mcu zoo --json | head`) ends the command quietly.
"""
from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import warnings

from . import __version__
from .common import cliargs, extras
from .common.errors import UserError

# OSErrors that mean "your file system / your path", not "our bug": exit 2, one line.
ENV_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR,
              errno.ENOENT, errno.EFBIG, errno.ENAMETOOLONG, errno.ELOOP, errno.EMFILE, errno.ENFILE, errno.EIO}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every `finally` (journal flush, child stop) runs."""

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

    parser = cliargs.OneLineParser(
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


def _usable_cores() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


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
    p.add_argument("--resolution", type=cliargs.RESOLUTION, default=32)
    # Defaults measured on 2 idle cores (README): NetAug over all 55,000 training images (60,000 minus the
    # 5,000 val split) for 3 epochs without crop/flip augmentation reaches 88 % test top-1 in < 7 min of
    # training; the tiny model under-fits there, so data augmentation only slowed it (86.3 % with it).
    p.add_argument("--epochs", type=cliargs.POSITIVE, default=3, help="training epochs (short schedule)")
    p.add_argument("--train-limit", type=cliargs.POSITIVE, default=55000, help="training images used")
    p.add_argument("--augment", action="store_true",
                   help="train with random-resized-crop/flip augmentation (off in the demo: see the README)")
    p.add_argument("--threads", type=cliargs.POSITIVE, default=_usable_cores(),
                   help="torch threads for training (default: the CPUs this process may use, at most 8)")
    p.add_argument("--hil-limit", type=cliargs.POSITIVE, default=1000, help="test images sent to the device")
    p.add_argument("--eval-samples", type=cliargs.COUNT, default=1000,
                   help="test images for the float / int8 / TFLM accuracy of the converter")
    p.add_argument("--board", default="stm32f746g-disco", help="budget board for `check`")
    p.add_argument("--no-netaug", action="store_true", help="train the baseline instead")
    p.add_argument("--no-qemu", action="store_true", help="skip the firmware build and QEMU run")
    p.add_argument("--resume", action="store_true", help="continue an interrupted demo (training checkpoint, HIL journals)")
    p.set_defaults(func=_cmd_demo, extra="all")
    cliargs.declare_paths(p, out_dirs=("out",))


def _cmd_demo(args) -> int:
    from .demo import run_demo  # heavy imports stay out of --help

    return run_demo(args)


def _on_sigterm(signum, frame):
    raise Terminated()


def _quiet_stdout() -> None:
    """The reader of stdout is gone: point fd 1 at /dev/null so that exit-time flushes stay silent."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError):
        pass


def _env_error(exc: OSError) -> str | None:
    """One line for an OSError caused by the user's file system (full disk, read-only, permissions)."""
    if exc.errno not in ENV_ERRNOS:
        return None
    where = f" {exc.filename}" if exc.filename else ""
    return f"cannot use{where}: {exc.strerror or exc}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args, unknown = parser.parse_known_args(argv)
    except SystemExit as exc:  # argparse: --help / --version (0) or its one-line error (2)
        return exc.code if isinstance(exc.code, int) else 2
    if unknown:  # argparse would blame the top-level parser; name the subcommand instead
        sub = " ".join(x for x in ("netaug-mcu", getattr(args, "command", None), getattr(args, "hil_command", None)) if x)
        print(f"{sub}: unrecognized arguments: {' '.join(unknown)} (see {sub} --help)", file=sys.stderr)
        return 2
    if not getattr(args, "func", None):
        parser.print_help()
        print("netaug-mcu: give a COMMAND (see netaug-mcu --help)", file=sys.stderr)
        return 2
    name = args.command + (f" {args.hil_command}" if getattr(args, "hil_command", None) else "")
    debug = os.environ.get("NETAUG_MCU_DEBUG") == "1"
    warnings.filterwarnings("ignore", message=r"Image size \(\d+ pixels\) exceeds limit")  # PIL bomb warning
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        try:
            signal.signal(signal.SIGTERM, _on_sigterm)
        except ValueError:  # not the main thread (in-process use): leave signals alone
            pass
    try:
        cliargs.check_paths(args)
        if getattr(args, "extra", None):
            extras.require(args.extra, "this command")
        rc = args.func(args)
        sys.stdout.flush()
        return int(rc or 0)
    except BrokenPipeError:
        _quiet_stdout()
        return 0
    except KeyboardInterrupt as exc:
        sig = "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"
        print(f"netaug-mcu {name}: interrupted ({sig})", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except UserError as exc:
        if debug:
            raise
        print(f"netaug-mcu {name}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return exc.exit_code
    except (OSError, MemoryError) as exc:
        line = "out of memory (a smaller input, batch or resolution?)" if isinstance(exc, MemoryError) \
            else _env_error(exc)
        if debug or line is None:
            return _internal(name, exc, debug)
        print(f"netaug-mcu {name}: error: {line}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
        return _internal(name, exc, debug)


def _internal(name: str, exc: BaseException, debug: bool) -> int:
    if debug:
        raise exc
    msg = " ".join(str(exc).split())[:300]
    print(f"netaug-mcu {name}: internal error: {type(exc).__name__}: {msg} "
          f"(set NETAUG_MCU_DEBUG=1 for the traceback)", file=sys.stderr)
    return 3


if __name__ == "__main__":
    sys.exit(main())
