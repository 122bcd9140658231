"""Converter-stage subcommands: `convert`, `evaluate` (conversion) and `analyze`, `check`, `optimize`, `fit`
(memory). Only stdlib at import time; each handler imports what it needs."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..common import cliargs as ca
from ..common.errors import UserError
from ..common.fsio import atomic_write

# = converter.analyzer.facts.TARGETS (kept literal: this module imports only the stdlib)
TARGET_CHOICES = ["cortex-m7", "cortex-m4", "cortex-m33", "cortex-m55", "host"]
TARGET_HELP = ("memory model: 'cortex-m7' = 32-bit TFLM + CMSIS-NN (DSP, GCC) with the plain MicroInterpreter "
               "(firmware); 'cortex-m4', 'cortex-m33' = the same ABI and CMSIS-NN DSP path; 'cortex-m55' = "
               "CMSIS-NN's MVE path (other scratch buffers); 'host' = the x86-64 tflite-micro Python wheel "
               "(reference kernels, recording allocator)")


ALLOW_ESTIMATE_HELP = ("accept an estimated arena when the analyzer does not model an op's kernel allocations "
                       "(without it such a model is an error, exit 2: the gate never claims a figure it cannot compute)")


def _size(text: str) -> str:
    """--sram/--flash/--reserve: checked while parsing ('320K', '1M', bytes); handlers parse it again."""
    from .budget import parse_size
    try:
        parse_size(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


CALIB_HELP = (".onnx input: NHWC float32 .npy calibration inputs (normalised); default: random-normal inputs, "
              "and the output says the figures come from random calibration")


def _tflite_input(path: str, calib_data: str | None) -> tuple[str, dict | None]:
    """(the .tflite to analyze, the ONNX provenance or None): an .onnx goes through the converter."""
    from . import onnx_input
    if not onnx_input.is_onnx(path):
        if calib_data:
            raise UserError("--calib-data applies to .onnx models only")
        return path, None
    if calib_data:
        ca.check_input_file(calib_data, "--calib-data")
    return onnx_input.to_tflite(path, calib_data)


def register(sub) -> None:
    p = sub.add_parser(
        "convert",
        help="PyTorch model.pt (or a zoo model) -> full-int8 TFLite + model.json accuracy report",
        description="Convert a trained checkpoint to an int8 TFLite model for TFLM (PyTorch -> ONNX -> "
        "onnx2tf -> full-integer quantization with int8 input/output, per-channel int8 weights), offline. "
        "Writes OUT and OUT's .json report (input/output quantization, op histogram, weight/file bytes, "
        "MACs, float/int8/TFLM top-1, agreement). With --zoo, converts a random-weight zoo model "
        "(random-normal calibration, no accuracy) for memory studies.",
        epilog="examples:\n  netaug-mcu convert runs/demo/model.pt --out build/model.tflite\n"
        "  netaug-mcu convert --zoo mcunet-in1 --resolution 96 --channels 3 --classes 10 --out build/in1.tflite",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", nargs="?", help="model.pt written by `netaug-mcu train`")
    p.add_argument("--out", "-o", required=True, help="output .tflite path (the report goes next to it, .json)")
    p.add_argument("--zoo", metavar="NAME", help="convert a random-weight zoo model instead of a checkpoint")
    p.add_argument("--resolution", type=ca.RESOLUTION, help="--zoo: input resolution (default: the model's own)")
    p.add_argument("--channels", type=ca.CHANNELS, default=3, help="--zoo: input channels (default 3)")
    p.add_argument("--classes", type=ca.CLASSES, default=10, help="--zoo: number of classes (default 10)")
    p.add_argument("--calib-samples", type=ca.COUNT, default=None,
                   help="calibration images from the training split (default 300; --zoo: 32 random inputs)")
    p.add_argument("--calib-data", metavar="NPY",
                   help="use this NHWC float32 .npy (already normalised) for calibration instead")
    p.add_argument("--eval-samples", type=ca.COUNT, default=None,
                   help="test images for the float/int8/TFLM comparison (default 1000, 0 = skip; "
                   "--zoo: random inputs, default 10)")
    p.add_argument("--dataset", help="dataset for calibration/evaluation (default: the checkpoint's; "
                   "fashion-mnist or an ImageFolder path)")
    p.add_argument("--no-cache", action="store_true", help="--zoo: ignore the conversion cache")
    p.add_argument("--softmax", action="store_true",
                   help="end the model in an int8 SOFTMAX so it outputs probabilities (scale 1/256) instead of "
                   "logits: what the MLPerf Tiny runner's accuracy mode expects; top-1 is unchanged")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    p.set_defaults(func=_convert, extra="convert")
    ca.declare_paths(p, inputs=("checkpoint", "calib_data"), out_files=("out",))

    e = sub.add_parser(
        "evaluate",
        help="evaluate any int8 .tflite with tf.lite and the TFLM host interpreter",
        description="Top-1 of an int8 TFLite model with tf.lite (LiteRT) and TFLM on the host, their agreement "
        "and max logit difference, and whether TFLM is bit-exact with tf.lite's reference kernels. Inputs are "
        "prepared with netaug_mcu.common.preprocess (the same code the HIL host uses).")
    e.add_argument("model", help=".tflite file")
    e.add_argument("--dataset", default="fashion-mnist", help="fashion-mnist (default) or an ImageFolder path")
    e.add_argument("--eval-samples", type=ca.COUNT, default=1000, help="number of test images (default 1000, 0 = all)")
    e.add_argument("--preprocess", metavar="JSON",
                   help="model.json whose 'preprocess' to use (default: MODEL's .json if present, else "
                   "resize to the input size, pixels in [0,1])")
    e.add_argument("--out", help="also write the report to this .json file")
    e.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    e.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    e.set_defaults(func=_evaluate, extra="convert")
    ca.declare_paths(e, inputs=("model", "preprocess"), out_files=("out",))

    p = sub.add_parser(
        "analyze", help="exact TFLM arena (head+tail), flash estimate and per-op memory of a .tflite",
        description="Simulate TFLM's AllocateTensors() for an int8 .tflite: greedy-planned activations and kernel "
                    "scratch (head), persistent structs (tail), plus a flash estimate. arena_bytes equals "
                    "MicroInterpreter::arena_used_bytes() for a 16-byte aligned arena.")
    p.add_argument("model", help=".tflite file, or an .onnx model (converted with the project's converter; "
                   "needs the 'convert' extra)")
    p.add_argument("--calib-data", metavar="NPY", help=CALIB_HELP)
    p.add_argument("--target", default="cortex-m7", choices=TARGET_CHOICES, help=TARGET_HELP)
    p.add_argument("--json", action="store_true", help="print JSON (arena_bytes, head_bytes, tail_bytes, "
                                                       "flash_bytes, peak_op, ops) instead of the table")
    p.add_argument("--plot", metavar="PNG", help="write per-op memory as stacked bars with the budget line")
    p.add_argument("--layers", action="store_true", help="per-layer profile: op, shapes, MACs, params, weight "
                   "bytes, activation bytes, arena high-water at that op (table; with --json: a 'layers' list "
                   "and 'layer_totals' added to the JSON)")
    p.add_argument("--board", default="stm32f746g-disco", help="board whose SRAM budget the plot shows "
                                                              "(default stm32f746g-disco)")
    p.add_argument("--reserve", type=_size, help="RAM kept for stack/heap/firmware (default 16K+4K+8K)")
    p.add_argument("--allow-estimate", action="store_true", help=ALLOW_ESTIMATE_HELP)
    p.set_defaults(func=cmd_analyze)
    ca.declare_paths(p, inputs=("model",), out_files=("plot",))

    p = sub.add_parser(
        "check", help="CI gate: does the model fit a board's SRAM and flash? exit 0 fits, 1 over, 2 invalid",
        description="Check a .tflite against a board budget: arena (exact TFLM model) + reserve <= SRAM and "
                    "model + code <= flash. Exit 0 = fits, 1 = over budget (by how much, the peak op, what "
                    "would help), 2 = invalid input. --all-boards: one row per board of the database (fits / over "
                    "by N B on SRAM or flash / unsupported core), sorted, and the smallest board that fits; exit 0 "
                    "when at least one board fits. A .onnx model is converted first (see analyze).")
    p.add_argument("model", nargs="*", help=".tflite (or .onnx) file(s) (several: e.g. from a pre-commit hook)")
    p.add_argument("--board", default=None, help="board profile (default stm32f746g-disco unless --sram/--flash "
                                                  "are both given); see --list-boards")
    p.add_argument("--sram", type=_size, help="override SRAM available to the arena region, e.g. 320K")
    p.add_argument("--flash", type=_size, help="override flash size, e.g. 1M")
    p.add_argument("--reserve", type=_size, help="RAM kept for stack, heap and firmware .data/.bss (default 28K = 16K stack "
                                     "+ 4K heap + 8K firmware)")
    p.add_argument("--target", default=None, choices=TARGET_CHOICES, help="memory model (default: the "
                                                                                  "board's)")
    p.add_argument("--json", dest="json_out", metavar="F", nargs="?", const="-",
                   help="write the result as JSON to F ('-' or no F = stdout)")
    p.add_argument("--junit", metavar="F", help="write a JUnit XML report to F (for CI test reporting)")
    p.add_argument("--all-boards", action="store_true", help="check against every board of the database")
    p.add_argument("--calib-data", metavar="NPY", help=CALIB_HELP)
    p.add_argument("--list-boards", action="store_true", help="list board profiles (no model needed; with "
                                                              "--json: the database as JSON) and exit")
    p.add_argument("--sdram", action="store_true", help="let the arena/input buffer use the board's external "
                   "SDRAM (stm32f746g-disco: 8 MB at 0xC0000000, `firmware --sdram` initialises it)")
    p.add_argument("--allow-estimate", action="store_true", help=ALLOW_ESTIMATE_HELP)
    p.set_defaults(func=cmd_check)
    ca.declare_paths(p, out_files=("json_out", "junit"))  # models: checked by cmd_check (not for --list-boards)

    p = sub.add_parser(
        "optimize", help="reorder operators to minimise the TFLM arena (Liberis & Lane), verified",
        description="Find the operator order with the smallest peak memory (exact search over topological "
                    "orders, as in tflite-tools, extended to tensors with several consumers), pick the order "
                    "whose exact TFLM arena is smallest, rewrite the flatbuffer, and verify that TFLM outputs "
                    "are unchanged and the measured arena is not larger.")
    p.add_argument("model", help=".tflite file")
    p.add_argument("--out", required=True, help="output .tflite")
    p.add_argument("--target", default="cortex-m7", choices=TARGET_CHOICES, help=TARGET_HELP)
    p.add_argument("--no-verify", action="store_true", help="skip running both models in the TFLM wheel")
    _patch_args(p)
    p.set_defaults(func=cmd_optimize)
    ca.declare_paths(p, inputs=("model",), out_files=("out",))

    p = sub.add_parser(
        "fit", help="largest input resolution of a zoo model that fits a board (SRAM and flash)",
        description="Convert a zoo model (random weights, int8, cached) at decreasing resolutions and report "
                    "the largest multiple of --step that fits the board.")
    p.add_argument("--zoo", required=True, help="zoo architecture name, e.g. mcunet-in1")
    p.add_argument("--board", default="stm32f746g-disco", help="board profile")
    p.add_argument("--sram", type=_size), p.add_argument("--flash", type=_size), p.add_argument("--reserve", type=_size)
    p.add_argument("--channels", type=ca.CHANNELS, default=3)
    p.add_argument("--classes", type=ca.CLASSES, default=10)
    p.add_argument("--step", type=int, default=16, choices=[8, 16], help="resolution multiple (default 16)")
    p.add_argument("--min-res", type=ca.RESOLUTION, default=32)
    p.add_argument("--max-res", type=ca.RESOLUTION, default=256)
    p.add_argument("--target", default=None, choices=TARGET_CHOICES, help=TARGET_HELP)
    p.add_argument("--json", dest="json_out", metavar="F", help="write the search table as JSON")
    p.add_argument("--patch", action="store_true", help="also the largest resolution that fits after "
                   "`optimize --patch auto` (patch-based inference of the first stage)")
    p.add_argument("--max-overhead", type=ca.number(0), default=0.2, help="--patch: MAC overhead limit (default 0.2)")
    p.set_defaults(func=cmd_fit, extra="convert")
    ca.declare_paths(p, out_files=("json_out",))


def _emit(rep: dict, as_json: bool) -> None:
    if as_json:
        json.dump(rep, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        from .evaluate import print_report

        print_report(rep)


def _convert(args) -> int:
    from .errors import ConvertError

    if args.zoo and args.checkpoint:
        raise ConvertError("give either a checkpoint or --zoo NAME, not both")
    if not args.zoo and not args.checkpoint:
        raise ConvertError("give a checkpoint (model.pt) or --zoo NAME")
    for name in ("calib_samples", "eval_samples", "resolution", "channels", "classes"):
        v = getattr(args, name)
        if v is not None and v < 0:
            raise ConvertError(f"--{name.replace('_', '-')} must be >= 0")
    if args.zoo and args.calib_data:
        raise ConvertError("--calib-data applies to checkpoints only")
    from ..common.locks import output_lock
    with output_lock(args.out, is_dir=False):
        rep = _convert_locked(args)
    _emit(rep, args.json)
    return 0


def _convert_locked(args) -> dict:
    from . import convert as cv

    if args.zoo:
        rep = cv.convert_zoo(args.zoo, args.resolution, args.channels, args.classes, args.out,
                             calib_samples=args.calib_samples or 32,
                             check_samples=10 if args.eval_samples is None else args.eval_samples,
                             quiet=args.quiet, use_cache=not args.no_cache, softmax=args.softmax)
        rep["title"] = f"{args.zoo} (random weights) -> {args.out}"
    else:
        rep = cv.convert_checkpoint(args.checkpoint, args.out,
                                    calib_samples=300 if args.calib_samples is None else args.calib_samples,
                                    eval_samples=1000 if args.eval_samples is None else args.eval_samples,
                                    dataset=args.dataset, calib_data=args.calib_data, softmax=args.softmax,
                                    quiet=args.quiet)
        rep["title"] = f"{args.checkpoint} -> {args.out}"
    return rep


def _evaluate(args) -> int:
    from . import convert as cv

    rep = cv.evaluate_model(args.model, dataset=args.dataset, eval_samples=args.eval_samples,
                            preprocess=args.preprocess, quiet=args.quiet)
    if args.out:
        atomic_write(args.out, json.dumps(rep, indent=2) + "\n")
    rep["title"] = f"evaluate {args.model}"
    _emit(rep, args.json)
    return 0


def cmd_analyze(args) -> int:
    from ..common.extras import require
    from . import analyzer, budget, memory_report
    if args.plot:
        require("plot", "analyze --plot")
    from ..common.tflite_model import load
    from . import layer_profile
    bud = budget.budget(args.board, reserve=args.reserve) if args.board else None  # bad --board: before work
    path, onnx_info = _tflite_input(args.model, args.calib_data)
    model = load(path)
    a = analyzer.analyze(model, args.target, board=args.board)
    require_exact(a, args.model, args.allow_estimate)
    if onnx_info:
        from . import onnx_input
        a.notes.append(onnx_input.note(onnx_info))
    rows = layer_profile.layers(model, a) if args.layers else None
    if args.plot:
        memory_report.plot_memory(a, args.plot, bud)
    if args.json:
        doc = memory_report.summary_json(a)
        if onnx_info:
            doc.update(onnx=onnx_info, notes=a.notes)
        if rows is not None:
            doc.update(layers=rows, layer_totals=layer_profile.totals(rows))
        print(json.dumps(doc, indent=1))
    else:
        if rows is not None:
            layer_profile.print_layers(rows, a, args.model)
            for n in a.notes if onnx_info else ():
                print(f"note: {n}")
        else:
            memory_report.print_table(a, args.model, bud)
        if args.plot:
            print(f"plot: {args.plot}")
    return 0


def require_exact(a, model_path: str, allow_estimate: bool) -> None:
    """The gate never claims an arena it cannot compute: unmodelled kernels need --allow-estimate."""
    if a.unmodelled_ops and not allow_estimate:
        raise UserError(f"{Path(model_path).name}: the kernel allocations of {', '.join(a.unmodelled_ops)} are "
                        f"not modelled, so the arena ({a.arena_bytes} B) would be an estimate, not the exact "
                        f"figure; pass --allow-estimate to accept an estimate")


def check_file(model_path: str, bud, target: str | None = None, allow_estimate: bool = False) -> dict:
    """`check` of one .tflite: parse once, analyze once, the gate's verdict as the JSON document."""
    from ..common import placement
    from ..common.tflite_model import load
    from . import analyzer, budget
    from ..common.tflm_ops import require_supported
    model = load(model_path)
    require_supported(model, Path(model_path).name)
    a = analyzer.analyze(model, target or bud.target, board=bud.board)
    require_exact(a, model_path, allow_estimate)
    return budget.check(a, bud, model_path, model.data, input_bytes=placement.input_buffer_bytes(model)).to_json()


