"""`netaug-mcu demo`: every stage as its own `netaug-mcu` command, timed, then one report.

Stages run as subprocesses of the same CLI a user would type, so the demo proves the commands
themselves work and the report can name each one for re-running alone.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .common.errors import UserError
from .common.fsio import atomic_write, atomic_write_with


class DemoError(UserError):
    pass


@dataclass
class Stage:
    name: str
    argv: list[str]
    seconds: float = 0.0
    status: str = "pending"  # ok | failed (rc) | skipped (why)
    note: str = ""


@dataclass
class Demo:
    out: Path
    stages: list[Stage] = field(default_factory=list)

    def run(self, name: str, argv: list[str], stdout_to: Path | None = None,
            ok_codes: tuple[int, ...] = (0,)) -> int:
        st = Stage(name, argv)
        self.stages.append(st)
        _banner(f"[{len(self.stages)}] {name}: netaug-mcu {_quote(argv)}")
        t0 = time.monotonic()
        cmd = [sys.executable, "-m", "netaug_mcu", *argv]
        if stdout_to is not None:  # into a temporary, renamed when the stage succeeds: never half a file
            tmp = stdout_to.with_name(f".{stdout_to.name}.tmp")
            with open(tmp, "w") as fh:
                rc = subprocess.call(cmd, stdout=fh)
            if rc in ok_codes:
                os.replace(tmp, stdout_to)
            else:
                tmp.unlink(missing_ok=True)
        else:
            rc = subprocess.call(cmd)
        st.seconds = time.monotonic() - t0
        st.status = "ok" if rc in ok_codes else f"failed (exit {rc})"
        _banner(f"    {name}: {st.status} in {st.seconds:.1f} s")
        return rc

    def skip(self, name: str, why: str) -> None:
        self.stages.append(Stage(name, [], status="skipped", note=why))
        _banner(f"[{len(self.stages)}] {name}: skipped ({why})")

    def require(self, rc: int, what: str) -> None:
        if rc != 0:
            self.write_report()
            raise DemoError(f"{what} failed (exit {rc}); see the output above, partial report in "
                            f"{self.out / 'report.md'}")

    def write_report(self, data: dict | None = None) -> Path:
        path = self.out / "report.md"
        atomic_write(path, render_report(self, data or collect(self.out)))
        return path


def _quote(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def _banner(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- stages
def firmware_ready() -> tuple[bool, str]:
    """Can this machine build and run the QEMU firmware? (toolchain, QEMU, a TFLM tree)"""
    for tool in ("arm-none-eabi-gcc", "qemu-system-arm"):
        if shutil.which(tool) is None:
            return False, f"{tool} not installed"
    from .firmware import tflm_build

    tree, why = tflm_build.find_tree()
    return (tree is not None), why


def validate(args) -> None:
    """Every argument is checked before the first stage starts (not after minutes of training)."""
    from .common import boards
    from .trainer import zoo
    boards.get(args.board)
    if args.model not in zoo.MODELS:
        raise DemoError(f"unknown zoo model {args.model!r} (choose from: {', '.join(zoo.MODELS)})")


def run_demo(args) -> int:
    from .common.locks import output_lock
    validate(args)
    with output_lock(args.out):
        return _run_demo(args)


def train_argv(args, train_dir: Path) -> list[str]:
    """The demo's `netaug-mcu train` command (bench/netaug_demo_seeds.py measures this same schedule)."""
    argv = ["train", "--model", args.model, "--dataset", "fashion-mnist", "--resolution",
            str(args.resolution), "--epochs", str(args.epochs), "--train-limit", str(args.train_limit),
            "--threads", str(args.threads), "--out", str(train_dir)]
    if not args.augment:
        argv.append("--no-augment")
    if not args.no_netaug:
        argv.append("--netaug")
    return argv


