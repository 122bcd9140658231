"""HIL runs: on-device accuracy (journalled, resumable, sharded over several boards) and latency."""
from __future__ import annotations

import json
import os
import queue
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..common import artifacts
from ..common.errors import UserError
from ..common.fsio import atomic_write
from ..common.datasets import FASHION_MNIST_CLASSES, load_fashion_mnist
from ..common.preprocess import preprocess as preprocess_images, quantize
from . import protocol as P
from .client import Client, HilError
from .model import ModelInfo, host_reference, load_model

JOURNAL, RUN_META, ACCURACY, LATENCY = artifacts.JOURNAL, artifacts.RUN_META, artifacts.ACCURACY, artifacts.LATENCY


class JournalError(HilError):
    pass


# ---- targets named on the command line ----------------------------------------------------------
def _elf_board(elf: str) -> str:
    """The QEMU board an ELF was generated for (project.json beside it; mps2-an500 when absent)."""
    try:
        return json.loads((Path(elf).parent / "project.json").read_text()).get("board") or "mps2-an500"
    except (OSError, ValueError):
        return "mps2-an500"


class _Targets:
    """`--port virtual` (an in-process virtual board on MODEL) and `--port qemu:ELF` start a target;
    anything else is a pyserial URL used as is."""

    def __init__(self, ports: list[str], model_path: str | None):
        self.urls: list[str] = []
        self.stops: list = []
        try:
            for p in ports:
                if p == "virtual":
                    if not model_path:
                        raise HilError("--port virtual needs --model")
                    from .targets import start_virtual_board
                    url, stop = start_virtual_board(model_path)
                elif p.startswith("qemu:"):
                    from .targets import start_qemu
                    url, stop = start_qemu(p[len("qemu:"):], board=_elf_board(p[len("qemu:"):]))
                else:
                    url, stop = p, None
                self.urls.append(url)
                if stop:
                    self.stops.append(stop)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for stop in self.stops:
            stop()
        self.stops = []


# ---- inputs --------------------------------------------------------------------------------------
def resolve_preprocess(model: ModelInfo, override: dict | None = None) -> dict:
    pre = {k: v for k, v in (model.preprocess or {}).items() if v is not None}   # null = not given
    for k, v in (override or {}).items():
        if v is not None:
            pre[k] = v
    if not pre:
        h, w, c = model.input.shape[1:4] if len(model.input.shape) == 4 else (None, None, None)
        if h is None:
            raise HilError(f"{model.path}: no model.json with 'preprocess' next to the model; give "
                           f"--preprocess-mean/--preprocess-std (input shape {model.input.shape})")
        pre = {"resolution": h, "channels": c}
    pre.setdefault("resolution", model.input.shape[1] if len(model.input.shape) == 4 else None)
    pre.setdefault("channels", model.input.shape[-1] if len(model.input.shape) == 4 else 1)
    ch = pre["channels"]
    want = model.input.shape[-1] if len(model.input.shape) == 4 else ch
    if not isinstance(ch, int) or isinstance(ch, bool) or ch != want:   # before [0.0] * ch: 10**30 channels
        raise HilError(f"preprocess channels {str(ch)[:20]} do not match the model input {list(model.input.shape)}")
    pre.setdefault("mean", [0.0] * ch)
    pre.setdefault("std", [1.0] * ch)
    return pre


