"""The TFLM op table: which builtin operators the pinned TFLM build can run, and how the firmware
registers each one.

`RESOLVER_METHODS` maps every builtin operator that TFLM's `MicroMutableOpResolver` can register
(tflite-micro 90b983c2, micro_mutable_op_resolver.h: every `AddXxx()` that calls
`AddBuiltin(BuiltinOperator_XXX)`) to that method. Custom-only ops (ETHOSU, CIRCULAR_BUFFER,
DETECTION_POSTPROCESS) are not builtins and are excluded. An op outside this table cannot run in
the firmware: the converter, the analyzer, `check` and `firmware` all refuse it by this one table.
`INT8_REGISTRATIONS` are CMSIS-NN's int8-only kernel registrations (kernels/*.h), used when every
instance of the op in a model is int8, so the int16/int4 code paths are not linked.
"""
from __future__ import annotations

RESOLVER_METHODS = dict(item.split(":") for item in """
ABS:AddAbs ADD:AddAdd ADD_N:AddAddN ARG_MAX:AddArgMax ARG_MIN:AddArgMin ASSIGN_VARIABLE:AddAssignVariable
AVERAGE_POOL_2D:AddAveragePool2D BATCH_MATMUL:AddBatchMatMul BATCH_TO_SPACE_ND:AddBatchToSpaceNd
BROADCAST_ARGS:AddBroadcastArgs BROADCAST_TO:AddBroadcastTo CALL_ONCE:AddCallOnce CAST:AddCast CEIL:AddCeil
CONCATENATION:AddConcatenation CONV_2D:AddConv2D COS:AddCos CUMSUM:AddCumSum
DEPTHWISE_CONV_2D:AddDepthwiseConv2D DEPTH_TO_SPACE:AddDepthToSpace DEQUANTIZE:AddDequantize DIV:AddDiv
DYNAMIC_UPDATE_SLICE:AddDynamicUpdateSlice ELU:AddElu EMBEDDING_LOOKUP:AddEmbeddingLookup EQUAL:AddEqual
EXP:AddExp EXPAND_DIMS:AddExpandDims FILL:AddFill FLOOR:AddFloor FLOOR_DIV:AddFloorDiv FLOOR_MOD:AddFloorMod
FULLY_CONNECTED:AddFullyConnected GATHER:AddGather GATHER_ND:AddGatherNd GREATER:AddGreater
GREATER_EQUAL:AddGreaterEqual HARD_SWISH:AddHardSwish IF:AddIf L2_NORMALIZATION:AddL2Normalization
L2_POOL_2D:AddL2Pool2D LEAKY_RELU:AddLeakyRelu LESS:AddLess LESS_EQUAL:AddLessEqual LOG:AddLog
LOGICAL_AND:AddLogicalAnd LOGICAL_NOT:AddLogicalNot LOGICAL_OR:AddLogicalOr LOGISTIC:AddLogistic
LOG_SOFTMAX:AddLogSoftmax MAXIMUM:AddMaximum MAX_POOL_2D:AddMaxPool2D MEAN:AddMean MINIMUM:AddMinimum
MIRROR_PAD:AddMirrorPad MUL:AddMul NEG:AddNeg NOT_EQUAL:AddNotEqual PACK:AddPack PAD:AddPad PADV2:AddPadV2
PRELU:AddPrelu QUANTIZE:AddQuantize READ_VARIABLE:AddReadVariable REDUCE_ALL:AddReduceAll
REDUCE_MAX:AddReduceMax REDUCE_MIN:AddReduceMin RELU:AddRelu RELU6:AddRelu6 RESHAPE:AddReshape
RESIZE_BILINEAR:AddResizeBilinear RESIZE_NEAREST_NEIGHBOR:AddResizeNearestNeighbor REVERSE_V2:AddReverseV2
ROUND:AddRound RSQRT:AddRsqrt SELECT_V2:AddSelectV2 SHAPE:AddShape SIN:AddSin SLICE:AddSlice
SOFTMAX:AddSoftmax SPACE_TO_BATCH_ND:AddSpaceToBatchNd SPACE_TO_DEPTH:AddSpaceToDepth SPLIT:AddSplit
SPLIT_V:AddSplitV SQRT:AddSqrt SQUARE:AddSquare SQUARED_DIFFERENCE:AddSquaredDifference SQUEEZE:AddSqueeze
STRIDED_SLICE:AddStridedSlice SUB:AddSub SUM:AddSum SVDF:AddSvdf TANH:AddTanh TRANSPOSE:AddTranspose
TRANSPOSE_CONV:AddTransposeConv UNIDIRECTIONAL_SEQUENCE_LSTM:AddUnidirectionalSequenceLSTM
UNPACK:AddUnpack VAR_HANDLE:AddVarHandle WHILE:AddWhile ZEROS_LIKE:AddZerosLike
""".split())
TFLM_BUILTIN_OPS = frozenset(RESOLVER_METHODS)

INT8_REGISTRATIONS = {
    "CONV_2D": "Register_CONV_2D_INT8", "DEPTHWISE_CONV_2D": "Register_DEPTHWISE_CONV_2D_INT8",
    "FULLY_CONNECTED": "Register_FULLY_CONNECTED_INT8", "SOFTMAX": "Register_SOFTMAX_INT8",
    "ADD": "Register_ADD_INT8", "MUL": "Register_MUL_INT8",
    "AVERAGE_POOL_2D": "Register_AVERAGE_POOL_2D_INT8", "MAX_POOL_2D": "Register_MAX_POOL_2D_INT8",
}
WEIGHTED_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"})


def unsupported_ops(model) -> list:
    """Operators of a `TFLiteModel` (or anything with `.ops` of named ops) TFLM cannot run."""
    return [op for op in model.ops if op.name not in TFLM_BUILTIN_OPS]


def require_supported(model, name: str = "model", error: type | None = None) -> None:
    """The gate's first rule: a model with an op the pinned TFLM build has no kernel for is an error
    (exit 2) naming the op, for every command (analyze, check, optimize, evaluate, firmware, hil)."""
    bad = unsupported_ops(model)
    if bad:
        from .errors import UserError
        names = sorted({op.name for op in bad})
        raise (error or UserError)(f"{name}: op #{bad[0].index} {bad[0].name} is not supported by TFLM (no kernel in the "
                        f"pinned TFLM build; unsupported: {', '.join(names)})")


def int8_only_ops(model) -> set[str]:
    """Ops (of INT8_REGISTRATIONS) whose every instance has int8 activations (and int8 weights)."""
    ok: dict[str, bool] = {}
    t = model.tensors
    for op in model.ops:
        if op.name not in INT8_REGISTRATIONS:
            continue
        acts = [op.inputs[0]] + ([op.inputs[1]] if op.name in ("ADD", "MUL") else []) + op.outputs[:1]
        good = all(i >= 0 and t[i].dtype == "int8" for i in acts)
        if op.name in WEIGHTED_OPS:
            good = good and len(op.inputs) > 1 and op.inputs[1] >= 0 and t[op.inputs[1]].dtype == "int8"
        ok[op.name] = ok.get(op.name, True) and good
    return {k for k, v in ok.items() if v}
