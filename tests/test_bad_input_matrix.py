"""The bad-input matrix: every subcommand against hostile arguments, files, disks and signals.

Each row: the argv, the expected exit code, a time limit; the checks for every row are the CLI's
promise (README "Exit codes"): exit code as documented, no `Traceback`, a failing run prints ONE
line on stderr, nothing waits longer than its limit, and every pre-existing output file a row names
(`keep`) is byte-for-byte intact afterwards. All rows run once per session as subprocesses in
parallel (a thread pool), each test then checks its row's result.

Full-disk and read-only rows use a small tmpfs mounted here (root only; skipped with the reason
otherwise). Lock rows hold an output directory's lock from a helper process (the protocol of
netaug_mcu.common.locks: flock on OUT/.netaug-mcu.lock holding the pid).
"""
from __future__ import annotations

import concurrent.futures as cf
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "hil_tests" / "data"
LOCK_NAME = ".netaug-mcu.lock"
WORKERS = 4


@dataclass
class Row:
    id: str
    argv: list[str]
    rc: int
    limit: float = 30.0
    keep: list[str] = field(default_factory=list)   # placeholders of files that must stay intact
    needs: str = ""                                   # "root", "torch", "tf", "float" (skip reasons)
    closed_stdout: bool = False                       # stdout is a pipe whose reader is gone
    signal_after: tuple | None = None                 # (signal, file placeholder to wait for, max wait)
    expect_err: str = ""                              # a fragment the error line must contain
    argparse_line: bool = False                       # exactly `netaug-mcu CMD: ... (see netaug-mcu CMD --help)`


# --------------------------------------------------------------------------------------- fixtures
def _patch_op(data: bytes, old: str, new_code: int) -> bytes:
    """Rewrite the operator code of `old` in place (a model with an op TFLM or the analyzer lacks)."""
    import tflite
    from tflite.BuiltinOperator import BuiltinOperator
    names = {v: k for k, v in BuiltinOperator.__dict__.items() if not k.startswith("_")}
    buf = bytearray(data)
    model = tflite.Model.GetRootAsModel(buf, 0)
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        if names.get(max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())) == old:
            tab = oc._tab
            for slot, fmt in ((4, "<b"), (10, "<i")):
                off = tab.Offset(slot)
                if off:
                    struct.pack_into(fmt, buf, tab.Pos + off, new_code)
            return bytes(buf)
    raise ValueError(old)


def _png(path: Path, size=(16, 16), mode="L") -> None:
    from PIL import Image
    import numpy as np
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = size if mode == "L" else (*size, 3)
    Image.fromarray(np.random.default_rng(len(str(path))).integers(0, 256, shape, dtype=np.uint8), mode).save(path)


def _folders(d: Path) -> None:
    for split in ("train", "val", "test"):
        for i in range(4):
            _png(d / "onecls" / split / "only" / f"{i}.png")
        for c in ("a", "b"):
            for i in range(4):
                _png(d / "twocls" / split / c / f"{i}.png")


def _checkpoint(path: Path) -> bool:
    """A random-weight mbv2-tiny@16 model.pt (1 channel, 10 classes) in the trainer's format."""
    try:
        import torch

        from netaug_mcu.common.datasets import FASHION_MNIST_CLASSES
        from netaug_mcu.trainer import zoo
    except ImportError:
        return False
    arch = dict(name="mbv2-tiny", in_channels=1, num_classes=10, resolution=16)
    torch.manual_seed(0)
    model = zoo.build(**arch).eval()
    pp = {"dataset": "fashion-mnist", "resolution": 16, "channels": 1, "mean": [0.286], "std": [0.353],
          "interpolation": "bilinear"}
    torch.save({"format": "netaug-mcu/model/1", "arch": arch, "state_dict": model.state_dict(), "preprocess": pp,
                "classes": FASHION_MNIST_CLASSES, "metrics": {}, "train_config": {}}, path)
    return True


