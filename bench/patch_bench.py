"""Patch-based inference benchmark: arena before/after (exact analyzer, cortex-m7 and host), reduction,
MAC overhead, bit-exactness, F746 fit with and without patching, QEMU instruction-count latency.

Models: every zoo model at its native resolution, and mbv2-w0.35 / mcunet-in4 at 128..224 (random
weights, full int8, converted by the converter and cached). Each rewrite is `optimize --patch auto
--max-overhead 0.2`'s search; its stage output is compared with the original's in host TFLM on 100
inputs and the whole model on 10 (random-weight logits are nearly constant). The F746 verdict is the
`check` gate's (RAM = arena + placement; flash reported separately). QEMU (mps2-an500, CMSIS-NN):
SysTick ticks under -icount for one inference, original vs patched, for the models listed in QEMU_MODELS.
Each row also gets the floor (search.arena_floor): no split/grid within 20 % MACs can go below it, so a
goal above it (a 3x ratio, the F746's arena budget) is out of reach of any patch rewrite in stock TFLM.
Writes bench/results/patch.json and bench/results/patch_mbv2-w0.35_160.png.

    nice -n 10 python bench/patch_bench.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from netaug_mcu.common.fsio import atomic_write
from netaug_mcu.common.tflite_model import load
from netaug_mcu.converter import analyzer, budget
from netaug_mcu.converter.commands import check_file
from netaug_mcu.converter.convert import convert_zoo
from netaug_mcu.converter.patching.search import arena_floor, search
from netaug_mcu.converter.patching.stage import PatchError
from netaug_mcu.converter.patching.verify import bit_exact
from netaug_mcu.trainer import zoo

RESULTS = Path(__file__).resolve().parent / "results"
SWEEP = {"mbv2-w0.35": [128, 160, 176, 224], "mcunet-in4": [128, 160, 176, 224]}
# mps2-an500 RAM holds both versions of the first two; of mbv2-w0.35@128 only the patched one (-> qemu_skipped)
QEMU_MODELS = {("mcunet-in1", 96), ("mcunet-in0", 48), ("mbv2-w0.35", 128)}
PLOT = ("mbv2-w0.35", 160)


def _model(name: str, res: int, work: Path) -> bytes:
    p = work / f"{name}-{res}.tflite"
    convert_zoo(name, res, 3, 10, p, quiet=True)
    return p.read_bytes()


def _fit(data: bytes, work: Path, tag: str) -> dict:
    p = work / f"{tag}.tflite"
    p.write_bytes(data)
    r = check_file(str(p), budget.budget("stm32f746g-disco"))
    return {"fits": r["fits"], "fits_ram": r["ram_over_bytes"] == 0, "min_arena": r["min_arena_bytes"],
            "arena_budget": r["arena_budget"], "flash_over": r["flash_over_bytes"]}


def _qemu_ticks(data: bytes, work: Path, tag: str) -> int | None:
    """SysTick ticks (-icount) of one inference on mps2-an500, or None when the toolchain/library is missing."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import numpy as np
    from netaug_mcu.common.qemu import Qemu
    from netaug_mcu.firmware import build as fw_build, generate as gen, tflm_build as deps
    from test_firmware_qemu import Wire, _bload
    tree, _ = deps.find_tree()
    lib = deps.library_dir(tree) / "libtflm.a" if tree else None
    if lib is None or not lib.is_file():
        return None
    p = work / f"{tag}.tflite"
    p.write_bytes(data)
    out = work / f"fw-{tag}"
    gen.generate(p, board="mps2-an500", out=out, tree=tree, lib=lib, log=lambda *_: None)
    res = fw_build.build(out, tree=tree, lib=lib, log=lambda *_: None)
    x = np.random.default_rng(0).integers(-128, 128, size=load(data).io_tensor("input").nbytes, dtype=np.int8)
    with Qemu(res.elf) as q:
        w = Wire(q.url)
        w.until_ready(60)
        assert _bload(w, x.tobytes()) == ["m-load-done"]
        lines = w.cmd("infer 1 0", timeout=600)
        w.close()
    return int(next(v for v in lines if v.startswith("m-infer-cycles-")).removeprefix("m-infer-cycles-"))


