"""PyTorch checkpoint / zoo model -> full-int8 TFLite + model.json report.

Route: torch.onnx.export (legacy, opset 13) -> onnxsim + TF-SAME padding surgery
(converter.onnx_export) -> onnx2tf 1.29 graph translation + one full-integer TFLite conversion in an
offline subprocess (converter.quantize) -> checks (TFLM ops, no PAD/TRANSPOSE, int8 I/O) ->
evaluation: float (torch), int8 (tf.lite/LiteRT), TFLM host, on inputs prepared by
netaug_mcu.common.preprocess (the numpy path the HIL host uses too).

Python API used by other stages:
  convert_checkpoint(model_pt, out_tflite, calib_samples=300, eval_samples=1000, softmax=False) -> report dict
  convert_zoo(name, resolution, channels, classes, out_tflite, softmax=False) -> report dict (cached by arguments)
softmax=True ends the graph in an int8 SOFTMAX (output scale 1/256, zero point -128), so the device returns
probabilities: what the MLPerf Tiny runner expects (it divides each result vector by its sum).
  evaluate_model(tflite_path, dataset="fashion-mnist", eval_samples=1000, preprocess=None) -> report
The report is also written as `<out stem>.json` next to the .tflite (model.tflite -> model.json).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..common.artifacts import MODEL_JSON, model_json_path
from ..common.datasets import FASHION_MNIST, image_folder_split, is_fashion_mnist, load_split, scan_image_folder
from ..common.fsio import atomic_write_many, check_writable
from ..common.paths import cache_root
from ..common.preprocess import preprocess as prep
from .errors import ConvertError

CONVERTER_VERSION = 1          # bump when the conversion route changes (invalidates caches)
CALIB_SEED = 0


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(f"[convert] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- checkpoint

def load_checkpoint(model_pt: str | os.PathLike):
    """-> (torch model in eval mode, checkpoint dict). Bad files raise a one-line UserError."""
    from ..trainer import model_file

    ckpt = model_file.read(model_pt, "checkpoint")
    return model_file.build(ckpt, model_pt), ckpt


# ---------------------------------------------------------------- core

def with_softmax(model):
    """`model` followed by a softmax over the classes (converted to one int8 SOFTMAX op).

    Top-1 is unchanged (softmax is monotonic); only the output's meaning changes: probabilities, not logits.
    """
    import torch

    class _WithSoftmax(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.arch = getattr(inner, "arch", None)

        def forward(self, x):
            return torch.softmax(self.inner(x), dim=1)

    return _WithSoftmax(model).eval()


def _check_softmax_tail(summary, softmax: bool) -> str:
    """-> the output activation recorded in model.json; a --softmax model must end in an int8 SOFTMAX."""
    if not softmax:
        return "logits"
    last = summary.ops[-1].name if summary.ops else None
    if last != "SOFTMAX":
        raise ConvertError(f"--softmax: the converted graph ends in {last}, not SOFTMAX")
    return "softmax"


def _float_logits(model, inputs_nhwc: np.ndarray, batch: int = 256) -> np.ndarray:
    import torch

    outs = []
    with torch.no_grad():
        for i in range(0, len(inputs_nhwc), batch):
            x = torch.from_numpy(np.ascontiguousarray(inputs_nhwc[i:i + batch].transpose(0, 3, 1, 2)))
            outs.append(model(x).float().numpy())
    return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for pkg in ("torch", "onnx", "onnx2tf", "tensorflow-cpu", "tflite-micro", "ai-edge-litert"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def convert_module(model, preprocess: dict, out_tflite: str | os.PathLike, *,
                   calib: np.ndarray, eval_inputs: np.ndarray | None = None,
                   eval_labels: np.ndarray | None = None, extra: dict | None = None,
                   quant_type: str = "per-channel", forbid_ops=("PAD", "PADV2", "TRANSPOSE"),
                   ref_check_samples: int = 1000, softmax: bool = False, quiet: bool = False) -> dict:
    """Convert an nn.Module (NCHW float input) to int8 TFLite at `out_tflite` + report json.

    calib: normalised NHWC float32 calibration inputs; eval_inputs: normalised NHWC float32 inputs
    (labels optional) for the float/int8/TFLM comparison; softmax: append an int8 SOFTMAX (see with_softmax).
    Returns the report dict.
    """
    from .evaluate import evaluate_tflite
    from .onnx_export import prepare_onnx
    from .quantize import onnx_to_int8_tflite
    from ..common.tflite_model import load as load_tflite
    from ..common.tflm_ops import require_supported
    from .graph_checks import attach_origins, check_int8_io, check_tflm_compatible

    out = Path(out_tflite)
    check_writable(out)
    res = int(preprocess["resolution"])
    ch = int(preprocess["channels"])
    want = (res, res, ch)
    calib = np.asarray(calib)
    if calib.ndim != 4 or tuple(calib.shape[1:]) != want or calib.shape[0] < 1:
        raise ConvertError(f"calibration data of the wrong shape: {tuple(calib.shape)}, expected "
                           f"[N,{res},{res},{ch}] (NHWC, normalised float32)")
    if not np.all(np.isfinite(calib)):
        raise ConvertError("calibration data contains NaN/inf")
    t0 = time.time()
    from .onnx_export import OPSET

    if softmax:
        model = with_softmax(model)
    _log(f"exporting ONNX (opset {OPSET}, input [1,{ch},{res},{res}])", quiet)
    proto, surgery = prepare_onnx(model, (1, ch, res, res))
    _log(f"onnx2tf -> full-integer int8 TFLite ({len(calib)} calibration samples)", quiet)
    tfl, layer_map, _ = onnx_to_int8_tflite(proto, calib.astype(np.float32), quant_type=quant_type,
                                            simplified=bool(surgery.get("onnxsim")))
    summary = load_tflite(tfl)
    attach_origins(summary, layer_map)
    check_tflm_compatible(summary, forbid=frozenset(forbid_ops))
    check_int8_io(summary)
    output_activation = _check_softmax_tail(summary, softmax)
    conv_seconds = round(time.time() - t0, 2)
    _log(f"converted in {conv_seconds:.1f} s: {len(tfl):,} bytes, ops {summary.op_histogram}", quiet)

    rep: dict[str, Any] = {"format": MODEL_JSON, "model_file": out.name}
    rep.update(extra or {})
    rep["input"] = summary.io("input")
    rep["output"] = summary.io("output")
    rep["output_activation"] = output_activation  # "logits" or "softmax" (probabilities, scale 1/256)
    rep["preprocess"] = dict(preprocess)
    rep["op_histogram"] = summary.op_histogram
    rep["tflm_ops"] = sorted(summary.op_histogram)
    rep["ops"] = [{"index": o.index, "op": o.name, "macs": o.macs, "layer": o.origin} for o in summary.ops]
    rep["weight_bytes"] = summary.tensor_data_bytes
    rep["file_bytes"] = len(tfl)
    rep["macs"] = summary.macs
    rep["calib_samples"] = int(len(calib))
    rep["quantization"] = {"weights": f"int8 {quant_type} (FULLY_CONNECTED per-tensor)", "activations": "int8",
                           "bias": "int32",
                           "input": "int8", "output": "int8"}
    rep["onnx_surgery"] = surgery
    rep["conversion_seconds"] = conv_seconds
    rep["versions"] = _versions()
    for k in ("float_top1", "int8_top1", "tflm_top1"):
        rep.setdefault(k, None)
    if eval_inputs is not None and len(eval_inputs):
        _log(f"evaluating {len(eval_inputs)} samples: torch float, tf.lite int8, TFLM host", quiet)
        fl = _float_logits(model, np.asarray(eval_inputs, np.float32))
        ev = evaluate_tflite(tfl, np.asarray(eval_inputs, np.float32), eval_labels, fl,
                             ref_check_samples=ref_check_samples, quiet=quiet)
        if eval_labels is None:
            for k in ("float_top1", "int8_top1", "tflm_top1"):
                ev.pop(k, None)
        rep.update(ev)
        if not ev["tflm_vs_tflite_ref"]["bit_exact"]:
            _log("WARNING: TFLM output differs from tf.lite reference kernels", quiet)
    else:
        rep["eval_samples"] = 0
    rep["total_seconds"] = round(time.time() - t0, 2)
    atomic_write_many({out: tfl, model_json_path(out): (json.dumps(rep, indent=2) + "\n").encode()})
    _log(f"wrote {out} and {model_json_path(out)}", quiet)
    return rep


# ---------------------------------------------------------------- data

def _check_classes(classes, num_classes: int | None, dataset) -> None:
    """A data set must have the model's classes (a 1-class folder for a 10-class model is an error)."""
    if num_classes is not None and classes is not None and len(classes) != int(num_classes):
        raise ConvertError(f"dataset {dataset} has {len(classes)} classes but the model has {num_classes} outputs")