def prepare_inputs(model: ModelInfo, dataset: str = "fashion-mnist", limit: int | None = None,
                   preprocess: dict | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """int8 model inputs [N, *input_shape[1:]] and labels of the test split (first `limit` samples)."""
    pre = resolve_preprocess(model, preprocess)
    images, labels = load_fashion_mnist("test")
    if limit is not None:
        if limit < 1:
            raise HilError("--limit must be >= 1")
        images, labels = images[:limit], labels[:limit]
    return quantize_inputs(model, images, pre), labels, pre


def quantize_inputs(model: ModelInfo, images: np.ndarray, pre: dict) -> np.ndarray:
    """uint8 images -> the model's int8 inputs; the preprocessing must give the model's input shape."""
    want = tuple(model.input.shape[1:])
    res, ch = pre.get("resolution"), pre.get("channels")
    # checked before any work: a model.json resolution of 10**9 must not allocate first
    rr = tuple(res) if isinstance(res, (list, tuple)) else (res, res)
    if len(want) != 3 or (res is not None and rr != want[:2]) or (ch is not None and ch != want[2]):
        raise HilError(f"preprocessing ({res}x{res}, {ch} channels) does not give the model input {list(want)} "
                       f"(check --preprocess-resolution/channels or model.json)")
    for key in ("mean", "std"):
        v = pre.get(key)
        if v is not None and (not isinstance(v, list) or len(v) not in (1, want[2])):
            raise HilError(f"preprocess {key} {v!r} needs 1 or {want[2]} values (the model's channels)")
    x = preprocess_images(images, pre)
    if tuple(x.shape[1:]) != want:
        raise HilError(f"preprocessing gives {x.shape[1:]} but the model input is {want} "
                       f"(check --preprocess-resolution/channels or model.json)")
    return quantize(x, model.input.scale, model.input.zero_point)


# ---- journal -------------------------------------------------------------------------------------
class Journal:
    """Append-only JSONL, one line per finished sample, flushed and fsync'd. Thread-safe writer."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        self.fh = None

    @staticmethod
    def read(path: Path, repair: bool = False) -> dict[int, dict]:
        try:
            return Journal._read(path, repair)
        except OSError as exc:
            raise JournalError(f"cannot read the journal {path}: {exc.strerror or exc}") from None

    @staticmethod
    def _read(path: Path, repair: bool) -> dict[int, dict]:
        """index -> record. A torn last line (crash mid-write) is dropped (and cut off when repair)."""
        recs: dict[int, dict] = {}
        if not path.exists():
            return recs
        raw = path.read_bytes()
        good_end = 0
        pos = 0
        for chunk in raw.split(b"\n"):
            end = pos + len(chunk) + 1
            if chunk.strip():
                try:
                    rec = json.loads(chunk)
                except (ValueError, RecursionError):
                    rec = None
                if not _valid_record(rec):
                    if end >= len(raw):  # torn tail
                        break
                    raise JournalError(f"{path}: corrupt line at byte {pos} (not the last line)") from None
                i = rec["i"]
                if end > len(raw):      # complete JSON but no newline yet: keep, newline added on repair
                    pass
                if i in recs and recs[i]["q"] != rec["q"]:
                    raise JournalError(f"{path}: sample {i} recorded twice with different outputs")
                recs[i] = rec
            good_end = min(end, len(raw))
            pos = end
        if repair:
            if good_end < len(raw):
                with open(path, "r+b") as fh:
                    fh.truncate(good_end)
            if good_end and not path.read_bytes().endswith(b"\n"):
                with open(path, "ab") as fh:
                    fh.write(b"\n")
        return recs

    def open(self) -> "Journal":
        self.fh = open(self.path, "a", encoding="utf-8")
        return self

    def append(self, rec: dict) -> None:
        line = json.dumps(rec, separators=(",", ":")) + "\n"
        with self.lock:
            self.fh.write(line)
            self.fh.flush()
            os.fdatasync(self.fh.fileno())  # data + size: enough to read the line back

    def close(self) -> None:
        if self.fh:
            self.fh.close()
            self.fh = None


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _valid_record(rec) -> bool:
    """A journal line identifies its sample (i >= 0) and holds the device's int8 outputs (q)."""
    return (isinstance(rec, dict) and _is_int(rec.get("i")) and rec["i"] >= 0 and isinstance(rec.get("q"), list)
            and all(_is_int(v) and -128 <= v <= 127 for v in rec["q"]))


def _check_summary_record(i: int, r: dict, num_classes: int) -> None:
    """The fields `summarize` counts: labels and predictions of this model's classes, `exact` a bool."""
    ok = all(_is_int(r.get(k)) and 0 <= r[k] < num_classes for k in ("y", "pred", "ref_pred"))
    if not ok or not isinstance(r.get("exact"), bool) or len(r["q"]) != num_classes:
        raise JournalError(f"journal record {i} does not belong to this model ({num_classes} classes): "
                           f"label {str(r.get('y'))[:12]}, prediction {str(r.get('pred'))[:12]}, "
                           f"{len(r['q'])} outputs")


def read_run_meta(path: Path) -> dict:
    """run.json of a journalled run (what --resume compares against)."""
    try:
        doc = artifacts.read_json(path, "run file")
    except UserError as exc:
        raise JournalError(str(exc)) from None
    if not isinstance(doc, dict):
        raise JournalError(f"run file {path} is not a JSON object")
    return doc


# ---- accuracy ------------------------------------------------------------------------------------
@dataclass
class ShardResult:
    url: str
    done: int = 0
    error: str | None = None
    stats: object = None
    info: dict | None = None


def summarize(recs: dict[int, dict], n: int, num_classes: int) -> dict:
    idx = sorted(i for i in recs if i < n)
    for i in idx:
        _check_summary_record(i, recs[i], num_classes)
    labels = np.array([recs[i]["y"] for i in idx], dtype=np.int64)
    preds = np.array([recs[i]["pred"] for i in idx], dtype=np.int64)
    ref_preds = np.array([recs[i]["ref_pred"] for i in idx], dtype=np.int64)
    exact = np.array([recs[i]["exact"] for i in idx], dtype=bool)
    conf = np.zeros((num_classes, num_classes), dtype=np.int64)
    for y, p in zip(labels, preds):
        conf[y, p] += 1
    m = len(idx)
    return {
        "samples": m,
        "complete": m == n,
        # percent rounded exactly as converter.evaluate rounds model.json's *_top1 (comparable with ==);
        # the *_exact fields keep full precision
        "device_top1": round(float(np.mean(preds == labels)) * 100.0, 2) if m else None,
        "host_tflm_top1": round(float(np.mean(ref_preds == labels)) * 100.0, 2) if m else None,
        "device_top1_exact": 100.0 * int(np.sum(preds == labels)) / m if m else None,
        "host_tflm_top1_exact": 100.0 * int(np.sum(ref_preds == labels)) / m if m else None,
        "correct": int(np.sum(preds == labels)),
        "bit_exact": int(np.sum(exact)),
        "bit_exact_rate": int(np.sum(exact)) / m if m else None,
        "top1_agreement_with_host": 100.0 * int(np.sum(preds == ref_preds)) / m if m else None,
        "confusion_matrix": conf.tolist(),
    }


def run_accuracy(ports: list[str], model_path: str, out_dir: str, dataset: str = "fashion-mnist",
                 limit: int | None = None, resume: bool = False, preprocess: dict | None = None,
                 baud: int = 115200, timeout: float = 5.0, infer_timeout: float = 60.0,
                 binary: bool | None = None, progress: bool = True, meta_path: str | None = None) -> dict:
    if not ports:
        raise HilError("give at least one --port")
    real = [p for p in ports if p != "virtual"]
    if len(set(real)) != len(real):
        raise HilError("the same --port is given twice")
    model = load_model(model_path, meta_path)
    xq, labels, pre = prepare_inputs(model, dataset, limit, preprocess)
    n = len(labels)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jpath, mpath = out / JOURNAL, out / RUN_META
    meta = {"format": artifacts.HIL_RUN, "model": str(model.path), "model_sha256": model.sha256,
            "dataset": dataset, "preprocess": pre, "input_scale": model.input.scale,
            "input_zero_point": model.input.zero_point}
    if jpath.exists() and jpath.stat().st_size > 0 and not resume:
        raise JournalError(f"{jpath} exists: add --resume to continue it, or choose a new --out")
    if resume and mpath.exists():
        old = read_run_meta(mpath)
        for k in ("model_sha256", "dataset", "preprocess"):
            if old.get(k) != meta[k]:
                raise JournalError(f"--resume: {k} differs from the journalled run in {out} "
                                   f"(journal: {str(old.get(k))[:40]}, now: {str(meta[k])[:40]})")
    recs = Journal.read(jpath, repair=True)
    atomic_write(mpath, json.dumps(meta, indent=2) + "\n")
    todo = [i for i in range(n) if i not in recs]
    already = n - len(todo)

    targets = _Targets(ports, model_path)
    try:
        return _run_accuracy(targets.urls, model, xq, labels, n, out, jpath, already, todo, dataset, limit,
                             baud, timeout, infer_timeout, binary, progress)
    finally:
        targets.close()


def _run_accuracy(ports, model, xq, labels, n, out, jpath, already, todo, dataset, limit, baud, timeout,
                  infer_timeout, binary, progress) -> dict:
    clients: list[Client] = []
    try:
        for url in ports:
            c = Client(url, baud=baud, timeout=timeout, infer_timeout=infer_timeout, binary=binary)
            clients.append(c)
            c.connect()
            c.check_model(model)
    except BaseException:
        for c in clients:
            c.close()
        raise

    work: queue.Queue[int] = queue.Queue()
    for i in todo:
        work.put(i)
    journal = Journal(jpath).open()
    shard_results = [ShardResult(url=c.url, info=dict(c.info)) for c in clients]
    counter = {"done": 0}
    cnt_lock = threading.Lock()
    stop_all = threading.Event()

    active = {"n": len(clients)}

    def worker(k: int) -> None:
        try:
            _work(k)
        except Exception as exc:  # noqa: BLE001 - e.g. the journal's disk is full: stop, keep what is written
            shard_results[k].error = f"{type(exc).__name__}: {exc}"
            stop_all.set()
        finally:
            with cnt_lock:
                active["n"] -= 1

    def _work(k: int) -> None:
        c, sr = clients[k], shard_results[k]
        ref = host_reference(model)
        while not stop_all.is_set():
            try:
                i = work.get(timeout=0.05)
            except queue.Empty:
                # Stay while another board still works: if it fails, its sample comes back to the queue.
                with cnt_lock:
                    if counter["done"] >= len(todo) or active["n"] <= 1:
                        return
                continue
            x = xq[i]
            try:
                q = c.classify(x.tobytes())
            except HilError as exc:
                work.put(i)                  # not done: another board (or --resume) takes it
                sr.error = str(exc)
                return
            except Exception as exc:  # noqa: BLE001
                work.put(i)
                sr.error = f"{type(exc).__name__}: {exc}"
                return
            r = ref.run(x)
            rec = {"i": int(i), "y": int(labels[i]), "pred": int(np.argmax(q)), "ref_pred": int(np.argmax(r)),
                   "exact": bool(np.array_equal(q, r)), "q": [int(v) for v in q], "board": c.url}
            journal.append(rec)
            sr.done += 1
            with cnt_lock:
                counter["done"] += 1

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(len(clients))]
    t0 = time.monotonic()
    try:
        _progress_loop(threads, counter, len(todo), already, n, progress, len(clients))
    except KeyboardInterrupt:
        stop_all.set()
        for t in threads:
            t.join(timeout=30)
        raise
    finally:
        journal.close()
        for c, sr in zip(clients, shard_results):
            sr.stats = c.stats
            c.close()
    wall = time.monotonic() - t0
    recs = Journal.read(jpath)
    summary = summarize(recs, n, max(model.output.nbytes, 1))
    summary.update({
        "model": str(model.path), "model_sha256": model.sha256, "dataset": dataset, "limit": limit,
        "requested": n, "resumed_from": already, "new_samples": counter["done"], "wall_s": round(wall, 3),
        "samples_per_s": round(counter["done"] / wall, 2) if wall > 0 and counter["done"] else None,
        "boards": [{"url": sr.url, "samples": sr.done, "error": sr.error, "info": sr.info,
                    "resets": sr.stats.resets, "timeouts": sr.stats.timeouts, "crc_retries": sr.stats.crc_retries,
                    "resyncs": sr.stats.resyncs, "garbled": sr.stats.garbled,
                    "bytes_out": sr.stats.bytes_out, "bytes_in": sr.stats.bytes_in,
                    "transfer": "binary" if sr.info and int(sr.info.get("bin", 0)) == 1 and binary is not False
                    else "hex"} for sr in shard_results],
        "classes": model.classes or (FASHION_MNIST_CLASSES if dataset == "fashion-mnist" else None),
    })
    atomic_write(out / ACCURACY, json.dumps(summary, indent=2) + "\n")
    errors = [sr for sr in shard_results if sr.error]
    if not summary["complete"]:
        first = errors[0].error if errors else "stopped"
        raise HilError(f"{summary['samples']}/{n} samples done ({first}); the journal in {out} is intact: "
                       f"rerun with --resume to continue")
    return summary


