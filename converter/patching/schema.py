"""The TFLite flatbuffer object API, for writing rewritten models.

The core `tflite` package only reads; the object API (ModelT ... Pack) ships with the tflite-micro
wheel (the 'tflm' extra, which verifying a rewrite needs anyway) as a plain generated module that
imports nothing but `flatbuffers`. It is loaded straight from its file, so the wheel's native runtime
is not loaded into this process.
"""
from __future__ import annotations

import copy
import importlib.util
from functools import lru_cache
from pathlib import Path

from ...common.errors import UserError

SCHEMA_FILES = (("tflite_micro", "tensorflow/lite/micro/python/schema_py_generated.py"),
                ("tensorflow", "lite/python/schema_py_generated.py"))
BUFFER_ALIGN = 16  # what the TFLite converter uses (schema: data:[ubyte] (force_align: 16))


@lru_cache(maxsize=None)
def schema():
    """The generated schema module (object API)."""
    for pkg, rel in SCHEMA_FILES:
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            continue
        path = Path(list(spec.submodule_search_locations)[0]) / rel
        if path.is_file():
            s = importlib.util.spec_from_file_location(f"_netaug_tflite_schema_{pkg}", path)
            mod = importlib.util.module_from_spec(s)
            s.loader.exec_module(mod)
            return mod
    raise UserError("rewriting a .tflite needs the TFLite schema object API from the 'tflm' extra "
                    "(pip install 'netaug-mcu[hil]' or `make install`)")


def unpack(data: bytes):
    """ModelT of a .tflite flatbuffer."""
    return schema().ModelT.InitFromPackedBuf(bytearray(data), 0)


class _AlignedBuffer:
    """A BufferT whose data vector is 16-byte aligned (the generated Pack aligns to 1)."""

    def __init__(self, b):
        self.b = b

    def Pack(self, builder):
        S = schema()
        data = None
        if self.b.data is not None and len(self.b.data):
            raw = bytes(memoryview(self.b.data).cast("B")) if not isinstance(self.b.data, (bytes, bytearray)) \
                else bytes(self.b.data)
            builder.StartVector(1, len(raw), BUFFER_ALIGN)
            builder.head = builder.head - len(raw)
            builder.Bytes[builder.head:builder.head + len(raw)] = raw
            data = builder.EndVector(len(raw)) if _end_vector_takes_len(builder) else builder.EndVector()
        S.BufferStart(builder)
        if data is not None:
            S.BufferAddData(builder, data)
        return S.BufferEnd(builder)


def _end_vector_takes_len(builder) -> bool:
    import inspect
    return len(inspect.signature(builder.EndVector).parameters) > 0


def pack(model_t) -> bytes:
    """Serialize a ModelT (buffers 16-byte aligned, 'TFL3' identifier)."""
    import flatbuffers
    m = copy.copy(model_t)
    m.buffers = [_AlignedBuffer(b) for b in model_t.buffers]
    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