def calibration_inputs(preprocess: dict, n: int, dataset: str | None = None, seed: int = CALIB_SEED,
                       num_classes: int | None = None) -> np.ndarray:
    """`n` training images (seeded random subset), preprocessed -> NHWC float32."""
    ds = dataset or preprocess.get("dataset") or FASHION_MNIST
    x, _, classes = load_split(ds, "train", int(preprocess["channels"]))
    _check_classes(classes, num_classes, ds)
    idx = np.random.default_rng(seed).permutation(len(x))[:n]
    return prep(x[np.sort(idx)], preprocess)


def evaluation_inputs(preprocess: dict, n: int, dataset: str | None = None, num_classes: int | None = None):
    """First `n` test images -> (NHWC float32 inputs, labels, class names)."""
    ds = dataset or preprocess.get("dataset") or FASHION_MNIST
    x, y, classes = load_split(ds, "test", int(preprocess["channels"]))
    _check_classes(classes, num_classes, ds)
    n = len(x) if n is None or n <= 0 else min(n, len(x))
    return prep(x[:n], preprocess), y[:n], classes


# ---------------------------------------------------------------- public entry points

def convert_checkpoint(model_pt: str | os.PathLike, out_tflite: str | os.PathLike, calib_samples: int = 300,
                       eval_samples: int = 1000, dataset: str | None = None,
                       calib_data: str | os.PathLike | np.ndarray | None = None, softmax: bool = False,
                       quiet: bool = False) -> dict:
    """Trainer checkpoint (model.pt) -> int8 TFLite + model.json with float/int8/TFLM accuracies."""
    if calib_samples < 1 and calib_data is None:
        raise ConvertError("--calib-samples must be >= 1")
    check_writable(Path(out_tflite))
    model, ckpt = load_checkpoint(model_pt)
    pp = dict(ckpt["preprocess"])
    pp.setdefault("resolution", ckpt["arch"].get("resolution"))
    pp.setdefault("channels", ckpt["arch"].get("in_channels"))
    n_out = ckpt["arch"].get("num_classes")
    if dataset and not is_fashion_mnist(dataset):  # before any work: a folder must hold the model's classes
        for split in ("train", "test"):
            classes_found, _, _ = scan_image_folder(image_folder_split(Path(dataset).expanduser(), split))
            _check_classes(classes_found, n_out, dataset)
    if calib_data is not None:
        calib = _load_calib(calib_data)
    else:
        _log(f"calibration: {calib_samples} images from the {pp.get('dataset', 'fashion-mnist')} train split", quiet)
        calib = calibration_inputs(pp, calib_samples, dataset, num_classes=n_out)
    eval_x = eval_y = None
    classes = ckpt.get("classes")
    if eval_samples and eval_samples > 0:
        eval_x, eval_y, ds_classes = evaluation_inputs(pp, eval_samples, dataset, num_classes=n_out)
        classes = classes or ds_classes
    extra = {"source": {"checkpoint": str(Path(model_pt)), "arch": dict(ckpt["arch"])},
             "classes": classes, "eval_dataset": dataset or pp.get("dataset", "fashion-mnist"),
             "eval_split": "test", "calib_source": "file" if calib_data is not None else "train split",
             "checkpoint_metrics": ckpt.get("metrics")}
    return convert_module(model, pp, out_tflite, calib=calib, eval_inputs=eval_x, eval_labels=eval_y,
                          extra=extra, softmax=softmax, quiet=quiet)


