"""Small full-int8 test models for the memory analyzer's exactness tests and benchmark.

Each model is built with Keras (tf_keras when present, else keras) and converted with
tf.lite.TFLiteConverter (full int8, int8 input/output, representative dataset). The
resulting .tflite files are cached on disk by a hash of the builder's definition, so
TensorFlow runs once per machine, not once per test session.

TensorFlow is imported inside the builders only: importing this module is cheap.
"""
from __future__ import annotations

import hashlib
import inspect
import os
from pathlib import Path
from typing import Callable

import numpy as np

from netaug_mcu.common.paths import cache_root

CACHE_DIR = cache_root() / "test-models"
GENERATOR_VERSION = "1"


def _keras():
    import tensorflow as tf  # noqa: F401
    try:
        import tf_keras as keras  # Keras 2 API: stable for TFLiteConverter.from_keras_model
    except ImportError:  # pragma: no cover
        import keras
    return keras


# ---- model builders: each returns a Keras model with a fixed batch size of 1 -------------

def plain_cnn():
    k = _keras(); L = k.layers
    x = inp = L.Input((32, 32, 1), batch_size=1)
    x = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    x = L.Conv2D(16, 3, padding="valid", activation="relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(10)(x)
    return k.Model(inp, x)


def residual():
    k = _keras(); L = k.layers
    x = inp = L.Input((40, 40, 3), batch_size=1)
    x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    for _ in range(2):
        y = L.Conv2D(16, 3, padding="same", activation="relu")(x)
        y = L.Conv2D(16, 3, padding="same")(y)
        x = L.ReLU()(L.Add()([x, y]))
    x = L.Conv2D(32, 3, strides=2, padding="same", activation="relu")(x)
    y = L.Conv2D(32, 1)(x)
    x = L.Add()([x, y])
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(10)(x)
    return k.Model(inp, x)


def avgpool():
    k = _keras(); L = k.layers
    x = inp = L.Input((28, 28, 1), batch_size=1)
    x = L.Conv2D(12, 5, padding="same", activation="relu")(x)
    x = L.AveragePooling2D(2)(x)
    x = L.Conv2D(24, 3, padding="same", activation="relu")(x)
    x = L.AveragePooling2D(2)(x)
    x = L.Flatten()(x)
    x = L.Dense(10)(x)
    return k.Model(inp, x)


def maxpool():
    k = _keras(); L = k.layers
    x = inp = L.Input((48, 48, 3), batch_size=1)
    x = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = L.MaxPooling2D(2)(x)
    x = L.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = L.MaxPooling2D(3, strides=2, padding="same")(x)
    x = L.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = L.GlobalMaxPooling2D()(x)
    x = L.Dense(5)(x)
    return k.Model(inp, x)


def fc_only():
    k = _keras(); L = k.layers
    x = inp = L.Input((64,), batch_size=1)
    x = L.Dense(128, activation="relu")(x)
    x = L.Dense(96, activation="relu")(x)
    x = L.Dense(10)(x)
    x = L.Softmax()(x)
    return k.Model(inp, x)


def fc_wide():
    """Tiny activations, wide per-channel FC: the Prepare-time transients set the minimum arena."""
    k = _keras(); L = k.layers
    x = inp = L.Input((16,), batch_size=1)
    x = L.Dense(256, activation="relu")(x)
    x = L.Dense(8)(x)
    return k.Model(inp, x)


def split_branches():
    """SPLIT (an operator with several outputs) feeding two branches, then concatenation."""
    k = _keras(); L = k.layers
    import tensorflow as tf
    x = inp = L.Input((24, 24, 3), batch_size=1)
    x = L.Conv2D(16, 3, padding="same", activation="relu")(x)
    a, b = L.Lambda(lambda t: tf.split(t, 2, axis=-1))(x)
    a = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(a)
    b = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(b)
    x = L.Concatenate()([a, b])
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(10)(x)
    return k.Model(inp, x)


def depthwise():
    k = _keras(); L = k.layers
    x = inp = L.Input((48, 48, 3), batch_size=1)
    x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    x = L.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = L.Conv2D(24, 1, activation="relu")(x)
    x = L.DepthwiseConv2D(5, strides=2, padding="same", activation="relu")(x)
    x = L.Conv2D(32, 1, activation="relu")(x)
    x = L.DepthwiseConv2D(3, depth_multiplier=2, padding="valid", activation="relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(10)(x)
    return k.Model(inp, x)


def concat_reshape_softmax():
    k = _keras(); L = k.layers
    x = inp = L.Input((24, 24, 2), batch_size=1)
    a = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    b = L.Conv2D(8, 1, activation="relu")(x)
    x = L.Concatenate()([a, b])
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    x = L.Reshape((12 * 12 * 8,))(x)
    x = L.Dense(32, activation="relu")(x)
    x = L.Dense(6)(x)
    x = L.Softmax()(x)
    return k.Model(inp, x)


def mobilenet_like_64():
    k = _keras(); L = k.layers

    def block(x, expand, out, stride):
        cin = x.shape[-1]
        y = L.Conv2D(cin * expand, 1, activation="relu6")(x)
        y = L.DepthwiseConv2D(3, strides=stride, padding="same", activation="relu6")(y)
        y = L.Conv2D(out, 1)(y)
        if stride == 1 and cin == out:
            y = L.Add()([x, y])
        return y

    x = inp = L.Input((64, 64, 3), batch_size=1)
    x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu6")(x)
    x = block(x, 1, 8, 1)
    x = block(x, 4, 16, 2)
    x = block(x, 4, 16, 1)
    x = block(x, 4, 24, 2)
    x = block(x, 4, 24, 1)
    x = L.Conv2D(64, 1, activation="relu6")(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(10)(x)
    return k.Model(inp, x)


def mobilenet_like_96():
    k = _keras(); L = k.layers
    x = inp = L.Input((96, 96, 1), batch_size=1)
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    for c, s in ((16, 2), (16, 1), (32, 2), (32, 1), (64, 2)):
        x = L.DepthwiseConv2D(3, strides=s, padding="same", activation="relu")(x)
        x = L.Conv2D(c, 1, activation="relu")(x)
    x = L.AveragePooling2D(6)(x)
    x = L.Flatten()(x)
    x = L.Dense(4)(x)
    return k.Model(inp, x)


def wide_first_layer():
    """A large kh*kw*Cin convolution: CMSIS-NN's im2col scratch matters here."""
    k = _keras(); L = k.layers
    x = inp = L.Input((20, 20, 16), batch_size=1)
    x = L.Conv2D(32, 5, padding="same", activation="relu")(x)
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    x = L.Flatten()(x)
    x = L.Dense(10)(x)
    return k.Model(inp, x)


def branchy():
    """Parallel branches whose order matters: operator reordering lowers the peak."""
    k = _keras(); L = k.layers
    x = inp = L.Input((32, 32, 4), batch_size=1)
    a1 = L.Conv2D(32, 3, padding="same", activation="relu")(x)
    b1 = L.Conv2D(32, 3, padding="same", activation="relu")(x)
    c1 = L.Conv2D(24, 1, activation="relu")(x)
    a2 = L.Conv2D(4, 3, strides=2, padding="same")(a1)
    b2 = L.Conv2D(4, 3, strides=2, padding="same")(b1)
    c2 = L.Conv2D(4, 3, strides=2, padding="same")(c1)
    y = L.Concatenate()([a2, b2, c2])
    y = L.GlobalAveragePooling2D()(y)
    y = L.Dense(10)(y)
    return k.Model(inp, y)


BUILDERS: dict[str, Callable] = {
    "plain_cnn": plain_cnn,
    "residual": residual,
    "avgpool": avgpool,
    "maxpool": maxpool,
    "fc_only": fc_only,
    "depthwise": depthwise,
    "concat_reshape_softmax": concat_reshape_softmax,
    "mobilenet_like_64": mobilenet_like_64,
    "mobilenet_like_96": mobilenet_like_96,
    "wide_first_layer": wide_first_layer,
    "branchy": branchy,
    "fc_wide": fc_wide,
    "split_branches": split_branches,
}


def _key(name: str) -> str:
    src = inspect.getsource(BUILDERS[name]) + GENERATOR_VERSION
    return hashlib.sha256(src.encode()).hexdigest()[:16]


def convert_keras_int8(model, seed: int = 0, samples: int = 32) -> bytes:
    import tensorflow as tf
    rng = np.random.default_rng(seed)
    shape = tuple(int(d) for d in model.inputs[0].shape)

    def rep():
        for _ in range(samples):
            yield [rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


def model_path(name: str, cache_dir: Path | None = None) -> Path:
    """Path of the cached .tflite for builder `name`, building and converting it if missing."""
    cache_dir = Path(cache_dir or CACHE_DIR)
    path = cache_dir / f"{name}-{_key(name)}.tflite"
    if path.exists() and path.stat().st_size > 0:
        return path
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    tf.random.set_seed(0)
    np.random.seed(0)
    data = convert_keras_int8(BUILDERS[name]())
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def float_model_path(cache_dir: Path | None = None) -> Path:
    """plain_cnn converted WITHOUT quantization (float32 in/out and kernels): an input the analyzer rejects."""
    cache_dir = Path(cache_dir or CACHE_DIR)
    path = cache_dir / f"float_plain_cnn-{_key('plain_cnn')}.tflite"
    if path.exists() and path.stat().st_size > 0:
        return path
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    tf.random.set_seed(0)
    data = tf.lite.TFLiteConverter.from_keras_model(plain_cnn()).convert()
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def all_model_paths(cache_dir: Path | None = None) -> dict[str, Path]:
    return {name: model_path(name, cache_dir) for name in BUILDERS}


if __name__ == "__main__":  # python tests/keras_models.py: build (or show) the cached models
    for n, p in all_model_paths().items():
        print(f"{n:28s} {p.stat().st_size:8d} {p}")