def _check_one(model: str, bud, args) -> dict:
    path, onnx_info = _tflite_input(model, args.calib_data)
    res = check_file(path, bud, args.target, args.allow_estimate)
    if onnx_info:
        from . import onnx_input
        res.update(model=model, onnx=onnx_info)
        res["notes"].append(onnx_input.note(onnx_info))
        print(f"note: {onnx_input.note(onnx_info)}", file=sys.stderr)
    return res


def _write_json(doc, dest: str | None) -> None:
    if dest == "-":
        print(json.dumps(doc, indent=1))
    elif dest:
        atomic_write(dest, json.dumps(doc, indent=1) + "\n")


def cmd_check(args) -> int:
    from ..common import boards
    from ..common.errors import UserError
    from . import board_sweep, budget, memory_report
    if args.list_boards:
        rows = board_sweep.list_boards()
        _write_json(rows, args.json_out)
        if args.json_out != "-":
            board_sweep.print_boards(rows)
        return 0
    if not args.model:
        raise UserError("give one or more .tflite files (or --list-boards)")
    for m in args.model:
        ca.check_input_file(m, "model")
    if args.all_boards:
        return _check_all_boards(args)
    board = args.board
    if board is None and not (args.sram and args.flash):
        board = "stm32f746g-disco"
    bud = budget.budget(board, args.sram, args.flash, args.reserve, external=args.sdram)
    if bud.target is None and not args.target:
        b = boards.get(board)
        raise UserError(f"board {board}: core {b.core} has no analyzer memory model ({b.kernels} kernels); "
                        f"--target cortex-m7 or host gives another core's figure")
    results = [_check_one(m, bud, args) for m in args.model]
    if board and not args.target and not boards.get(board).exact:
        for r in results:
            r["notes"].append(f"figure derived from the nearest exact target {bud.target} "
                              f"({boards.get(board).core} has no proven memory model of its own)")
    doc = results[0] if len(results) == 1 else results
    _write_json(doc, args.json_out)
    if args.junit:
        memory_report.write_junit(results, args.junit)
    if args.json_out != "-":
        for res in results:
            memory_report.print_check(res)
            for note in res["notes"] if args.allow_estimate else ():
                print(f"  note: {note}")
    return 0 if all(r["fits"] for r in results) else 1