def _load_calib(calib_data) -> np.ndarray:
    if isinstance(calib_data, np.ndarray):
        return calib_data
    p = Path(calib_data)
    try:
        arr = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConvertError(f"cannot read calibration data {p}: {exc}") from exc
    if not isinstance(arr, np.ndarray) or arr.dtype.kind != "f":
        raise ConvertError(f"calibration data {p} must be a float .npy array (NHWC, normalised)")
    return arr.astype(np.float32)


def zoo_cache_key(name: str, resolution: int, channels: int, classes: int, calib_samples: int,
                  check_samples: int, seed: int, softmax: bool = False) -> str:
    zoo_src = b""
    try:
        from ..trainer import zoo as z

        zoo_src = Path(z.__file__).read_bytes()
    except Exception:  # noqa: BLE001
        pass
    args = [CONVERTER_VERSION, name, resolution, channels, classes, calib_samples, check_samples, seed]
    blob = json.dumps(args + (["softmax"] if softmax else [])).encode() + hashlib.sha256(zoo_src).digest()
    for mod in ("onnx_export.py", "_onnx2tf_worker.py"):
        blob += (Path(__file__).parent / mod).read_bytes()
    return hashlib.sha256(blob).hexdigest()[:20]


def convert_zoo(name: str, resolution: int | None, channels: int, classes: int, out_tflite: str | os.PathLike,
                calib_samples: int = 32, check_samples: int = 0, seed: int = 0, quiet: bool = False,
                use_cache: bool = True, softmax: bool = False) -> dict:
    """Random-weight zoo model -> int8 TFLite (+ json). Calibration: N(0,1) inputs (seeded).

    No accuracy (random weights). `check_samples` random inputs compare torch/tf.lite/TFLM numerics.
    Cached by the arguments (and the zoo/converter sources) under ~/.cache/netaug-mcu/zoo-models.
    """
    import torch

    from ..trainer import zoo

    out = Path(out_tflite)
    check_writable(out)
    try:
        model = zoo.build(name, in_channels=channels, num_classes=classes, resolution=resolution)
    except Exception as exc:  # noqa: BLE001 - ZooError and friends
        raise ConvertError(str(exc)) from exc
    resolution = int(model.arch["resolution"])
    key = zoo_cache_key(name, resolution, channels, classes, calib_samples, check_samples, seed, softmax)
    cdir = cache_root() / "zoo-models" / key
    ctfl, cjson = cdir / "model.tflite", cdir / "model.json"
    if use_cache and ctfl.is_file() and cjson.is_file():
        rep = json.loads(cjson.read_text())
        rep["cached"] = True
        rep.setdefault("output_activation", "logits")  # caches written before the key existed
        rep["model_file"] = out.name
        if out.resolve() != ctfl.resolve():
            atomic_write_many({out: ctfl.read_bytes(), model_json_path(out): (json.dumps(rep, indent=2) + "\n").encode()})
        _log(f"{name}@{resolution}: from cache {cdir}", quiet)
        return rep
    torch.manual_seed(seed)
    model = zoo.build(name, in_channels=channels, num_classes=classes, resolution=resolution).eval()
    rng = np.random.default_rng(seed)
    calib = rng.standard_normal((calib_samples, resolution, resolution, channels)).astype(np.float32)
    check = rng.standard_normal((check_samples, resolution, resolution, channels)).astype(np.float32) \
        if check_samples > 0 else None
    pp = {"dataset": None, "resolution": resolution, "channels": channels, "mean": [0.0] * channels,
          "std": [1.0] * channels, "interpolation": "bilinear"}
    extra = {"source": {"zoo": name, "arch": dict(model.arch), "weights": f"random (torch seed {seed})"},
             "calib_source": f"random normal N(0,1), seed {seed}",
             "eval_dataset": "random normal" if check is not None else None}
    rep = convert_module(model, pp, out, calib=calib, eval_inputs=check, extra=extra, softmax=softmax, quiet=quiet)
    rep["cached"] = False
    if use_cache:
        try:
            tmpd = Path(tempfile.mkdtemp(prefix=".tmp-", dir=_mkdirs(cdir.parent)))
            shutil.copyfile(out, tmpd / "model.tflite")
            (tmpd / "model.json").write_text(json.dumps(rep, indent=2) + "\n")
            if cdir.exists():
                shutil.rmtree(cdir, ignore_errors=True)
            os.replace(tmpd, cdir)
        except OSError:
            pass
    return rep