def _run_demo(args) -> int:
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / ".write-test").write_text("")
        (out / ".write-test").unlink()
    except OSError as exc:
        raise DemoError(f"cannot write to {out}: {exc.strerror}") from None
    demo = Demo(out)
    t_start = time.monotonic()
    train_dir, tflite = out / "train", out / "model.tflite"

    # 1. train
    argv = train_argv(args, train_dir)
    argv.append("--resume" if args.resume and (train_dir / "checkpoint.pt").exists() else "--overwrite")
    demo.require(demo.run("train", argv), "training")

    # 2. convert (float / int8 / TFLM accuracy on the same test images)
    demo.require(demo.run("convert", ["convert", str(train_dir / "model.pt"), "--out", str(tflite),
                                      "--eval-samples", str(args.eval_samples)]), "conversion")

    # 3. analyze + check against the board budget
    demo.run("analyze", ["analyze", str(tflite), "--target", "cortex-m7", "--json", "--plot",
                         str(out / "memory.png")], stdout_to=out / "analyze.json")
    demo.run("check", ["check", str(tflite), "--board", args.board, "--json", str(out / "check.json"),
                       "--junit", str(out / "check.junit.xml")], ok_codes=(0, 1))

    # 4. firmware: always generate for the real board; build + QEMU when possible
    fw_ok, why = (False, "--no-qemu") if args.no_qemu else firmware_ready()
    demo.run("firmware (stm32f746g-disco)",
             ["firmware", str(tflite), "--board", "stm32f746g-disco", "--out", str(out / "fw-stm32f746g-disco")]
             + (["--build"] if fw_ok else []))
    qemu_elf = None
    if fw_ok:
        rc = demo.run("firmware (mps2-an500, QEMU)", ["firmware", str(tflite), "--board", "mps2-an500",
                                                       "--out", str(out / "fw-mps2-an500"), "--build"])
        elf = out / "fw-mps2-an500" / "fw.elf"
        qemu_elf = elf if rc == 0 and elf.exists() else None
    else:
        demo.skip("firmware build + QEMU", why)

    # 5. HIL on the virtual board (host TFLM behind a pty), then on QEMU. A fresh demo starts fresh
    # journals (the model was just retrained); --resume continues them.
    def hil_out(name: str) -> tuple[str, list[str]]:
        d = out / name
        if not args.resume:
            shutil.rmtree(d, ignore_errors=True)
        return str(d), (["--resume"] if (d / "journal.jsonl").exists() else [])

    from .hil.targets import start_qemu, start_virtual_board

    url, stop = start_virtual_board(str(tflite), process=True)
    try:
        d, resume = hil_out("hil-virtual")
        demo.run("hil accuracy (virtual board)",
                 ["hil", "accuracy", "--port", url, "--model", str(tflite), "--dataset", "fashion-mnist",
                  "--limit", str(args.hil_limit), "--out", d, *resume])
        demo.run("hil latency (virtual board)",
                 ["hil", "latency", "--port", url, "--model", str(tflite), "--runs", "50", "--warmup", "5",
                  "--out", str(out / "hil-virtual")])
    finally:
        stop()
    if qemu_elf is not None:
        url, stop = start_qemu(str(qemu_elf))
        try:
            d, resume = hil_out("hil-qemu")
            demo.run("hil accuracy (QEMU)", ["hil", "accuracy", "--port", url, "--model", str(tflite),
                                             "--dataset", "fashion-mnist", "--limit", "50",
                                             "--out", d, *resume])
            demo.run("hil latency (QEMU)", ["hil", "latency", "--port", url, "--model", str(tflite),
                                            "--runs", "10", "--warmup", "1", "--out", str(out / "hil-qemu")])
        finally:
            stop()

    data = collect(out)
    data["train"] = {"model": args.model, "netaug": not args.no_netaug, "epochs": args.epochs,
                     "train_limit": args.train_limit, "resolution": args.resolution, "augment": args.augment}
    plot_budget(data, out / "budget.png")
    path = demo.write_report(data)
    total = time.monotonic() - t_start
    failed = [s.name for s in demo.stages if s.status.startswith("failed")]
    _banner(f"\ndemo finished in {total / 60:.1f} min; report: {path}")
    for s in demo.stages:
        _banner(f"  {s.name:32s} {s.status:18s} {s.seconds:7.1f} s")
    if failed:
        _banner(f"failed stages: {', '.join(failed)}")
        return 1
    return 0


# ---------------------------------------------------------------- report
def collect(out: Path) -> dict:
    return {
        "train_summary": _load(out / "train" / "summary.json"),
        "model": _load(out / "model.json"),
        "analyze": _load(out / "analyze.json"),
        "check": _load(out / "check.json"),
        "hil_virtual": _load(out / "hil-virtual" / "accuracy.json"),
        "lat_virtual": _load(out / "hil-virtual" / "latency.json"),
        "hil_qemu": _load(out / "hil-qemu" / "accuracy.json"),
        "lat_qemu": _load(out / "hil-qemu" / "latency.json"),
    }


def _budget(check: dict | None, key: str) -> tuple[int | None, int | None]:
    """(used, limit) bytes for 'sram' (arena + stack/heap/firmware reserve) or 'flash' from check.json."""
    if not check:
        return None, None
    try:
        if key == "sram":
            return check["min_arena_bytes"] + check["reserve_bytes"], check["sram_bytes"]
        return check["flash_bytes"], check["flash_budget"]
    except KeyError:
        return None, None


