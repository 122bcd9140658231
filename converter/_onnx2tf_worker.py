"""Subprocess entry: ONNX -> (onnx2tf) Keras graph -> one full-integer int8 TFLite conversion.

Run as `python -m netaug_mcu.converter._onnx2tf_worker job.json` in a scratch directory (converter.quantize does
this). It is a separate process because onnx2tf/TensorFlow are noisy, slow to import and keep global
state; the parent captures this process's log and shows its tail only on failure.

Network: every socket connection attempt raises before onnx2tf is imported, and the sample file that
onnx2tf 1.29 would download (`calibration_image_sample_data_20x128x128x3_float32.npy`) is created in
the CWD, so the conversion is offline by construction.

Speed: `onnx2tf.convert(..., disable_model_save=True)` returns the translated Keras model before it
runs any TFLite converter (the CLI would run six: float32, float16, dynamic-range, integer,
full-integer, two int16 variants). We then run only the full-integer conversion, configured exactly
as onnx2tf's own `*_full_integer_quant.tflite` path (ExportArchive saved model -> from_saved_model,
Optimize.DEFAULT, TFLITE_BUILTINS_INT8, per-channel, int8 inference input/output types).

job.json keys: onnx, calib (NHWC float32 .npy, already normalised), out (.tflite path),
input_name, quant_type ('per-channel'|'per-tensor'), simplified (bool: onnxsim already applied),
dense_per_tensor (bool, default true: per-tensor FULLY_CONNECTED weights).
"""
from __future__ import annotations

import json
import os
import socket
import sys


def _block_network() -> None:
    def _refuse(*_a, **_k):
        raise OSError("network access is disabled during conversion (netaug-mcu converter)")

    socket.socket.connect = _refuse  # type: ignore[assignment]
    socket.socket.connect_ex = _refuse  # type: ignore[assignment]
    socket.create_connection = _refuse  # type: ignore[assignment]
    socket.getaddrinfo = _refuse  # type: ignore[assignment]


def _record_layer_origins(onnx2tf_pkg) -> dict[str, str]:
    """Map Keras layer names (which end up in TFLite tensor names) to the ONNX node that created them.

    onnx2tf names its Keras layers after TF ops (`tf.nn.convolution_3`), so the ONNX node names
    (which carry the torch module path, e.g. `/features/features.2/conv/conv.1/Conv`) are lost.
    We wrap each onnx2tf op's `make_node` and walk the Keras graph back from the node's outputs to
    its inputs; every layer on the way belongs to that ONNX node. Best effort: never raises.
    """
    import importlib
    import types

    from onnx2tf import onnx2tf as core

    mapping: dict[str, str] = {}

    def layers_between(outputs, inputs) -> list[str]:
        stop = {id(t) for t in inputs}
        seen: set[int] = set()
        names: list[str] = []
        stack = list(outputs)
        while stack:
            t = stack.pop()
            if id(t) in seen or id(t) in stop:
                continue
            seen.add(id(t))
            hist = getattr(t, "_keras_history", None)
            if hist is None:
                continue
            layer, node_index = hist[0], hist[1]
            if layer.name not in names:
                names.append(layer.name)
            try:
                node = layer._inbound_nodes[node_index]
                stack.extend(node.keras_inputs)
            except Exception:  # noqa: BLE001
                continue
            if len(names) > 64:
                break
        return names

    def wrap(module):
        orig = module.make_node
        if getattr(orig, "_netaug_wrapped", False):
            return module

        def make_node(*args, **kwargs):
            result = orig(*args, **kwargs)
            try:
                gnode = kwargs.get("graph_node")
                tld = kwargs.get("tf_layers_dict", {})
                outs = [tld[o.name]["tf_node"] for o in gnode.outputs if o.name in tld]
                ins = [tld[i.name]["tf_node"] for i in gnode.inputs
                       if i.name in tld and "tf_node" in tld[i.name]]
                for name in layers_between(outs, ins):
                    mapping.setdefault(name, gnode.name)
            except Exception:  # noqa: BLE001
                pass
            return result

        make_node._netaug_wrapped = True  # type: ignore[attr-defined]
        module.make_node = make_node
        return module

    def import_module(name, package=None):
        mod = importlib.import_module(name, package)
        if name.startswith("onnx2tf.ops.") and hasattr(mod, "make_node"):
            wrap(mod)
        return mod

    core.importlib = types.SimpleNamespace(import_module=import_module)
    return mapping