def bench_one(name: str, res: int, work: Path, qemu: bool) -> tuple[dict, bytes, bytes | None]:
    t0 = time.time()
    data = _model(name, res, work)
    m = load(data)
    row = {"model": name, "resolution": res, "ops": len(m.operators), "macs_before": m.macs,
           "arena_before": {t: analyzer.analyze(m, t).arena_bytes for t in ("cortex-m7", "host")},
           "f746_before": _fit(data, work, f"{name}-{res}")}
    _add_floor(row, data)
    try:
        best, stats = search(data, None, 0.2, "cortex-m7")
    except PatchError as exc:
        row["refused"] = str(exc)
        return row, data, None
    if best is None or best.arena >= stats["base_arena"]:
        row["refused"] = "no split/grid within 20 % MAC overhead reduces the arena"
        return row, data, None
    pm = load(best.data)
    split_t = m.tensors[m.operators[best.split].outputs[0]]
    v = bit_exact(data, best.data, 100, stage_tensor=split_t.name, n_full=10)
    after = {t: analyzer.analyze(pm, t).arena_bytes for t in ("cortex-m7", "host")}
    row.update({"split_op": best.split, "split_tensor": list(split_t.shape), "patch_grid": f"{best.grid[0]}x{best.grid[1]}",
                "ops_after": len(pm.operators), "macs_after": pm.macs, "mac_overhead": round(pm.macs / m.macs - 1, 4),
                "arena_after": after, "reduction": {t: round(row["arena_before"][t] / after[t], 3) for t in after},
                "host_measured_after": v["arena_measured_after"], "bit_exact": v["mismatches"] == 0,
                "verified": v, "candidates": stats["candidates"], "f746_after": _fit(best.data, work, f"{name}-{res}-p")})
    if qemu and (name, res) in QEMU_MODELS:
        try:
            tb, ta = _qemu_ticks(data, work, f"q-{name}-{res}"), _qemu_ticks(best.data, work, f"q-{name}-{res}-p")
        except Exception as exc:  # noqa: BLE001 - a model the QEMU board cannot hold: recorded, not fatal
            row["qemu_skipped"] = str(exc).splitlines()[0][:200]
        else:
            if tb and ta:
                row["qemu_ticks"] = {"before": tb, "after": ta, "latency_ratio": round(ta / tb, 4)}
    row["seconds"] = round(time.time() - t0, 1)
    return row, data, best.data


def _add_floor(row: dict, data: bytes) -> None:
    """The lower bound on any split/grid within 20 % MACs (original tail + max(input, live bytes after the
    split)): a computed property of the model, so rows kept by --resume get it too."""
    f = arena_floor(data, 0.2, "cortex-m7")
    row["floor"] = {**f, "fits_f746_arena_budget": f["arena_floor"] <= row["f746_before"]["arena_budget"]}