def _float_model() -> Path | None:
    cache = Path.home() / ".cache" / "netaug-mcu" / "test-models"
    hits = sorted(cache.glob("float_plain_cnn-*.tflite")) if cache.is_dir() else []
    return hits[0] if hits else None


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def _fill(path: Path) -> None:
    """Fill the file system of `path` until ENOSPC."""
    fd = os.open(path / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    for i in range(64):  # the last few blocks
        try:
            (path / f"filler{i}").write_bytes(b"\0" * 512)
        except OSError:
            break


class Env:
    """All the paths a row may name ({name} placeholders) and the processes/mounts to undo."""

    def __init__(self, root: Path):
        self.root = root
        self.paths: dict[str, str] = {}
        self.procs: list[subprocess.Popen] = []
        self.mounts: list[Path] = []
        self.caps: set[str] = set()
        self.sock: socket.socket | None = None
        self.fds: list[int] = []

    def add(self, name: str, path) -> Path:
        self.paths[name] = str(path)
        return Path(path)

    def fmt(self, s: str, row_id: str = "") -> str:
        """Fill the placeholders; {out} is a fresh directory per row (rows run in parallel)."""
        if "{" not in s:
            return s
        out = self.root / "rows" / "".join(c if c.isalnum() else "_" for c in row_id)
        return s.format(**self.paths, out=out)

    def close(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait()
        for m in self.mounts:
            subprocess.run(["umount", "-l", str(m)], capture_output=True)
        if self.sock:
            self.sock.close()
        for fd in self.fds:
            os.close(fd)


def _hold_lock(env: Env, d: Path, name: str = LOCK_NAME) -> None:
    """A live process holding the lock of directory `d` (or of the file `d/<x>` when name is `.<x>.lock`)."""
    d.mkdir(parents=True, exist_ok=True)
    code = ("import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_CREAT | os.O_RDWR, 0o644)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "os.ftruncate(fd, 0); os.write(fd, str(os.getpid()).encode()); print('held', flush=True)\n"
            "time.sleep(3600)\n")
    p = subprocess.Popen([sys.executable, "-c", code, str(d / name)], stdout=subprocess.PIPE, text=True)
    env.procs.append(p)
    assert p.stdout.readline().strip() == "held"


def _sentinels(env: Env, d: Path, prefix: str) -> None:
    tiny = (DATA / "tiny_fmnist32.tflite").read_bytes()
    for name, data in (("json", b'{"valid": true}\n'), ("xml", b"<ok/>\n"), ("png", b"\x89PNG old\n"),
                       ("tflite", tiny), ("port", b"socket://old\n")):
        env.add(f"{prefix}_{name}", d / f"old.{name}").write_bytes(data)
    hil = env.add(f"{prefix}_hil", d / "hil")
    hil.mkdir(exist_ok=True)
    (hil / "latency.json").write_text(json.dumps({"min_ms": 1.0, "median_ms": 1.0, "p90_ms": 1.0,
                                                  "max_ms": 1.0, "runs": 1}) + "\n")
    (hil / "report.md").write_text("old report\n")
    env.add(f"{prefix}_hil_report", hil / "report.md")
    env.add(f"{prefix}_fwdir", d / "fw")


def build_env(env: Env) -> Env:
    root = env.root
    tiny = env.add("tiny", root / "tiny.tflite")
    shutil.copy(DATA / "tiny_fmnist32.tflite", tiny)
    shutil.copy(DATA / "tiny_fmnist32.json", root / "tiny.json")
    env.add("tiny16", DATA / "tiny_fmnist16.tflite")
    src16 = (DATA / "tiny_fmnist16.tflite").read_bytes()
    for name, code in (("lrn", 13), ("topk", 48), ("revseq", 112), ("abs", 101)):
        env.add(name, root / f"{name}.tflite").write_bytes(_patch_op(src16, "MEAN", code))
    data = tiny.read_bytes()
    env.add("trunc", root / "trunc.tflite").write_bytes(data[: len(data) // 2])
    env.add("empty", root / "empty.tflite").write_bytes(b"")
    env.add("garbage", root / "garbage.bin").write_bytes(os.urandom(4096))
    env.add("dir", root / "adir.tflite").mkdir()
    fifo = env.add("fifo", root / "fifo.tflite")
    os.mkfifo(fifo)
    env.add("zero", "/dev/zero")
    env.add("missing", root / "missing.tflite")
    afile = env.add("afile", root / "afile")
    afile.write_text("a regular file\n")
    env.add("under_file", afile / "sub" / "x.json")
    _folders(root)
    env.add("onecls", root / "onecls")
    env.add("twocls", root / "twocls")
    env.add("cfg_binary", root / "run.yaml").write_bytes(bytes(range(256)) * 4)
    env.add("cfg_list", root / "list.yaml").write_text("- 1\n- 2\n")
    env.add("cfg_badkey", root / "badkey.yaml").write_text("nosuch: 1\n")
    env.add("cfg_badval", root / "badval.json").write_text('{"dropout": 5}\n')
    for name, text in (("hil_garbage", "{not json"), ("hil_list", "[1, 2]"), ("hil_binary", "\x00\xff\xfe")):
        d = env.add(name, root / name)
        d.mkdir()
        (d / "accuracy.json").write_text(text)
    env.add("hil_empty", root / "hil_empty").mkdir()
    env.add("bad_json", root / "bad.json").write_text("{oops")
    env.add("model_pt_garbage", root / "garbage.pt").write_bytes(os.urandom(1000))
    sent = root / "sent"
    sent.mkdir()
    _sentinels(env, sent, "s")
    if _checkpoint(root / "model.pt"):
        env.add("model_pt", root / "model.pt")
        env.caps.add("torch")
    fm = _float_model()
    if fm:
        env.add("float", fm)
        env.caps.add("float")
    # a lock held by a live process; a stale one left by a dead pid
    for name in ("locked", "locked_fw", "locked_hil", "locked_demo", "locked_train"):
        _hold_lock(env, env.add(name, root / name))
    stale = env.add("stale", root / "stale")
    stale.mkdir()
    (stale / LOCK_NAME).write_text("999999\n")
    env.add("stale_out", root / "stale_fw")
    (root / "stale_fw").mkdir()
    (root / "stale_fw" / LOCK_NAME).write_text("999999\n")
    _hold_lock(env, root / "locked_file", ".m.tflite.lock")
    env.add("locked_tflite", root / "locked_file" / "m.tflite")
    # a TCP port that is taken
    env.sock = socket.socket()
    env.sock.bind(("127.0.0.1", 0))
    env.sock.listen(1)
    env.add("busy_port", str(env.sock.getsockname()[1]))
    # a serial port that never answers (a pty whose other end stays silent)
    master, slave = os.openpty()
    env.fds += [master, slave]
    env.add("silent_pty", os.ttyname(slave))
    # full disk and read-only file systems
    if os.geteuid() == 0:
        full, ro = root / "full", root / "ro"
        if _mount_tmpfs(full, "512k") and _mount_tmpfs(ro, "512k"):
            env.mounts += [full, ro]
            _sentinels(env, full, "full")
            _sentinels(env, ro, "ro")
            _fill(full)
            if subprocess.run(["mount", "-o", "remount,ro", str(ro)], capture_output=True).returncode == 0:
                env.caps.add("root")
    return env


# ------------------------------------------------------------------------------------------- rows
INT, FLOAT = "int", "float"


def _type_rows(cmd: list[str], base: list[str], flags: dict[str, str], limit=30.0) -> list[Row]:
    """argparse type errors: 'abc' for every numeric flag, '1.5' for ints, '1e400' (inf) for ints."""
    rows = []
    name = "-".join(cmd)
    for flag, kind in flags.items():
        rows.append(Row(f"{name}{flag}=abc", cmd + base + [flag, "abc"], 2, limit, argparse_line=True))
        if kind == INT:
            rows.append(Row(f"{name}{flag}=1.5", cmd + base + [flag, "1.5"], 2, limit, argparse_line=True))
            rows.append(Row(f"{name}{flag}=1e400", cmd + base + [flag, "1e400"], 2, limit, argparse_line=True))
    return rows


def _range_rows(cmd: list[str], base: list[str], bad: dict[str, list[str]], limit=30.0, keep=()) -> list[Row]:
    name = "-".join(cmd)
    return [Row(f"{name}{flag}={v}", cmd + base + [flag, v], 2, limit, keep=list(keep), expect_err=flag)
            for flag, vals in bad.items() for v in vals]


def _model_rows(cmd: list[str], pre: list[str], post: list[str], limit=30.0) -> list[Row]:
    """A model argument that is missing, a directory, a FIFO, /dev/zero, empty, truncated, random."""
    name = "-".join(cmd)
    return [Row(f"{name}:model={m}", cmd + pre + ["{%s}" % m] + post, 2, limit)
            for m in ("missing", "dir", "fifo", "zero", "empty", "trunc", "garbage")]


def _out_rows(cmd: list[str], argv_for, kinds=("dir", "under_file"), limit=30.0) -> list[Row]:
    """An output path that is a directory, or whose parent is a regular file."""
    name = "-".join(cmd)
    return [Row(f"{name}:out={k}", cmd + argv_for("{%s}" % k), 2, limit) for k in kinds]


def _disk_rows(cmd: list[str], argv_for, sentinel: str, limit=60.0) -> list[Row]:
    """Writing over a pre-existing file on a full and on a read-only file system: exit 2, file intact."""
    name = "-".join(cmd)
    return [Row(f"{name}:{fs}-disk", cmd + argv_for("{%s_%s}" % (fs, sentinel)), 2, limit,
                keep=["{%s_%s}" % (fs, sentinel)], needs="root") for fs in ("full", "ro")]


def rows() -> list[Row]:
    R: list[Row] = []
    # ---- top level, zoo
    R += [Row("top:no-command", [], 2), Row("top:bogus", ["bogus"], 2, argparse_line=False),
          Row("top:bogus-flag", ["--bogus"], 2), Row("hil:no-subcommand", ["hil"], 2),
          Row("hil:bogus-sub", ["hil", "bogus"], 2),
          Row("zoo:bogus-flag", ["zoo", "--bogus"], 2, argparse_line=True),
          Row("zoo:closed-stdout", ["zoo", "--json"], 0, 60, closed_stdout=True),
          Row("check:closed-stdout", ["check", "{tiny}", "--json", "-"], 0, 60, closed_stdout=True),
          Row("check:list-boards-closed-stdout", ["check", "--list-boards"], 0, closed_stdout=True)]
    # ---- train
    tb = ["--dataset", "{twocls}", "--out", "{out}/train", "--epochs", "1", "--resolution", "16", "--channels", "1",
          "--no-progress"]
    R += _type_rows(["train"], [], {"--resolution": INT, "--channels": INT, "--train-limit": INT,
                                    "--val-limit": INT, "--test-limit": INT, "--val-split": FLOAT, "--epochs": INT,
                                    "--batch-size": INT, "--lr": FLOAT, "--wd": FLOAT, "--warmup-epochs": FLOAT,
                                    "--warmup-lr": FLOAT, "--label-smoothing": FLOAT, "--dropout": FLOAT,
                                    "--crop-scale-min": FLOAT, "--seed": INT, "--alpha": FLOAT,
                                    "--calib-images": INT, "--kd-weight": FLOAT, "--kd-temperature": FLOAT,
                                    "--workers": INT, "--threads": INT})
    R += _range_rows(["train"], tb, {
        "--resolution": ["0", "100000"], "--channels": ["2"], "--train-limit": ["0"], "--val-limit": ["-1"],
        "--test-limit": ["0"], "--val-split": ["-0.5", "nan"], "--epochs": ["0"], "--batch-size": ["0"],
        "--lr": ["0", "nan", "1e400"], "--wd": ["-1", "inf"], "--warmup-epochs": ["-1"], "--warmup-lr": ["-1"],
        "--label-smoothing": ["1.5"], "--dropout": ["5", "-0.1", "1"], "--crop-scale-min": ["0"],
        "--seed": ["-1"], "--alpha": ["-1", "nan"], "--calib-images": ["-5"], "--kd-weight": ["-1"],
        "--kd-temperature": ["0"], "--workers": ["-1"], "--threads": ["0"]}, limit=90)
    R += [Row("train:select=bogus", ["train", "--select", "bogus"], 2, argparse_line=True),
          Row("train:bogus-flag", ["train", "--bogus"], 2, argparse_line=True),
          Row("train:model=nosuch", ["train"] + tb + ["--model", "nosuch"], 2, 90),
          Row("train:dataset=missing", ["train"] + tb + ["--dataset", "{missing}"], 2, 90),
          Row("train:dataset=file", ["train"] + tb + ["--dataset", "{afile}"], 2, 90),
          Row("train:dataset=onecls", ["train"] + tb + ["--dataset", "{onecls}"], 2, 90),
          Row("train:config=missing", ["train"] + tb + ["--config", "{missing}"], 2, 90),
          Row("train:config=fifo", ["train"] + tb + ["--config", "{fifo}"], 2, 90),
          Row("train:config=binary", ["train"] + tb + ["--config", "{cfg_binary}"], 2, 90),
          Row("train:config=list", ["train"] + tb + ["--config", "{cfg_list}"], 2, 90),
          Row("train:config=badkey", ["train"] + tb + ["--config", "{cfg_badkey}"], 2, 90),
          Row("train:config=badval", ["train"] + tb + ["--config", "{cfg_badval}"], 2, 90),
          Row("train:teacher=missing", ["train"] + tb + ["--teacher", "{missing}"], 2, 90),
          Row("train:teacher=fifo", ["train"] + tb + ["--teacher", "{fifo}"], 2, 90),
          Row("train:init-from=dir", ["train"] + tb + ["--init-from", "{dir}"], 2, 90),
          Row("train:aug-width=abc", ["train"] + tb + ["--netaug", "--aug-width", "1,abc"], 2, 90),
          Row("train:device=bogus", ["train"] + tb + ["--device", "tpu"], 2, 90),
          Row("train:out=file", ["train"] + tb[:-7] + ["--out", "{afile}", "--epochs", "1", "--no-progress"], 2, 90),
          Row("train:out=under-file", ["train"] + tb[:2] + ["--out", "{under_file}", "--epochs", "1"], 2, 90),
          Row("train:out=locked", ["train"] + tb[:2] + ["--out", "{locked_train}", "--epochs", "1"], 2, 90,
              expect_err="pid"),
          Row("train:data-dir=missing", ["train", "--data-dir", "{missing}", "--no-download", "--out", "{out}/t2",
                                         "--epochs", "1"], 2, 90)]
    # ---- convert
    R += _type_rows(["convert"], ["--zoo", "mcunet-in1", "--out", "{out}/c.tflite"],
                    {"--resolution": INT, "--channels": INT, "--classes": INT, "--calib-samples": INT,
                     "--eval-samples": INT})
    cz = ["--zoo", "mcunet-in1", "--out", "{out}/cz.tflite"]
    R += _range_rows(["convert"], cz, {"--resolution": ["0", "-1", "100000"], "--channels": ["0", "-3"],
                                       "--classes": ["0", "-1"], "--calib-samples": ["-1"],
                                       "--eval-samples": ["-1"]}, limit=60)
    R += [Row("convert:no-source", ["convert", "--out", "{out}/c.tflite"], 2, 60),
          Row("convert:both-sources", ["convert", "{missing}", "--zoo", "mcunet-in1", "--out", "{out}/c.tflite"], 2,
              60),
          Row("convert:no-out", ["convert", "--zoo", "mcunet-in1"], 2, argparse_line=True),
          Row("convert:zoo=nosuch", ["convert", "--zoo", "nosuch", "--out", "{out}/c.tflite"], 2, 60),
          Row("convert:ckpt=missing", ["convert", "{missing}", "--out", "{out}/c.tflite"], 2, 60),
          Row("convert:ckpt=dir", ["convert", "{dir}", "--out", "{out}/c.tflite"], 2, 60),
          Row("convert:ckpt=fifo", ["convert", "{fifo}", "--out", "{out}/c.tflite"], 2, 60),
          Row("convert:ckpt=zero", ["convert", "{zero}", "--out", "{out}/c.tflite"], 2, 60),
          Row("convert:ckpt=garbage", ["convert", "{model_pt_garbage}", "--out", "{s_tflite}"], 2, 120,
              keep=["{s_tflite}"]),
          Row("convert:ckpt-onecls", ["convert", "{model_pt}", "--dataset", "{onecls}", "--out", "{s_tflite}"], 2,
              120, keep=["{s_tflite}"], needs="torch"),
          Row("convert:ckpt-dataset-missing", ["convert", "{model_pt}", "--dataset", "{missing}", "--out",
                                               "{s_tflite}"], 2, 120, keep=["{s_tflite}"], needs="torch"),
          Row("convert:calib-data=missing", ["convert", "{model_pt}", "--calib-data", "{missing}", "--out",
                                             "{s_tflite}"], 2, 120, keep=["{s_tflite}"], needs="torch"),
          Row("convert:calib-data=fifo", ["convert", "{model_pt}", "--calib-data", "{fifo}", "--out",
                                          "{s_tflite}"], 2, 120, keep=["{s_tflite}"], needs="torch"),
          Row("convert:calib-data=garbage", ["convert", "{model_pt}", "--calib-data", "{garbage}", "--out",
                                             "{s_tflite}"], 2, 120, keep=["{s_tflite}"], needs="torch"),
          Row("convert:out=locked", ["convert", "--zoo", "mcunet-in1", "--out", "{locked_tflite}"], 2, 60,
              expect_err="pid")]
    R += _out_rows(["convert"], lambda o: ["--zoo", "mcunet-in1", "--out", o], limit=60)
    # ---- evaluate
    R += _type_rows(["evaluate"], ["{tiny}"], {"--eval-samples": INT})
    R += _model_rows(["evaluate"], [], ["--eval-samples", "5"], limit=60)
    R += [Row("evaluate:eval-samples=-5", ["evaluate", "{tiny}", "--eval-samples", "-5"], 2, 60,
              expect_err="--eval-samples"),
          Row("evaluate:dataset=missing", ["evaluate", "{tiny}", "--dataset", "{missing}"], 2, 60),
          Row("evaluate:dataset=file", ["evaluate", "{tiny}", "--dataset", "{afile}"], 2, 60),
          Row("evaluate:dataset=onecls", ["evaluate", "{tiny}", "--dataset", "{onecls}"], 2, 60),
          Row("evaluate:preprocess=missing", ["evaluate", "{tiny}", "--preprocess", "{missing}"], 2, 60),
          Row("evaluate:preprocess=garbage", ["evaluate", "{tiny}", "--preprocess", "{bad_json}"], 2, 60),
          Row("evaluate:preprocess=fifo", ["evaluate", "{tiny}", "--preprocess", "{fifo}"], 2, 60),
          Row("evaluate:lrn", ["evaluate", "{lrn}", "--eval-samples", "5"], 2, 60, expect_err="LOCAL_RESPONSE"),
          Row("evaluate:float-accepted", ["evaluate", "{float}", "--eval-samples", "5", "--quiet"], 0, 120,
              needs="float")]
    R += _out_rows(["evaluate"], lambda o: ["{tiny}", "--eval-samples", "5", "--out", o], limit=60)
    # ---- analyze
    R += _model_rows(["analyze"], [], [])
    for op in ("lrn", "topk", "revseq"):
        R.append(Row(f"analyze:{op}", ["analyze", "{%s}" % op], 2, expect_err="not supported"))
        R.append(Row(f"analyze:{op}-allow-estimate", ["analyze", "{%s}" % op, "--allow-estimate"], 2,
                     expect_err="not supported"))
    R += [Row("analyze:not-modelled", ["analyze", "{abs}"], 2, expect_err="ABS"),
          Row("analyze:not-modelled-allowed", ["analyze", "{abs}", "--allow-estimate"], 0),
          Row("analyze:float", ["analyze", "{float}"], 2, needs="float"),
          Row("analyze:target=bogus", ["analyze", "{tiny}", "--target", "bogus"], 2, argparse_line=True),
          Row("analyze:board=nosuch", ["analyze", "{tiny}", "--board", "nosuch"], 2),
          Row("analyze:plot-board=nosuch", ["analyze", "{tiny}", "--board", "nosuch", "--plot", "{s_png}"], 2,
              keep=["{s_png}"])]
    R += _range_rows(["analyze"], ["{tiny}"], {"--reserve": ["abc", "-1", "1e400", "nan"]})
    R += _out_rows(["analyze"], lambda o: ["{tiny}", "--plot", o])
    R += _disk_rows(["analyze"], lambda o: ["{tiny}", "--plot", o], "png")
    # ---- check
    R += _model_rows(["check"], [], [])
    for op in ("lrn", "topk", "revseq"):
        R.append(Row(f"check:{op}", ["check", "{%s}" % op], 2, expect_err="not supported"))
    R += [Row("check:lrn-json-kept", ["check", "{lrn}", "--json", "{s_json}"], 2, keep=["{s_json}"]),
          Row("check:not-modelled", ["check", "{abs}"], 2, expect_err="--allow-estimate"),
          Row("check:not-modelled-allowed", ["check", "{abs}", "--allow-estimate"], 0),
          Row("check:float", ["check", "{float}"], 2, needs="float"),
          Row("check:one-bad-of-two", ["check", "{tiny}", "{trunc}"], 2),
          Row("check:list-boards-no-model", ["check", "--list-boards"], 0),
          Row("check:no-model", ["check"], 2),
          Row("check:board=nosuch", ["check", "{tiny}", "--board", "nosuch"], 2),
          Row("check:target=bogus", ["check", "{tiny}", "--target", "x"], 2, argparse_line=True),
          Row("check:over-budget", ["check", "{tiny}", "--sram", "1K", "--flash", "1M"], 1),
          Row("check:sram-only", ["check", "{tiny}", "--sram", "1K", "--board", "nosuch"], 2)]
    R += _range_rows(["check"], ["{tiny}"], {"--sram": ["abc", "-1", "1e400", "nan", "0x"],
                                             "--flash": ["abc", "-5", "1e400", "inf"],
                                             "--reserve": ["abc", "-1", "1e400"]}, keep=["{s_json}"])
    R += _out_rows(["check"], lambda o: ["{tiny}", "--json", o])
    R += [Row(f"check-junit:out={k}", ["check", "{tiny}", "--junit", "{%s}" % k], 2) for k in ("dir", "under_file")]
    R += _disk_rows(["check"], lambda o: ["{tiny}", "--json", o], "json")
    R += _disk_rows(["check", "junit"], lambda o: ["{tiny}", "--junit", o], "xml")
    # ---- optimize
    R += _model_rows(["optimize"], [], ["--out", "{out}/opt.tflite"])
    R += [Row("optimize:no-out", ["optimize", "{tiny}"], 2, argparse_line=True),
          Row("optimize:lrn", ["optimize", "{lrn}", "--out", "{s_tflite}"], 2, keep=["{s_tflite}"]),
          Row("optimize:target=bogus", ["optimize", "{tiny}", "--out", "{out}/o.tflite", "--target", "x"], 2,
              argparse_line=True)]
    R += _out_rows(["optimize"], lambda o: ["{tiny}", "--out", o])
    R += _disk_rows(["optimize"], lambda o: ["{tiny}", "--out", o, "--no-verify"], "tflite")
    # ---- fit
    R += _type_rows(["fit"], ["--zoo", "mcunet-in1"], {"--channels": INT, "--classes": INT, "--min-res": INT,
                                                        "--max-res": INT, "--step": INT})
    fz = ["--zoo", "mcunet-in1"]
    R += _range_rows(["fit"], fz, {"--channels": ["0"], "--classes": ["0"], "--min-res": ["0", "-16"],
                                   "--sram": ["abc", "1e400"], "--flash": ["-1"], "--reserve": ["x"]}, limit=60)
    R += [Row("fit:max<min", ["fit"] + fz + ["--min-res", "64", "--max-res", "32"], 2, 60),
          Row("fit:step=7", ["fit"] + fz + ["--step", "7"], 2, argparse_line=True),
          Row("fit:zoo=nosuch", ["fit", "--zoo", "nosuch"], 2, 60),
          Row("fit:board=nosuch", ["fit"] + fz + ["--board", "nosuch"], 2, 60),
          Row("fit:no-zoo", ["fit"], 2, argparse_line=True)]
    R += _out_rows(["fit"], lambda o: fz + ["--json", o], limit=60)
    # ---- firmware
    R += _type_rows(["firmware"], ["{tiny}"], {"--baud": INT, "--arena-bytes": INT, "--jobs": INT})
    fw = ["{tiny}", "--board", "mps2-an500", "--out", "{out}/fw"]
    R += _range_rows(["firmware"], fw, {"--baud": ["0", "-1"], "--arena-bytes": ["-1", "0"], "--jobs": ["0", "-2"]})
    R += _model_rows(["firmware"], [], ["--out", "{out}/fwm"])
    for op in ("lrn", "topk", "revseq"):
        R.append(Row(f"firmware:{op}", ["firmware", "{%s}" % op, "--out", "{out}/fw-%s" % op], 2,
                     expect_err="not supported"))
    R += [Row("firmware:not-modelled", ["firmware", "{abs}", "--out", "{out}/fwa"], 2, expect_err="--allow-estimate"),
          Row("firmware:not-modelled-allowed", ["firmware", "{abs}", "--out", "{out}/fwa", "--allow-estimate"], 0),
          Row("firmware:not-modelled-arena-bytes", ["firmware", "{abs}", "--out", "{out}/fwa", "--arena-bytes",
                                                    "8192"], 0)]
    R += [Row("firmware:board=nosuch", ["firmware", "{tiny}", "--board", "nosuch"], 2, argparse_line=True),
          Row("firmware:over-budget", ["firmware", "{tiny}", "--arena-bytes", "4000000", "--out", "{out}/fwb"], 1),
          Row("firmware:float", ["firmware", "{float}", "--out", "{out}/fwf"], 2, needs="float"),
          Row("firmware:out=file", ["firmware", "{tiny}", "--out", "{afile}"], 2),
          Row("firmware:out=under-file", ["firmware", "{tiny}", "--out", "{under_file}"], 2),
          Row("firmware:out=locked", ["firmware", "{tiny}", "--out", "{locked_fw}"], 2, expect_err="pid"),
          Row("firmware:out=stale-lock", ["firmware", "{tiny}", "--board", "mps2-an500", "--out", "{stale_out}"], 0),
          Row("firmware:full-disk", ["firmware", "{tiny}", "--out", "{full_fwdir}"], 2, 60, needs="root"),
          Row("firmware:ro-disk", ["firmware", "{tiny}", "--out", "{ro_fwdir}"], 2, 60, needs="root")]
    # ---- flash
    R += [Row("flash:missing", ["flash", "{missing}"], 2), Row("flash:dir-without-bin", ["flash", "{dir}"], 2),
          Row("flash:fifo", ["flash", "{fifo}"], 2), Row("flash:tool=bogus", ["flash", "--tool", "x"], 2,
                                                         argparse_line=True),
          Row("flash:garbage-bin", ["flash", "{garbage}"], 2)]
    # ---- virtual-board
    R += _type_rows(["virtual-board"], ["{tiny}"], {"--baud": INT, "--tcp": INT})
    R += _range_rows(["virtual-board"], ["{tiny}"], {"--baud": ["-1"], "--tcp": ["99999", "-1", "65536"]})
    R += _model_rows(["virtual-board"], [], ["--tcp", "0"])
    R += [Row("virtual-board:tcp-busy", ["virtual-board", "{tiny}", "--tcp", "{busy_port}"], 2, 30),
          Row("virtual-board:fault=bogus", ["virtual-board", "{tiny}", "--fault", "bogus=1"], 2),
          Row("virtual-board:fault=abc", ["virtual-board", "{tiny}", "--fault", "silent-after=abc"], 2),
          Row("virtual-board:lrn", ["virtual-board", "{lrn}"], 2)]
    R += _out_rows(["virtual-board"], lambda o: ["{tiny}", "--tcp", "0", "--port-file", o])
    R += _disk_rows(["virtual-board"], lambda o: ["{tiny}", "--tcp", "0", "--port-file", o], "port", limit=30)
    # ---- hil accuracy / latency / info / report
    acc = ["hil", "accuracy", "--port", "virtual", "--model", "{tiny}", "--out", "{out}/acc", "--no-progress"]
    R += _type_rows(["hil", "accuracy"], ["--port", "virtual", "--model", "{tiny}", "--out", "{out}/a"],
                    {"--baud": INT, "--timeout": FLOAT, "--infer-timeout": FLOAT, "--limit": INT,
                     "--preprocess-resolution": INT, "--preprocess-channels": INT})
    R += _range_rows(acc[:2], acc[2:], {"--limit": ["-5", "0"], "--timeout": ["-1", "0", "nan", "inf"],
                                        "--infer-timeout": ["-1", "0"], "--baud": ["0", "-1"],
                                        "--preprocess-resolution": ["0"], "--preprocess-channels": ["5", "0"],
                                        "--preprocess-mean": ["abc"], "--preprocess-std": ["0"]}, limit=60)
    R += [Row("hil-accuracy:no-port", ["hil", "accuracy", "--model", "{tiny}", "--out", "{out}/a"], 2,
              argparse_line=True),
          Row("hil-accuracy:model=missing", ["hil", "accuracy", "--port", "virtual", "--model", "{missing}",
                                             "--out", "{out}/a1"], 2, 60),
          Row("hil-accuracy:model=fifo", ["hil", "accuracy", "--port", "virtual", "--model", "{fifo}",
                                          "--out", "{out}/a2"], 2, 60),
          Row("hil-accuracy:model=zero", ["hil", "accuracy", "--port", "virtual", "--model", "{zero}",
                                          "--out", "{out}/a3"], 2, 60),
          Row("hil-accuracy:model-json=missing", acc + ["--model-json", "{missing}"], 2, 60),
          Row("hil-accuracy:model-json=garbage", acc + ["--model-json", "{bad_json}"], 2, 60),
          Row("hil-accuracy:port=nonexistent", ["hil", "accuracy", "--port", "/nonexistent/tty", "--model", "{tiny}",
                                                "--out", "{out}/a4", "--timeout", "2"], 2, 60),
          Row("hil-accuracy:port=refused", ["hil", "accuracy", "--port", "socket://127.0.0.1:1", "--model",
                                            "{tiny}", "--out", "{out}/a5", "--timeout", "2"], 2, 60),
          Row("hil-accuracy:out=file", ["hil", "accuracy", "--port", "virtual", "--model", "{tiny}",
                                        "--out", "{afile}", "--limit", "5"], 2, 60),
          Row("hil-accuracy:out=under-file", ["hil", "accuracy", "--port", "virtual", "--model", "{tiny}",
                                              "--out", "{under_file}", "--limit", "5"], 2, 60),
          Row("hil-accuracy:out=locked", ["hil", "accuracy", "--port", "virtual", "--model", "{tiny}",
                                          "--out", "{locked_hil}", "--limit", "5"], 2, 60, expect_err="pid"),
          Row("hil-accuracy:full-disk", ["hil", "accuracy", "--port", "virtual", "--model", "{tiny}",
                                         "--out", "{full_hil}", "--limit", "5"], 2, 60, needs="root"),
          Row("hil-accuracy:sigterm", ["hil", "accuracy", "--port", "virtual", "--model", "{tiny}", "--out",
                                       "{out}/sigterm", "--no-progress"], 143, 90,
              signal_after=(signal.SIGTERM, "{out}/sigterm/journal.jsonl", 60), expect_err="interrupted"),
          Row("hil-accuracy:sigint", ["hil", "accuracy", "--port", "virtual", "--model", "{tiny}", "--out",
                                      "{out}/sigint", "--no-progress"], 130, 90,
              signal_after=(signal.SIGINT, "{out}/sigint/journal.jsonl", 60), expect_err="interrupted")]
    lat = ["hil", "latency", "--port", "virtual", "--model", "{tiny}"]
    R += _type_rows(["hil", "latency"], lat[2:], {"--runs": INT, "--warmup": INT, "--timeout": FLOAT,
                                                  "--baud": INT})
    R += _range_rows(lat[:2], lat[2:], {"--runs": ["0", "-1"], "--warmup": ["-1"], "--timeout": ["-1", "0"],
                                        "--infer-timeout": ["-5"], "--baud": ["0"]}, limit=60)
    R += [Row("hil-latency:port=nonexistent", ["hil", "latency", "--port", "/nonexistent/tty", "--timeout", "1"], 2,
              30),
          Row("hil-latency:model=fifo", ["hil", "latency", "--port", "virtual", "--model", "{fifo}"], 2, 30),
          Row("hil-latency:out=file", lat + ["--out", "{afile}", "--runs", "2"], 2, 60),
          Row("hil-latency:out=locked", lat + ["--out", "{locked_hil}", "--runs", "2"], 2, 60, expect_err="pid"),
          Row("hil-latency:full-disk", lat + ["--out", "{full_hil}", "--runs", "2"], 2, 60, needs="root",
              keep=["{full_hil}/latency.json"]),
          Row("hil-latency:ro-disk", lat + ["--out", "{ro_hil}", "--runs", "2"], 2, 60, needs="root",
              keep=["{ro_hil}/latency.json"])]
    # a silent device: each command ends within its --timeout (plus start-up), with one line
    R += [Row("hil-info:silent-pty", ["hil", "info", "--port", "{silent_pty}", "--timeout", "1"], 2, 20),
          Row("hil-latency:silent-pty", ["hil", "latency", "--port", "{silent_pty}", "--timeout", "1"], 2, 20),
          Row("hil-accuracy:silent-pty", ["hil", "accuracy", "--port", "{silent_pty}", "--model", "{tiny}", "--out",
                                          "{out}/silent", "--timeout", "1", "--limit", "3"], 2, 30)]
    prof = ["hil", "profile", "--port", "virtual", "--model", "{tiny}"]
    R += _range_rows(prof[:2], prof[2:], {"--timeout": ["-1", "nan"], "--baud": ["0"]})
    R += [Row("hil-profile:model=fifo", ["hil", "profile", "--port", "virtual", "--model", "{fifo}"], 2),
          Row("hil-profile:model=lrn", ["hil", "profile", "--port", "virtual", "--model", "{lrn}"], 2,
              expect_err="not supported"),
          Row("hil-profile:silent-pty", ["hil", "profile", "--port", "{silent_pty}", "--timeout", "1"], 2, 20),
          Row("hil-profile:out=file", prof + ["--out", "{afile}"], 2),
          Row("hil-profile:png=dir", prof + ["--png", "{dir}"], 2),
          Row("hil-profile:png=under-file", prof + ["--png", "{under_file}"], 2),
          Row("hil-profile:png-full-disk", prof + ["--png", "{full_png}"], 2, 60, needs="root", keep=["{full_png}"])]
    R += [Row("hil-info:port=nonexistent", ["hil", "info", "--port", "/nonexistent/tty"], 2, 30),
          Row("hil-info:timeout=-1", ["hil", "info", "--port", "virtual", "--timeout", "-1"], 2, 30,
              expect_err="--timeout"),
          Row("hil-info:baud=-1", ["hil", "info", "--port", "/dev/null", "--baud", "-1"], 2, 30, expect_err="--baud"),
          Row("hil-info:timeout=abc", ["hil", "info", "--port", "x", "--timeout", "abc"], 2, argparse_line=True),
          Row("hil-info:port=virtual-no-model", ["hil", "info", "--port", "virtual"], 2, 30)]
    R += [Row("hil-report:out=missing", ["hil", "report", "--out", "{missing}"], 2),
          Row("hil-report:out=empty", ["hil", "report", "--out", "{hil_empty}"], 2),
          Row("hil-report:accuracy=garbage", ["hil", "report", "--out", "{hil_garbage}"], 2),
          Row("hil-report:accuracy=list", ["hil", "report", "--out", "{hil_list}"], 2),
          Row("hil-report:accuracy=binary", ["hil", "report", "--out", "{hil_binary}"], 2),
          Row("hil-report:latency=nonexistent", ["hil", "report", "--out", "{s_hil}", "--latency", "/nonexistent.json"],
              2),
          Row("hil-report:latency=garbage", ["hil", "report", "--out", "{s_hil}", "--latency", "{bad_json}"], 2),
          Row("hil-report:latency=fifo", ["hil", "report", "--out", "{s_hil}", "--latency", "{fifo}"], 2),
          Row("hil-report:model=fifo", ["hil", "report", "--out", "{s_hil}", "--model", "{fifo}"], 2),
          Row("hil-report:out=file", ["hil", "report", "--out", "{afile}"], 2),
          Row("hil-report:full-disk", ["hil", "report", "--out", "{full_hil}"], 2, needs="root",
              keep=["{full_hil_report}"]),
          Row("hil-report:ro-disk", ["hil", "report", "--out", "{ro_hil}"], 2, needs="root", keep=["{ro_hil_report}"])]
    # ---- demo: every argument is checked before any training starts
    R += _type_rows(["demo"], ["--out", "{out}/demo"], {"--resolution": INT, "--epochs": INT, "--train-limit": INT,
                                                        "--hil-limit": INT, "--eval-samples": INT})
    R += _range_rows(["demo"], ["--out", "{out}/demo"], {"--resolution": ["0", "100000"], "--epochs": ["0"],
                                                         "--train-limit": ["-1"], "--hil-limit": ["-1"],
                                                         "--eval-samples": ["-1"]}, limit=30)
    R += [Row("demo:board=nosuch", ["demo", "--out", "{out}/demo", "--board", "nosuch"], 2, 30),
          Row("demo:model=nosuch", ["demo", "--out", "{out}/demo", "--model", "nosuch"], 2, 30),
          Row("demo:out=file", ["demo", "--out", "{afile}"], 2, 30),
          Row("demo:out=under-file", ["demo", "--out", "{under_file}"], 2, 30),
          Row("demo:out=locked", ["demo", "--out", "{locked_demo}"], 2, 30, expect_err="pid")]
    return R


ROWS = rows()


# ------------------------------------------------------------------------------------------ runner
@dataclass
class Result:
    rc: int | None
    out: str
    err: str
    seconds: float
    timed_out: bool
    kept: dict[str, bool]
    note: str = ""


def _run_row(env: Env, row: Row) -> Result:
    argv = [env.fmt(a, row.id) for a in row.argv]
    keep = [env.fmt(k, row.id) for k in row.keep]
    before = {k: Path(k).read_bytes() for k in keep if Path(k).is_file()}
    cmd = [sys.executable, "-m", "netaug_mcu", *argv]
    e = dict(os.environ, NETAUG_MCU_DEBUG="0", PYTHONUNBUFFERED="1", COLUMNS="200")
    t0 = time.monotonic()
    stdout = subprocess.PIPE
    rfd = wfd = None
    if row.closed_stdout:
        rfd, wfd = os.pipe()
        os.close(rfd)
        stdout = wfd
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE, env=e,
                         cwd=env.root, start_new_session=True)
    if wfd is not None:
        os.close(wfd)
    note = ""
    if row.signal_after:
        sig, marker, wait = row.signal_after
        marker = Path(env.fmt(marker, row.id))
        while time.monotonic() - t0 < wait and p.poll() is None:
            if marker.is_file() and marker.stat().st_size > 0:
                break
            time.sleep(0.1)
        else:
            note = f"marker {marker} never appeared"
        if p.poll() is None:
            p.send_signal(sig)
    try:
        out, err = p.communicate(timeout=max(row.limit - (time.monotonic() - t0), 1))
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        timed_out = True
    dt = time.monotonic() - t0
    kept = {k: Path(k).is_file() and Path(k).read_bytes() == v for k, v in before.items()}
    kept.update({k: False for k in keep if k not in before})  # a sentinel that vanished before the run
    return Result(None if timed_out else p.returncode, (out or b"").decode(errors="replace"),
                  err.decode(errors="replace"), dt, timed_out, kept, note)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    env = Env(tmp_path_factory.mktemp("matrix"))
    try:
        build_env(env)
    except BaseException:
        env.close()
        raise
    results: dict[str, Result | str] = {}
    todo = []
    for row in ROWS:
        if row.needs and row.needs not in env.caps:
            results[row.id] = {"root": "full-disk/read-only rows need root and tmpfs mounts",
                               "torch": "needs torch for the model.pt fixture",
                               "float": "needs the cached float test model (tests/keras_models.py)",
                               }.get(row.needs, row.needs)
        else:
            todo.append(row)
    # the slow rows first, so that the pool stays busy
    todo.sort(key=lambda r: -r.limit)
    try:
        with cf.ThreadPoolExecutor(max_workers=WORKERS) as pool:
            futs = {pool.submit(_run_row, env, row): row for row in todo}
            for f in cf.as_completed(futs):
                results[futs[f].id] = f.result()
        if os.environ.get("NETAUG_MCU_MATRIX_REPORT"):
            _write_report(Path(os.environ["NETAUG_MCU_MATRIX_REPORT"]), results)
        yield env, results
    finally:
        env.close()


def failures(row: Row, res: Result) -> list[str]:
    """Everything wrong with one row's result (empty = the promise was kept)."""
    bad = []
    lines = [ln for ln in res.err.splitlines() if ln.strip()]
    if res.timed_out:
        bad.append(f"no exit within {row.limit:.0f} s (hang or late failure)")
    elif res.rc != row.rc:
        bad.append(f"exit {res.rc}, expected {row.rc}")
    if "Traceback" in res.err or "Traceback" in res.out:
        bad.append("traceback")
    if row.rc not in (0, 1) and not res.timed_out and len(lines) != 1:
        bad.append(f"{len(lines)} stderr lines, expected 1")
    if row.rc in (0, 1) and row.closed_stdout and lines:
        bad.append(f"stderr not quiet: {lines[:2]}")
    if row.argparse_line and lines:
        cmd = " ".join(a for a in row.argv[:2] if not a.startswith("-") and "{" not in a and a != "abc")
        cmd = cmd.split()[0] if cmd.split()[:1] != ["hil"] else " ".join(cmd.split()[:2])
        if not (lines[0].startswith(f"netaug-mcu {cmd}: ") and lines[0].endswith(f"(see netaug-mcu {cmd} --help)")):
            bad.append(f"not the argparse one-liner: {lines[0][:120]!r}")
    if row.expect_err and lines and row.expect_err not in lines[-1]:
        bad.append(f"error does not name {row.expect_err!r}")
    for k, ok in res.kept.items():
        if not ok:
            bad.append(f"{k} was changed or removed")
    if res.note:
        bad.append(res.note)
    return bad


def _write_report(path: Path, results) -> None:
    rows = []
    for row in ROWS:
        r = results.get(row.id)
        if isinstance(r, Result):
            f = failures(row, r)
            rows.append({"id": row.id, "ok": not f, "problems": f, "rc": r.rc, "seconds": round(r.seconds, 1),
                         "stderr": r.err.strip().splitlines()[-3:]})
        else:
            rows.append({"id": row.id, "skipped": r})
    path.write_text(json.dumps({"cases": len(ROWS), "failed": sum(1 for r in rows if r.get("ok") is False),
                                "skipped": sum(1 for r in rows if "skipped" in r), "rows": rows}, indent=1))


def test_matrix_size_and_coverage():
    """>= 200 rows, every subcommand covered."""
    assert len(ROWS) >= 200
    assert len({r.id for r in ROWS}) == len(ROWS), "row ids must be unique"
    cmds = {tuple(a for a in r.argv[:2] if not a.startswith("-") and "{" not in a)[:2] for r in ROWS}
    tops = {c[0] for c in cmds if c}
    assert {"train", "zoo", "convert", "evaluate", "analyze", "check", "optimize", "fit", "firmware", "flash",
            "virtual-board", "hil", "demo"} <= tops
    assert {("hil", s) for s in ("accuracy", "latency", "report", "info")} <= cmds


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input(matrix, row):
    _, results = matrix
    res = results[row.id]
    if isinstance(res, str):
        pytest.skip(res)
    problems = failures(row, res)
    assert not problems, f"{row.argv}: {'; '.join(problems)}\nstderr: {res.err[-1500:]}"


# ------------------------------------------------------------------ the helpers behind the promise
def test_output_lock_reentrant_exclusive_and_stale(tmp_path):
    from netaug_mcu.common.errors import UserError
    from netaug_mcu.common.locks import LOCK_NAME as NAME, output_lock
    assert NAME == LOCK_NAME
    d = tmp_path / "out"
    d.mkdir()
    (d / LOCK_NAME).write_text("999999\n")  # left by a killed run: taken over
    with output_lock(d):
        assert (d / LOCK_NAME).read_text().strip() == str(os.getpid())
        with output_lock(d):  # re-entrant in one process (demo -> stages)
            pass
        code = "import sys\nfrom netaug_mcu.common.locks import output_lock\nwith output_lock(sys.argv[1]): pass"
        r = subprocess.run([sys.executable, "-c", code, str(d)], capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and f"pid {os.getpid()}" in r.stderr
        assert (d / LOCK_NAME).exists()
    assert not (d / LOCK_NAME).exists()  # released and removed
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="cannot create"):
        with output_lock(tmp_path / "f" / "sub"):
            pass


def test_virtual_board_thread_failure_ends_serve_forever(monkeypatch):
    """A failure of the serving thread ends `virtual-board` with one line (not a live, mute process)."""
    from netaug_mcu.hil import virtual_board as vbm

    def boom(self):
        raise RuntimeError("pty exploded")
    monkeypatch.setattr(vbm.VirtualBoard, "_run_tcp", boom)
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        t0 = time.monotonic()
        with pytest.raises(vbm.BoardError, match="serving thread failed: RuntimeError: pty exploded"):
            vbm.serve_forever(str(DATA / "tiny_fmnist32.tflite"), tcp_port=0, quiet=True)
        assert time.monotonic() - t0 < 10
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def test_argparse_one_liner_format(capsys):
    from netaug_mcu import cli
    assert cli.main(["train", "--epochs", "abc"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "netaug-mcu train: --epochs: invalid int value 'abc' (see netaug-mcu train --help)"


def test_garbage_device_is_not_called_silent(tmp_path, capsys):
    """A port that answers only noise is reported with what it sent, not as `silent`."""
    import threading

    from netaug_mcu import cli
    master, slave = os.openpty()
    stop = threading.Event()

    def babble():
        while not stop.is_set():
            try:
                os.write(master, b"\x07garbage \xff\xfe noise\r\n")
            except OSError:
                return
            time.sleep(0.05)
    t = threading.Thread(target=babble, daemon=True)
    t.start()
    try:
        rc = cli.main(["hil", "info", "--port", os.ttyname(slave), "--timeout", "1"])
    finally:
        stop.set()
        t.join(2)
        os.close(master)
        os.close(slave)
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc == 2 and len(err) == 1
    assert "silent" not in err[0] and "no protocol reply" in err[0] and "garbage" in err[0], err
