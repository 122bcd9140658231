# Build probe TUs: copy a source file, append `char probe_<tag>__<name>[sizeof(T)]` definitions.
import re, sys, os, subprocess, json
ROOT="/tmp/tflm"
K="tensorflow/lite/micro/kernels/"
probes = {
 # ref kernels: file -> list of types
 K+"conv_common.cc": ["tflite::OpDataConv"],
 K+"fully_connected_common.cc": ["tflite::OpDataFullyConnected"],
 K+"pooling_common.cc": ["tflite::OpDataPooling"],
 K+"softmax_common.cc": ["tflite::SoftmaxParams"],
 K+"add.cc": ["tflite::OpDataAdd"],
 K+"reduce.cc": ["tflite::OpDataReduce"],
 K+"concatenation.cc": ["tflite::OpData"],
 K+"quantize.cc": ["tflite::OpDataQuantizeReference"],
 K+"dequantize.cc": ["tflite::DequantizeOpData"],
 K+"mul_common.cc": ["tflite::OpDataMul"],
 K+"logistic.cc": ["tflite::OpDataLogistic"],
 K+"pad_common.cc": ["tflite::OpData"],
 K+"activations.cc": ["tflite::ReluOpData","tflite::Relu6OpData"],
 K+"hard_swish.cc": ["tflite::HardSwishParams"],
 K+"sub.cc": ["tflite::OpDataSub"],
 K+"strided_slice_common.cc": ["tflite::StridedSliceParams"],
 K+"leaky_relu.cc": ["tflite::LeakyReluOpData"],
 K+"tanh.cc": ["tflite::OpData"],
 K+"transpose_conv.cc": ["tflite::OpData"],
 K+"prelu.cc": ["tflite::PreluParams"],
 K+"mirror_pad.cc": ["tflite::OpDataMirrorPad"],
 K+"squared_difference.cc": ["tflite::OpData"],
 K+"elu.cc": ["tflite::OpData"],
 K+"l2norm.cc": ["tflite::L2NormalizationParams"],
 K+"space_to_batch_nd.cc": ["tflite::SpaceToBatchParams"],
 K+"div.cc": ["tflite::OpDataDiv"],
 K+"log_softmax.cc": ["tflite::LogSoftmaxOpData"],
 "tensorflow/lite/micro/micro_allocator.cc": ["tflite::MicroBuiltinDataAllocator","tflite::MicroAllocator","tflite::SubgraphAllocations","tflite::NodeAndRegistration","TfLiteEvalTensor","TfLiteTensor","TfLiteAffineQuantization","tflite::internal::ScratchBufferRequest","tflite::ScratchBufferHandle","tflite::AllocationInfo","tflite::GreedyMemoryPlanner","tflite::SingleArenaBufferAllocator","TfLiteTensor*"],
 "tensorflow/lite/micro/recording_micro_allocator.cc": ["tflite::RecordingMicroAllocator","tflite::RecordingSingleArenaBufferAllocator"],
}
builtin = ["TfLiteConvParams","TfLiteDepthwiseConvParams","TfLiteFullyConnectedParams","TfLitePoolParams","TfLiteSoftmaxParams","TfLiteAddParams","TfLiteMulParams","TfLiteSubParams","TfLiteReducerParams","TfLiteReshapeParams","TfLiteConcatenationParams","TfLitePadParams","TfLiteStridedSliceParams","TfLiteTransposeConvParams","TfLiteLeakyReluParams","TfLiteSqueezeParams","TfLiteDivParams","TfLiteTransposeParams","TfLitePackParams","TfLiteUnpackParams","TfLiteResizeNearestNeighborParams","TfLiteResizeBilinearParams","TfLiteSplitParams","TfLiteGatherParams","TfLiteShapeParams","TfLiteArgMaxParams","TfLiteArgMinParams","TfLiteSpaceToDepthParams","TfLiteDepthToSpaceParams","TfLiteCastParams","TfLiteL2NormParams","TfLiteMirrorPaddingParams"]
probes["tensorflow/lite/core/api/flatbuffer_conversions.cc"] = builtin
os.makedirs("src", exist_ok=True)
for f, types in probes.items():
    s = open(os.path.join(ROOT, f)).read()
    tag = os.path.basename(f)[:-3]
    add = "\n"
    for t in types:
        n = re.sub(r'\W', '_', t.replace("tflite::",""))
        add += f"char probe__{tag}__{n}[sizeof({t})];\nchar probealign__{tag}__{n}[alignof({t})];\n"
    open(f"src/{tag}.cc","w").write(s+add)