def _progress_loop(threads, counter, total, already, n, progress, nboards) -> None:
    for t in threads:
        t.start()
    if not progress:
        for t in threads:
            t.join()
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    with Progress(TextColumn(f"on-device accuracy ({nboards} board{'s' if nboards > 1 else ''})"), BarColumn(),
                  MofNCompleteColumn(), TimeRemainingColumn(), transient=False) as prog:
        task = prog.add_task("hil", total=n, completed=already)
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(timeout=0.2)
            prog.update(task, completed=already + counter["done"])
        prog.update(task, completed=already + counter["done"])


# ---- latency -------------------------------------------------------------------------------------
def percentile(vals: list[float], p: float) -> float:
    s = sorted(vals)
    if not s:
        return float("nan")
    k = (len(s) - 1) * p / 100.0
    lo, hi = int(np.floor(k)), int(np.ceil(k))
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def run_latency(port: str, model_path: str | None = None, runs: int = 20, warmup: int = 3,
                baud: int = 115200, timeout: float = 5.0, infer_timeout: float = 120.0,
                out_dir: str | None = None, dataset: str = "fashion-mnist", progress: bool = False,
                meta_path: str | None = None) -> dict:
    """Per-inference time from the device's own timer (`m-infer-cycles-` / clock_hz, else m-lap-us)."""
    if runs < 1 or warmup < 0:
        raise HilError("--runs must be >= 1 and --warmup >= 0")
    targets = _Targets([port], model_path)
    try:
        return _run_latency(targets.urls[0], port, model_path, runs, warmup, baud, timeout, infer_timeout,
                            out_dir, dataset, meta_path)
    finally:
        targets.close()