def plot_budget(data: dict, png: Path) -> None:
    ram, ram_lim = _budget(data.get("check"), "sram")
    fl, fl_lim = _budget(data.get("check"), "flash")
    if None in (ram, ram_lim, fl, fl_lim):
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 2.2))
    names = ["SRAM", "Flash"]
    used = [ram / 1024, fl / 1024]
    lim = [ram_lim / 1024, fl_lim / 1024]
    frac = [u / lv for u, lv in zip(used, lim)]
    colors = ["tab:green" if f <= 1 else "tab:red" for f in frac]
    ax.barh(names, [100.0] * 2, color="0.9")
    ax.barh(names, [100 * f for f in frac], color=colors)
    for i, (u, lv) in enumerate(zip(used, lim)):
        ax.text(min(100 * frac[i], 100) + 1, i, f"{u:.1f} / {lv:.0f} KiB ({100 * frac[i]:.0f} %)",
                va="center", fontsize=9)
    ax.axvline(100, color="k", lw=1)
    ax.set_xlim(0, 140)
    ax.set_xlabel(f"% of {data['check'].get('board', 'board')} budget")
    fig.tight_layout()
    atomic_write_with(png, lambda fh: fig.savefig(fh, dpi=120, format="png"))
    plt.close(fig)


def _pct(v) -> str:
    return "—" if v is None else f"{v:.2f} %"


def _ms(v) -> str:
    return "—" if v is None else f"{v:.3f} ms"


def _kib(v) -> str:
    return "—" if v is None else f"{v / 1024:.1f} KiB ({v:,} B)"


def render_report(demo: Demo, d: dict) -> str:
    out = demo.out
    m, an, ck = d.get("model") or {}, d.get("analyze") or {}, d.get("check") or {}
    hv, lv = d.get("hil_virtual") or {}, d.get("lat_virtual") or {}
    hq, lq = d.get("hil_qemu") or {}, d.get("lat_qemu") or {}
    ts, tr = d.get("train_summary") or {}, d.get("train") or {}
    L = ["# netaug-mcu demo report", ""]
    L += [f"Model: **{tr.get('model', '?')}** at {tr.get('resolution', '?')}x{tr.get('resolution', '?')}, "
          f"trained with {'NetAug' if tr.get('netaug') else 'the baseline recipe'} on Fashion-MNIST "
          f"({tr.get('train_limit', '?')} images, {tr.get('epochs', '?')} epochs"
          f"{'' if tr.get('augment', True) else ', no crop/flip augmentation'}; val top-1 "
          f"{_pct(ts.get('val_top1'))}, test top-1 {_pct(ts.get('test_top1'))}); "
          f"full-int8 TFLite `{out / 'model.tflite'}`.", ""]
    L += ["## Results", "", "| quantity | value | measured by |", "|---|---|---|"]
    L += [f"| float top-1 (PyTorch) | {_pct(m.get('float_top1'))} | convert, {m.get('eval_samples', '?')} test images |",
          f"| int8 top-1 (tf.lite) | {_pct(m.get('int8_top1'))} | convert |",
          f"| TFLM top-1 (host) | {_pct(m.get('tflm_top1'))} | convert |",
          f"| on-device top-1, virtual board | {_pct(hv.get('device_top1'))} | hil accuracy, {hv.get('samples', '?')} test images |",
          f"| bit-exact with host TFLM | {hv.get('bit_exact', '—')} / {hv.get('samples', '—')} | hil accuracy |"]
    if hq:
        L += [f"| on-device top-1, QEMU Cortex-M7 | {_pct(hq.get('device_top1'))} | hil accuracy, {hq.get('samples')} images |",
              f"| bit-exact (QEMU vs host TFLM) | {hq.get('bit_exact')} / {hq.get('samples')} | hil accuracy |"]
    L += [f"| tensor arena (cortex-m7) | {_kib(an.get('arena_bytes'))} | analyze (peak op: {an.get('peak_op', '—')}) |",
          f"| flash estimate | {_kib(an.get('flash_bytes'))} | analyze |",
          f"| fits {ck.get('board', '?')} | {ck.get('fits', '—')} | check |",
          f"| latency, virtual board (host time) | {_ms(lv.get('median_ms'))} median, p90 {_ms(lv.get('p90_ms'))} | hil latency, {lv.get('runs', '?')} runs |"]
    dev_arena = ((lq.get("board") or {}).get("arena_used") if lq else None)
    if dev_arena is not None:
        L += [f"| arena_used_bytes() on QEMU Cortex-M7 | {_kib(int(dev_arena))} | device `info%` "
              f"(analyzer error {int(dev_arena) - an.get('arena_bytes', 0):+d} B) |"]
    if lq:
        L += [f"| latency, QEMU (instruction-count proxy) | {_ms(lq.get('median_ms'))} median | hil latency, {lq.get('runs', '?')} runs |"]
    L += [""]
    for title, png in (("Training curves", out / "train" / "curves.png"),
                       ("Per-operator memory (cortex-m7) with the SRAM budget", out / "memory.png"),
                       ("SRAM and flash budget", out / "budget.png")):
        if png.exists():
            L += [f"## {title}", "", f"![{title}]({os.path.relpath(png, out)})", ""]
    L += ["## Stages", "", "| stage | status | seconds | command |", "|---|---|---|---|"]
    for s in demo.stages:
        cmd = f"`netaug-mcu {_quote(s.argv)}`" if s.argv else s.note
        L += [f"| {s.name} | {s.status} | {s.seconds:.1f} | {cmd} |"]
    L += [""]
    return "\n".join(L)