def plot(before: bytes, after: bytes, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 1, figsize=(12, 6), sharey=True)
    for ax, data, lab in ((axes[0], before, "original"), (axes[1], after, "patched")):
        a = analyzer.analyze(data, "cortex-m7")
        ax.bar(range(len(a.ops)), [o.high_water / 1024 for o in a.ops], color="tab:blue", label="head high-water")
        ax.bar(range(len(a.ops)), [o.live_bytes / 1024 for o in a.ops], color="tab:orange", alpha=0.7,
               label="live activations")
        ax.axhline(a.arena_bytes / 1024, color="red", ls="--", label=f"arena {a.arena_bytes / 1024:.0f} KiB (head+tail)")
        ax.set_title(f"{title}: {lab}, {len(a.ops)} ops")
        ax.set_ylabel("KiB")
        ax.legend(loc="upper right", fontsize=8)
    axes[1].set_xlabel("operator")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="native resolutions only, no QEMU")
    ap.add_argument("--no-qemu", action="store_true")
    ap.add_argument("--resume", action="store_true", help="keep the rows already in patch.json, run the rest")
    ap.add_argument("--redo", action="append", default=[], metavar="MODEL@RES",
                    help="with --resume: run this row again (e.g. a QEMU figure that was skipped); repeatable")
    args = ap.parse_args()
    try:
        redo = {(m, int(r)) for m, r in (x.rsplit("@", 1) for x in args.redo)}
    except ValueError:
        raise SystemExit("error: --redo wants MODEL@RES, e.g. mcunet-in1@96") from None
    jobs = [(n, zoo.MODELS[n]["resolution"]) for n in sorted(zoo.MODELS)]
    if not args.quick:   # the F746 sweep first: it answers the fit questions
        jobs = [(n, r) for n, rs in SWEEP.items() for r in rs] + [j for j in jobs if j[0] not in SWEEP]
        jobs += [(n, zoo.MODELS[n]["resolution"]) for n in SWEEP if (n, zoo.MODELS[n]["resolution"]) not in jobs]
    out = RESULTS / "patch.json"
    rows = json.loads(out.read_text())["rows"] if args.resume and out.is_file() else []
    unknown = redo - set(jobs)
    if unknown:
        raise SystemExit(f"error: --redo {', '.join(f'{m}@{r}' for m, r in sorted(unknown))}: not a row of this bench")
    order = {j: i for i, j in enumerate(jobs)}
    rows = [r for r in rows if (r["model"], r["resolution"]) not in redo]
    done = {(r["model"], r["resolution"]) for r in rows}
    jobs = [j for j in jobs if j not in done]
    with tempfile.TemporaryDirectory(prefix="patch-bench-") as d:
        work = Path(d)
        for row in (r for r in rows if "floor" not in r):
            _add_floor(row, _model(row["model"], row["resolution"], work))
        if rows:
            atomic_write(out, json.dumps({"rows": rows, "summary": summary(rows)}, indent=1) + "\n")
        for name, res in jobs:
            row, before, after = bench_one(name, res, work, qemu=not (args.quick or args.no_qemu))
            rows.append(row)
            rows.sort(key=lambda r: order.get((r["model"], r["resolution"]), len(order)))
            print(json.dumps({k: row.get(k) for k in ("model", "resolution", "arena_before", "arena_after",
                                                      "mac_overhead", "patch_grid", "refused")}), flush=True)
            if (name, res) == PLOT and after:
                plot(before, after, RESULTS / f"patch_{name}_{res}.png", f"{name} @{res}")
            atomic_write(out, json.dumps({"rows": rows, "summary": summary(rows)}, indent=1) + "\n")


def summary(rows: list[dict]) -> dict:
    s: dict = {}
    for name, rs in SWEEP.items():
        pts = sorted((r for r in rows if r["model"] == name), key=lambda r: r["resolution"])
        s[name] = {"largest_f746_ram_fit_without": max((r["resolution"] for r in pts if r["f746_before"]["fits_ram"]),
                                                       default=None),
                   "largest_f746_ram_fit_with_patching": max(
                       (r["resolution"] for r in pts if (r.get("f746_after") or r["f746_before"])["fits_ram"]),
                       default=None), "resolutions": [r["resolution"] for r in pts]}
    done = [r for r in rows if "reduction" in r]
    s["best_reduction_cortex_m7"] = max((r["reduction"]["cortex-m7"] for r in done), default=None)
    s["best_reduction_ceiling_cortex_m7"] = max((r["floor"]["reduction_ceiling"] for r in rows if "floor" in r),
                                                default=None)
    s["f746_unreachable_by_any_patching"] = [f"{r['model']}@{r['resolution']}" for r in rows
                                             if "floor" in r and not r["floor"]["fits_f746_arena_budget"]]
    s["all_bit_exact"] = all(r["bit_exact"] for r in done)
    s["analyzer_host_exact"] = all(r["host_measured_after"] == r["arena_after"]["host"] for r in done)
    return s


if __name__ == "__main__":
    main()
