"""`convert` and `evaluate` subcommands. Only stdlib at import time; heavy imports in handlers."""
from __future__ import annotations

import argparse
import json
import sys


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
    p.add_argument("--resolution", type=int, help="--zoo: input resolution (default: the model's own)")
    p.add_argument("--channels", type=int, default=3, help="--zoo: input channels (default 3)")
    p.add_argument("--classes", type=int, default=10, help="--zoo: number of classes (default 10)")
    p.add_argument("--calib-samples", type=int, default=None,
                   help="calibration images from the training split (default 300; --zoo: 32 random inputs)")
    p.add_argument("--calib-data", metavar="NPY",
                   help="use this NHWC float32 .npy (already normalised) for calibration instead")
    p.add_argument("--eval-samples", type=int, default=None,
                   help="test images for the float/int8/TFLM comparison (default 1000, 0 = skip; "
                   "--zoo: random inputs, default 10)")
    p.add_argument("--dataset", help="dataset for calibration/evaluation (default: the checkpoint's; "
                   "fashion-mnist or an ImageFolder path)")
    p.add_argument("--no-cache", action="store_true", help="--zoo: ignore the conversion cache")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    p.set_defaults(func=_convert)

    e = sub.add_parser(
        "evaluate",
        help="evaluate any int8 .tflite with tf.lite and the TFLM host interpreter",
        description="Top-1 of an int8 TFLite model with tf.lite (LiteRT) and TFLM on the host, their agreement "
        "and max logit difference, and whether TFLM is bit-exact with tf.lite's reference kernels. Inputs are "
        "prepared with converter.datasets (the same code the HIL tests use).")
    e.add_argument("model", help=".tflite file")
    e.add_argument("--dataset", default="fashion-mnist", help="fashion-mnist (default) or an ImageFolder path")
    e.add_argument("--eval-samples", type=int, default=1000, help="number of test images (default 1000, 0 = all)")
    e.add_argument("--preprocess", metavar="JSON",
                   help="model.json whose 'preprocess' to use (default: MODEL's .json if present, else "
                   "resize to the input size, pixels in [0,1])")
    e.add_argument("--out", help="also write the report to this .json file")
    e.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    e.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    e.set_defaults(func=_evaluate)


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
    from . import convert as cv

    if args.zoo:
        if args.calib_data:
            raise ConvertError("--calib-data applies to checkpoints only")
        rep = cv.convert_zoo(args.zoo, args.resolution, args.channels, args.classes, args.out,
                             calib_samples=args.calib_samples or 32,
                             check_samples=10 if args.eval_samples is None else args.eval_samples,
                             quiet=args.quiet, use_cache=not args.no_cache)
        rep["title"] = f"{args.zoo} (random weights) -> {args.out}"
    else:
        rep = cv.convert_checkpoint(args.checkpoint, args.out,
                                    calib_samples=300 if args.calib_samples is None else args.calib_samples,
                                    eval_samples=1000 if args.eval_samples is None else args.eval_samples,
                                    dataset=args.dataset, calib_data=args.calib_data, quiet=args.quiet)
        rep["title"] = f"{args.checkpoint} -> {args.out}"
    _emit(rep, args.json)
    return 0


def _evaluate(args) -> int:
    from . import convert as cv

    rep = cv.evaluate_model(args.model, dataset=args.dataset, eval_samples=args.eval_samples,
                            preprocess=args.preprocess, quiet=args.quiet)
    if args.out:
        from pathlib import Path

        cv._check_writable(Path(args.out))
        cv._atomic_write({Path(args.out): (json.dumps(rep, indent=2) + "\n").encode()})
    rep["title"] = f"evaluate {args.model}"
    _emit(rep, args.json)
    return 0