SAMPLE_NAME = "calibration_image_sample_data_20x128x128x3_float32.npy"


def main(job_path: str) -> int:
    _block_network()
    with open(job_path) as f:
        job = json.load(f)

    import numpy as np

    if not os.path.exists(SAMPLE_NAME):  # onnx2tf uses it only as test data; any values do
        np.save(SAMPLE_NAME, np.zeros((20, 128, 128, 3), np.float32))

    import onnx2tf
    import tensorflow as tf
    import tf_keras

    calib = np.load(job["calib"]).astype(np.float32)
    layer_map = _record_layer_origins(onnx2tf)
    model = onnx2tf.convert(
        input_onnx_file_path=job["onnx"],
        output_folder_path=os.path.abspath("saved_model"),
        output_integer_quantized_tflite=True,
        quant_type=job.get("quant_type", "per-channel"),
        custom_input_op_name_np_data_path=[[job["input_name"], job["calib"], 0.0, 1.0]],
        input_quant_dtype="int8",
        output_quant_dtype="int8",
        disable_model_save=True,
        not_use_onnxsim=bool(job.get("simplified")),  # already simplified by the parent: skip 3 onnxsim runs
        non_verbose=True,
        verbosity="error",
    )
    if model is None:
        print("onnx2tf returned no model", file=sys.stderr)
        return 1
    if len(model.inputs) != 1:
        print(f"expected one model input, got {len(model.inputs)}", file=sys.stderr)
        return 1
    in_shape = tuple(int(d) if d is not None else -1 for d in model.inputs[0].shape)
    if tuple(calib.shape[1:]) != in_shape[1:]:
        print(f"CALIB_SHAPE_MISMATCH calibration data {tuple(calib.shape)} does not match the "
              f"converted input {in_shape}", file=sys.stderr)
        return 3

    # Same saved-model route as onnx2tf's integer quantization (ExportArchive, serving_default).
    export_dir = os.path.abspath("saved_model")
    archive = tf_keras.export.ExportArchive()
    archive.add_endpoint(
        name="serving_default",
        fn=lambda *inputs: model(inputs),
        input_signature=[tf.TensorSpec(t.shape, t.dtype, t.name) for t in model.inputs],
    )
    archive.write_out(export_dir)
    input_key = model.inputs[0].name

    def representative_dataset():
        for i in range(calib.shape[0]):
            yield {input_key: tf.convert_to_tensor(calib[i:i + 1])}

    converter = tf.lite.TFLiteConverter.from_saved_model(export_dir)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter._experimental_disable_per_channel = job.get("quant_type", "per-channel") == "per-tensor"
    # Per-tensor FULLY_CONNECTED: with per-channel FC weights TFLM's FC kernel differs from tf.lite's
    # reference kernel by 1 LSB on some inputs (seen on a trained mbv2-tiny); per-tensor FC is
    # bit-exact, and it is the FC flavour every TFLM/CMSIS-NN version supports.
    converter._experimental_disable_per_channel_quantization_for_dense_layers = bool(job.get("dense_per_tensor", True))
    converter.representative_dataset = representative_dataset
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    tflite_model = converter.convert()
    with open(job["out"] + ".layers.json", "w") as f:
        json.dump(layer_map, f)
    with open(job["out"], "wb") as f:
        f.write(tflite_model)
    print(f"WROTE {job['out']} {len(tflite_model)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