def _patch_args(p) -> None:
    p.add_argument("--patch", metavar="auto|RxC", help="patch-based inference: run the first stage patch by patch "
                   "(STRIDED_SLICE + PAD + VALID convs + CONCATENATION, stock TFLM ops), grid chosen automatically "
                   "or RxC; verified bit-exact in host TFLM on 100 inputs")
    p.add_argument("--max-overhead", type=ca.number(0), default=0.2, help="--patch: largest MAC overhead from halo "
                   "recomputation, as a fraction (default 0.2 = 20 %%)")
    p.add_argument("--offline-plan", action="store_true", help="also write an OfflineMemoryAllocation arena plan "
                   "(tensor offsets TFLM honours; never larger than TFLM's greedy plan on cortex-m7 and host)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def _check_all_boards(args) -> int:
    from ..common.errors import UserError
    from . import board_sweep, memory_report
    given = [f"--{n}" for n in ("board", "sram", "flash", "target") if getattr(args, n)] + \
        (["--sdram"] if args.sdram else [])
    if given:
        raise UserError(f"--all-boards uses each board's own budget and target: drop {', '.join(given)}")
    docs = []
    for m in args.model:
        path, onnx_info = _tflite_input(m, args.calib_data)
        doc = board_sweep.sweep(path, reserve=args.reserve, allow_estimate=args.allow_estimate)
        if onnx_info:
            from . import onnx_input
            doc.update(model=m, onnx=onnx_info, notes=doc["notes"] + [onnx_input.note(onnx_info)])
            print(f"note: {onnx_input.note(onnx_info)}", file=sys.stderr)
        docs.append(doc)
    _write_json(docs[0] if len(docs) == 1 else docs, args.json_out)
    if args.junit:
        memory_report.write_junit_sweep(docs, args.junit)
    if args.json_out != "-":
        for d in docs:
            board_sweep.print_sweep(d)
    return 0 if all(d["smallest_fit"] for d in docs) else 1


def cmd_optimize(args) -> int:
    from ..common.extras import require
    if args.patch or args.offline_plan:
        require("tflm", "optimize --patch/--offline-plan (the rewrite and its bit-exactness check in host TFLM)")
        from .patching.cli import run_optimize
        return run_optimize(args)
    from . import reorder
    if not args.no_verify:
        require("tflm", "optimize (verification in the TFLM wheel; --no-verify skips it)")
    rep = reorder.optimize_file(args.model, args.out, target=args.target, verify=not args.no_verify)
    if args.json:
        print(json.dumps(rep, indent=1))
        return 0
    print(f"{Path(args.model).name}: arena {rep['arena_before']:,} -> {rep['arena_after']:,} B "
          f"({rep['arena_before'] - rep['arena_after']:,} B saved, target {args.target}); "
          f"schedule peak {rep['peak_before']:,} -> {rep['peak_after']:,} B; order changed: {rep['changed']}")
    if rep.get("verified"):
        v = rep["verified"]
        print(f"verified in the TFLM wheel: outputs identical on {v['inputs']} inputs; measured arena "
              f"{v['measured_before']:,} -> {v['measured_after']:,} B")
    print(f"wrote {args.out}")
    return 0


def cmd_fit(args) -> int:
    from ..trainer import zoo
    from . import budget, fit
    if args.zoo not in zoo.MODELS:  # before any conversion
        raise UserError(f"unknown zoo model {args.zoo!r} (choose from: {', '.join(zoo.MODELS)})")
    if args.max_res < args.min_res:
        raise UserError(f"--max-res {args.max_res} is below --min-res {args.min_res}")
    budget.budget(args.board, args.sram, args.flash, args.reserve)  # an unknown --board fails now
    res = fit.fit_zoo(args.zoo, board=args.board, sram=args.sram, flash=args.flash, reserve=args.reserve,
                      channels=args.channels, classes=args.classes, step=args.step, min_res=args.min_res,
                      max_res=args.max_res, target=args.target, patch=args.patch, max_overhead=args.max_overhead)
    if args.json_out:
        atomic_write(args.json_out, json.dumps(res, indent=1) + "\n")
    if args.patch:
        pb = res["best_patched"]
        if pb:
            how = f"patch grid {pb['patch_grid']} up to op {pb['split_op']}, +{pb['mac_overhead']:.1%} MACs" \
                if pb.get("patched") else "no patching needed"
            print(f"{args.zoo}: with patching: {res['best_resolution_patched']} ({how}; arena "
                  f"{pb['min_arena_bytes']:,} B of {res['arena_budget']:,} B)")
        else:
            print(f"{args.zoo}: with patching: no resolution >= {args.min_res} fits {res['board']}")
    if res["best_resolution"] is None:
        print(f"{args.zoo}: no resolution >= {args.min_res} fits {res['board']}", file=sys.stderr)
        return 0 if args.patch and res["best_patched"] else 1
    print(f"{args.zoo}: largest fitting resolution on {res['board']}: {res['best_resolution']} "
          f"(arena {res['best']['min_arena_bytes']:,} B of {res['arena_budget']:,} B, flash "
          f"{res['best']['flash_bytes']:,} B of {res['flash_budget']:,} B)")
    return 0