def _mkdirs(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def preprocess_from_json(path: Path) -> dict:
    """The `preprocess` object of a model.json (checked by the one model.json reader)."""
    from ..common.artifacts import read_model_json
    from ..common.errors import UserError
    try:
        pp = read_model_json(path).get("preprocess")
    except UserError as exc:
        raise ConvertError(str(exc)) from None
    if not isinstance(pp, dict):
        raise ConvertError(f"cannot read 'preprocess' from {path}: the file has no 'preprocess' object")
    return dict(pp)


def check_preprocess(pp: dict, ishape: list[int]) -> None:
    """The preprocessing must produce the model's NHWC input (resolution and channels)."""
    if int(pp.get("resolution") or ishape[1]) != ishape[1] or int(pp.get("channels") or ishape[3]) != ishape[3]:
        raise ConvertError(f"preprocess {pp.get('resolution')}x{pp.get('channels')}ch does not match the model "
                           f"input {ishape}")


def evaluate_model(tflite_path: str | os.PathLike, dataset: str = "fashion-mnist", eval_samples: int = 1000,
                   preprocess: dict | str | os.PathLike | None = None, ref_check_samples: int = 1000,
                   quiet: bool = False) -> dict:
    """Evaluate any int8 .tflite: int8 (tf.lite) and TFLM top-1, agreement, TFLM==REF check.

    Preprocessing: a dict, a model.json path (its `preprocess`), else `<model>.json` next to the
    model if present, else inferred from the input shape with mean 0 / std 1 (pixels in [0,1]).
    """
    from .evaluate import evaluate_tflite
    from ..common.tflite_model import load as load_tflite
    from ..common.tflm_ops import require_supported

    p = Path(tflite_path)
    if not p.is_file():
        raise ConvertError(f"model {p} does not exist")
    data = p.read_bytes()
    summary = load_tflite(data)
    require_supported(summary, p.name)  # TFLM would fail on it (and print to fd 2)
    ishape = summary.io("input")["shape"]
    if len(ishape) != 4:
        raise ConvertError(f"model input must be NHWC 4-D, got shape {ishape}")
    pp_source = "inferred from input shape"
    if isinstance(preprocess, dict):
        pp, pp_source = dict(preprocess), "given"
    else:
        jp = Path(preprocess) if preprocess else model_json_path(p)
        if jp.is_file():
            pp, pp_source = preprocess_from_json(jp), str(jp)
        elif preprocess:
            raise ConvertError(f"preprocess file {jp} does not exist")
        else:
            c = int(ishape[3])
            pp = {"resolution": int(ishape[1]), "channels": c, "mean": [0.0] * c, "std": [1.0] * c,
                  "interpolation": "bilinear"}
    check_preprocess(pp, ishape)
    pp.setdefault("resolution", int(ishape[1]))
    pp.setdefault("channels", int(ishape[3]))
    oshape = summary.io("output")["shape"]
    x, y, classes = evaluation_inputs(pp, eval_samples, dataset, num_classes=oshape[-1] if oshape else None)
    rep: dict[str, Any] = {"format": MODEL_JSON, "model_file": p.name, "eval_dataset": dataset,
                           "eval_split": "test", "preprocess": pp, "preprocess_source": pp_source}
    rep["input"], rep["output"] = summary.io("input"), summary.io("output")
    rep["op_histogram"] = summary.op_histogram
    rep["weight_bytes"], rep["file_bytes"], rep["macs"] = summary.tensor_data_bytes, len(data), summary.macs
    rep.update(evaluate_tflite(data, x, y, None, ref_check_samples=ref_check_samples, quiet=quiet))
    return rep
