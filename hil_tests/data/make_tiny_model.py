"""Generate the tiny int8 Fashion-MNIST models that the HIL suite runs when no model is given.

Run once (needs TensorFlow, which a HIL host does not have; the outputs are committed):
    python hil_tests/data/make_tiny_model.py
Writes, next to this script, for RES in (32, 16):
    tiny_fmnist{RES}.tflite   full-int8 (int8 input and output) Keras CNN trained briefly on Fashion-MNIST
    tiny_fmnist{RES}.json     model.json-style metadata (input/output quantization, preprocess, accuracies)
The 32x32 model (1024-byte input) is the default target; the 16x16 one (256 bytes) serves the
"model and device disagree on input shape" tests.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from netaug_mcu.common import datasets, preprocess  # noqa: E402

MEAN, STD = [0.2860], [0.3530]  # Fashion-MNIST train-set statistics


def build(res: int) -> tf.keras.Model:
    inp = tf.keras.Input((res, res, 1), batch_size=1, name="input")
    x = tf.keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    x = tf.keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = tf.keras.layers.Conv2D(16, 3, strides=2 if res > 16 else 1, padding="same", activation="relu")(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    out = tf.keras.layers.Dense(10, name="logits")(x)
    return tf.keras.Model(inp, out)


def make(res: int, epochs: int) -> None:
    tf.keras.utils.set_random_seed(res)
    pre = {"dataset": "fashion-mnist", "resolution": res, "channels": 1, "mean": MEAN, "std": STD,
           "interpolation": "bilinear"}
    xtr_u8, ytr = datasets.load_fashion_mnist("train")
    xte_u8, yte = datasets.load_fashion_mnist("test")
    xtr = preprocess.preprocess(xtr_u8, pre)
    xte = preprocess.preprocess(xte_u8, pre)
    train_model = build(res)
    # Train with a free batch dimension, then copy the weights into the batch-1 graph for conversion.
    tin = tf.keras.Input((res, res, 1))
    tmodel = tf.keras.Model(tin, train_model(tin))
    tmodel.compile(optimizer=tf.keras.optimizers.Adam(3e-3),
                   loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    t0 = time.time()
    tmodel.fit(xtr, ytr, batch_size=128, epochs=epochs, verbose=2)
    float_top1 = 100.0 * float(np.mean(np.argmax(tmodel.predict(xte, batch_size=500, verbose=0), 1) == yte))

    def rep():
        for i in range(200):
            yield [xtr[i:i + 1]]

    conv = tf.lite.TFLiteConverter.from_keras_model(train_model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    blob = conv.convert()
    path = HERE / f"tiny_fmnist{res}.tflite"
    path.write_bytes(blob)

    interp = tf.lite.Interpreter(model_content=blob,
                                 experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF)
    interp.allocate_tensors()
    ind, outd = interp.get_input_details()[0], interp.get_output_details()[0]
    s, z = ind["quantization"]
    xq = preprocess.quantize(xte, s, z)
    preds = []
    for i in range(len(xq)):
        interp.set_tensor(ind["index"], xq[i:i + 1])
        interp.invoke()
        preds.append(int(np.argmax(interp.get_tensor(outd["index"])[0])))
    int8_top1 = 100.0 * float(np.mean(np.asarray(preds) == yte))
    from tflite_micro.python.tflite_micro import runtime
    tflm = runtime.Interpreter.from_bytes(blob)
    tpreds = []
    for i in range(len(xq)):
        tflm.set_input(xq[i:i + 1], 0)
        tflm.invoke()
        tpreds.append(int(np.argmax(tflm.get_output(0)[0])))
    tflm_top1 = 100.0 * float(np.mean(np.asarray(tpreds) == yte))
    meta = {
        "format": "netaug-mcu/model-json/1",
        "source": "hil_tests/data/make_tiny_model.py (Keras, not NetAug: a HIL test fixture)",
        "input": {"name": ind["name"], "shape": [int(v) for v in ind["shape"]], "dtype": "int8",
                  "scale": float(s), "zero_point": int(z)},
        "output": {"name": outd["name"], "shape": [int(v) for v in outd["shape"]], "dtype": "int8",
                   "scale": float(outd["quantization"][0]), "zero_point": int(outd["quantization"][1])},
        "preprocess": pre,
        "classes": datasets.FASHION_MNIST_CLASSES,
        "file_bytes": len(blob),
        "sha256": hashlib.sha256(blob).hexdigest(),
        "float_top1": round(float_top1, 2),
        "int8_top1": round(int8_top1, 2),
        "tflm_top1": round(tflm_top1, 2),
        "agreement": round(100.0 * float(np.mean(np.asarray(preds) == np.asarray(tpreds))), 2),
        "eval_samples": int(len(yte)),
        "train": {"epochs": epochs, "seconds": round(time.time() - t0, 1)},
    }
    (HERE / f"tiny_fmnist{res}.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"{path.name}: {len(blob)} B, float {float_top1:.2f} %, int8 {int8_top1:.2f} %, tflm {tflm_top1:.2f} %")


if __name__ == "__main__":
    tf.config.threading.set_intra_op_parallelism_threads(2)
    make(32, epochs=3)
    make(16, epochs=1)