def _run_latency(url, port, model_path, runs, warmup, baud, timeout, infer_timeout, out_dir, dataset,
                 meta_path) -> dict:
    c = Client(url, baud=baud, timeout=timeout, infer_timeout=infer_timeout).connect()
    try:
        n_in = int(c.info.get("input", 0))
        source = "zeros"
        if model_path:
            model = load_model(model_path, meta_path)
            c.check_model(model)
            try:
                xq, _, _ = prepare_inputs(model, dataset, limit=1)
                data = xq[0].tobytes()
                source = f"{dataset} test image 0"
            except HilError:
                data = bytes(n_in)
        else:
            data = bytes(n_in)
        c.load(c.wire_input(data) if model_path else bytes(int(c.info.get("max_frame") or n_in)))
        if warmup:
            c.infer(1, warmup)
        clock = int(c.info.get("clock_hz") or 0)
        per_us: list[float] = []
        lap_us: list[float] = []
        for _ in range(runs):
            r = c.infer(1, 0)
            lap_us.append(float(r["t1"] - r["t0"]))
            if r["cycles"] is not None and clock > 0:
                per_us.append(r["cycles"] * 1e6 / clock)
            else:
                per_us.append(float(r["t1"] - r["t0"]))
        cycles_used = len(per_us) == runs and clock > 0
    finally:
        c.close()
    timer = c.info.get("timer")
    res = {
        "port": port, "model": str(model_path) if model_path else None, "input": source,
        "runs": runs, "warmup": warmup, "board": c.info, "device_name": c.name,
        "timer": timer, "timer_label": P.timer_label(timer), "clock_hz": clock,
        "source": "m-infer-cycles / clock_hz" if cycles_used else "m-lap-us",
        "min_ms": round(min(per_us) / 1000, 6), "median_ms": round(statistics.median(per_us) / 1000, 6),
        "p90_ms": round(percentile(per_us, 90) / 1000, 6), "max_ms": round(max(per_us) / 1000, 6),
        "mean_ms": round(statistics.fmean(per_us) / 1000, 6),
        "lap_median_ms": round(statistics.median(lap_us) / 1000, 6),
        "per_run_ms": [round(v / 1000, 6) for v in per_us],
    }
    if timer == "systick-icount":
        res["note"] = "QEMU -icount: deterministic instruction-count proxy, not Cortex-M7 time"
    elif timer == "host":
        res["note"] = "virtual board: host CPU time of host TFLM, not MCU time"
    if out_dir:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        atomic_write(Path(out_dir) / LATENCY, json.dumps(res, indent=2) + "\n")
    return res
