"""Operator-by-operator parity of the ONNX -> torch converter against onnxruntime.

Each case is a small graph built with onnx.helper (one operator, plus the shape code exporters put
around it), run by onnxruntime and by the converted module on random inputs at two batch sizes the
converter never probed with (1 and 5).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper
from onnx_import_helpers import make_model, ort_run, relative_error, seeded, tensor

from advcli.runtime.onnx_import import convert
from advcli.runtime.onnx_import.context import OPS

N = helper.make_node
X4 = (2, 5, 6)  # a (N, 2, 5, 6) input: odd sizes catch off-by-one padding and rounding
RNG = np.random.default_rng(0)


def w(*shape: int, low: float = -1.0, high: float = 1.0) -> np.ndarray:
    return RNG.uniform(low, high, size=shape).astype(np.float32)


def i64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


# (id, opset, input shape without batch, nodes, initializers)
CASES = [
    ("conv", 13, X4, [N("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])], [tensor("w", w(3, 2, 3, 3)), tensor("b", w(3))]),
    ("conv-asym-stride", 13, X4, [N("Conv", ["x", "w"], ["y"], pads=[0, 1, 2, 0], strides=[2, 1])], [tensor("w", w(4, 2, 3, 2))]),
    ("conv-group-dilated", 11, (4, 7, 7), [N("Conv", ["x", "w", "b"], ["y"], group=2, dilations=[2, 1], pads=[2, 1, 2, 1])],
     [tensor("w", w(6, 2, 3, 3)), tensor("b", w(6))]),
    ("conv-same-upper", 17, X4, [N("Conv", ["x", "w"], ["y"], auto_pad="SAME_UPPER", strides=[2, 2])], [tensor("w", w(3, 2, 4, 4))]),
    ("conv-same-lower", 17, X4, [N("Conv", ["x", "w"], ["y"], auto_pad="SAME_LOWER")], [tensor("w", w(3, 2, 2, 3))]),
    ("conv-valid", 22, X4, [N("Conv", ["x", "w"], ["y"], auto_pad="VALID")], [tensor("w", w(3, 2, 3, 3))]),
    ("conv-1d", 13, (2, 9), [N("Conv", ["x", "w", "b"], ["y"], pads=[1, 1])], [tensor("w", w(3, 2, 3)), tensor("b", w(3))]),
    ("conv-transpose", 13, X4, [N("ConvTranspose", ["x", "w", "b"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1])],
     [tensor("w", w(2, 3, 3, 3)), tensor("b", w(3))]),
    ("conv-transpose-asym", 13, X4, [N("ConvTranspose", ["x", "w", "b"], ["y"], strides=[2, 1], pads=[0, 1, 1, 0])],
     [tensor("w", w(2, 3, 3, 3)), tensor("b", w(3))]),
    ("conv-transpose-output-shape", 13, X4, [N("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], output_shape=[11, 12])],
     [tensor("w", w(2, 2, 3, 3))]),
    ("conv-transpose-group", 13, (4, 5, 5), [N("ConvTranspose", ["x", "w"], ["y"], group=2, strides=[2, 2])], [tensor("w", w(4, 3, 2, 2))]),
    ("gemm-transB", 13, (12,), [N("Gemm", ["x", "w", "c"], ["y"], transB=1)], [tensor("w", w(5, 12)), tensor("c", w(5))]),
    ("gemm-alpha-beta", 11, (12,), [N("Gemm", ["x", "w", "c"], ["y"], alpha=0.5, beta=2.0)], [tensor("w", w(12, 5)), tensor("c", w(1, 5))]),
    ("gemm-scalar-c", 13, (12,), [N("Gemm", ["x", "w", "c"], ["y"], transB=1)], [tensor("w", w(5, 12)), tensor("c", w(1))]),
    ("gemm-no-c", 13, (12,), [N("Gemm", ["x", "w"], ["y"])], [tensor("w", w(12, 4))]),
    ("matmul-const", 13, X4, [N("MatMul", ["x", "w"], ["y"])], [tensor("w", w(6, 4))]),
    ("matmul-runtime", 13, X4, [N("Transpose", ["x"], ["t"], perm=[0, 1, 3, 2]), N("MatMul", ["x", "t"], ["y"])], []),
    ("add-broadcast", 13, X4, [N("Add", ["x", "c"], ["y"])], [tensor("c", w(2, 1, 1))]),
    ("sub-scalar", 13, X4, [N("Sub", ["c", "x"], ["y"])], [tensor("c", np.float32(0.25))]),
    ("mul-runtime", 13, X4, [N("Mul", ["x", "x"], ["y"])], []),
    ("div-normalise", 13, X4, [N("Sub", ["x", "m"], ["s"]), N("Div", ["s", "d"], ["y"])],
     [tensor("m", w(1, 2, 1, 1)), tensor("d", w(1, 2, 1, 1, low=0.2, high=0.5))]),
    ("pow-square", 13, X4, [N("Pow", ["x", "p"], ["y"])], [tensor("p", np.float32(2.0))]),
    ("pow-cube", 13, X4, [N("Pow", ["x", "p"], ["y"])], [tensor("p", np.float32(3.0))]),
    *[(f"unary-{op.lower()}", 13, X4, [N("Sub", ["x", "h"], ["s"]), N(op, ["s"], ["y"])], [tensor("h", np.float32(0.5))])
      for op in ("Relu", "Sigmoid", "Tanh", "Erf", "Neg", "Abs", "Exp", "Floor", "Ceil", "Round", "Sign", "Softsign", "Elu",
                 "Sin", "Cos")],
    ("mish", 18, X4, [N("Sub", ["x", "h"], ["s"]), N("Mish", ["s"], ["y"])], [tensor("h", np.float32(0.5))]),
    ("sqrt-log-reciprocal", 13, X4, [N("Add", ["x", "h"], ["s"]), N("Sqrt", ["s"], ["r"]), N("Log", ["r"], ["l"]),
                                      N("Reciprocal", ["s"], ["q"]), N("Add", ["l", "q"], ["y"])], [tensor("h", np.float32(0.5))]),
    ("leaky-relu", 13, X4, [N("Sub", ["x", "h"], ["s"]), N("LeakyRelu", ["s"], ["y"], alpha=0.1)], [tensor("h", np.float32(0.5))]),
    ("gelu", 20, X4, [N("Sub", ["x", "h"], ["s"]), N("Gelu", ["s"], ["y"])], [tensor("h", np.float32(0.5))]),
    ("gelu-tanh", 20, X4, [N("Sub", ["x", "h"], ["s"]), N("Gelu", ["s"], ["y"], approximate="tanh")], [tensor("h", np.float32(0.5))]),
    ("hard-sigmoid", 13, X4, [N("HardSigmoid", ["x"], ["y"], alpha=0.3, beta=0.4)], []),
    ("hard-swish", 14, X4, [N("Sub", ["x", "h"], ["s"]), N("HardSwish", ["s"], ["y"])], [tensor("h", np.float32(0.5))]),
    ("softplus", 13, X4, [N("Softplus", ["x"], ["y"])], []),
    ("prelu-channel", 13, X4, [N("Sub", ["x", "h"], ["s"]), N("PRelu", ["s", "a"], ["y"])], [tensor("h", np.float32(0.5)), tensor("a", w(2, 1, 1))]),
    ("prelu-last-axis", 13, X4, [N("Sub", ["x", "h"], ["s"]), N("PRelu", ["s", "a"], ["y"])], [tensor("h", np.float32(0.5)), tensor("a", w(6))]),
    ("maxpool", 13, X4, [N("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2])], []),
    ("maxpool-pads", 13, X4, [N("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])], []),
    ("maxpool-ceil", 13, X4, [N("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)], []),
    ("maxpool-asym", 13, X4, [N("MaxPool", ["x"], ["y"], kernel_shape=[3, 2], strides=[2, 2], pads=[0, 1, 1, 0])], []),
    ("maxpool-dilated", 13, (2, 7, 7), [N("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], dilations=[2, 2])], []),
    ("maxpool-same", 13, X4, [N("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER")], []),
    ("avgpool", 13, X4, [N("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2])], []),
    ("avgpool-exclude-pad", 13, X4, [N("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])], []),
    ("avgpool-include-pad", 13, X4, [N("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1)], []),
    ("avgpool-asym", 13, X4, [N("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[0, 1, 2, 1])], []),
    ("avgpool-asym-include", 13, X4, [N("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], pads=[0, 1, 2, 1], count_include_pad=1)], []),
    ("global-avgpool", 13, X4, [N("GlobalAveragePool", ["x"], ["y"])], []),
    ("global-maxpool", 13, X4, [N("GlobalMaxPool", ["x"], ["y"])], []),
    *[(f"batchnorm-{opset}", opset, X4, [N("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], epsilon=1e-3)],
       [tensor("s", w(2)), tensor("b", w(2)), tensor("m", w(2)), tensor("v", w(2, low=0.5, high=2.0))]) for opset in (9, 14, 15)],
    ("layernorm", 17, X4, [N("LayerNormalization", ["x", "s", "b"], ["y"])], [tensor("s", w(6)), tensor("b", w(6))]),
    ("layernorm-axis1", 17, X4, [N("LayerNormalization", ["x", "s"], ["y"], axis=1, epsilon=1e-3)], [tensor("s", w(2, 5, 6))]),
    ("flatten", 13, X4, [N("Flatten", ["x"], ["y"])], []),
    ("flatten-axis2", 13, X4, [N("Flatten", ["x"], ["y"], axis=2)], []),
    ("flatten-axis0", 13, X4, [N("Flatten", ["x"], ["y"], axis=0)], []),
    ("reshape-zero", 13, X4, [N("Reshape", ["x", "s"], ["y"])], [tensor("s", i64(0, -1, 3))]),
    ("reshape-allowzero", 14, X4, [N("Reshape", ["x", "s"], ["y"], allowzero=1)], [tensor("s", i64(-1, 5, 12))]),
    *[(f"reshape-dynamic-{opset}", opset, X4, [
        N("Shape", ["x"], ["shape"]), N("Gather", ["shape", "zero"], ["batch"], axis=0),
        N("Unsqueeze", ["batch"], ["batch1"], axes=[0]) if opset < 13 else N("Unsqueeze", ["batch", "axes"], ["batch1"]),
        N("Concat", ["batch1", "minus"], ["target"], axis=0), N("Reshape", ["x", "target"], ["y"])],
        [tensor("zero", np.int64(0)), tensor("minus", i64(-1)), tensor("axes", i64(0))]) for opset in (11, 13)],
    ("reshape-shape-arithmetic", 13, X4, [
        N("Shape", ["x"], ["shape"]), N("Slice", ["shape", "s0", "s2"], ["lead"]), N("Slice", ["shape", "s2", "s4"], ["tail"]),
        N("ReduceProd", ["tail"], ["area"], keepdims=1), N("Concat", ["lead", "area"], ["target"], axis=0),
        N("Reshape", ["x", "target"], ["y"])], [tensor("s0", i64(0)), tensor("s2", i64(2)), tensor("s4", i64(4))]),
    ("transpose", 13, X4, [N("Transpose", ["x"], ["y"], perm=[0, 2, 3, 1])], []),
    ("concat", 13, X4, [N("Mul", ["x", "c"], ["m"]), N("Concat", ["x", "m", "x"], ["y"], axis=1)], [tensor("c", w(1, 1, 5, 6))]),
    ("concat-runtime-batch", 13, X4, [N("Concat", ["x", "x"], ["y"], axis=0)], []),
    ("pad-constant", 11, X4, [N("Pad", ["x", "p", "v"], ["y"])], [tensor("p", i64(0, 0, 1, 2, 0, 0, 3, 1)), tensor("v", np.float32(0.5))]),
    ("pad-axes", 18, X4, [N("Pad", ["x", "p", "", "a"], ["y"])], [tensor("p", i64(2, 1, 0, 3)), tensor("a", i64(2, 3))]),
    ("pad-reflect", 13, X4, [N("Pad", ["x", "p"], ["y"], mode="reflect")], [tensor("p", i64(0, 0, 1, 2, 0, 0, 2, 1))]),
    ("pad-edge", 13, X4, [N("Pad", ["x", "p"], ["y"], mode="edge")], [tensor("p", i64(0, 0, 1, 2, 0, 0, 2, 1))]),
    ("pad-wrap", 19, X4, [N("Pad", ["x", "p"], ["y"], mode="wrap")], [tensor("p", i64(0, 0, 1, 2, 0, 0, 2, 1))]),
    ("pad-negative", 13, X4, [N("Pad", ["x", "p"], ["y"])], [tensor("p", i64(0, 0, -1, 1, 0, 0, 1, -2))]),
    ("pad-channels", 13, X4, [N("Pad", ["x", "p"], ["y"])], [tensor("p", i64(0, 1, 0, 0, 0, 2, 0, 0))]),
    ("clip", 13, X4, [N("Clip", ["x", "lo", "hi"], ["y"])], [tensor("lo", np.float32(0.2)), tensor("hi", np.float32(0.7))]),
    ("clip-max-only", 13, X4, [N("Clip", ["x", "", "hi"], ["y"])], [tensor("hi", np.float32(0.6))]),
    ("clip-attributes-opset9", 9, X4, [N("Clip", ["x"], ["y"], min=0.3, max=0.6)], []),
    ("softmax-13", 13, X4, [N("Softmax", ["x"], ["y"], axis=1)], []),
    ("softmax-11-coerced", 11, X4, [N("Softmax", ["x"], ["y"], axis=2)], []),
    ("logsoftmax-11", 11, X4, [N("LogSoftmax", ["x"], ["y"])], []),
    ("reducemean-13", 13, X4, [N("ReduceMean", ["x"], ["y"], axes=[2, 3], keepdims=1)], []),
    ("reducemean-18", 18, X4, [N("ReduceMean", ["x", "a"], ["y"], keepdims=0)], [tensor("a", i64(-1, 1))]),
    ("reducemean-18-all", 18, X4, [N("ReduceMean", ["x"], ["y"], keepdims=1)], []),
    ("reducemean-18-noop", 18, X4, [N("ReduceMean", ["x"], ["y"], noop_with_empty_axes=1)], []),
    ("reducesum-13", 13, X4, [N("ReduceSum", ["x", "a"], ["y"], keepdims=0)], [tensor("a", i64(1))]),
    ("reducemin-l2-sumsquare-18", 18, X4, [N("ReduceMin", ["x", "a"], ["m"]), N("ReduceL2", ["x", "a"], ["l"]),
                                          N("ReduceSumSquare", ["x", "a"], ["q"]), N("Sum", ["m", "l", "q"], ["y"])], [tensor("a", i64(1, 3))]),
    ("reducemax-18", 18, X4, [N("ReduceMax", ["x", "a"], ["y"])], [tensor("a", i64(3))]),
    ("squeeze-unsqueeze-11", 11, X4, [N("Unsqueeze", ["x"], ["u"], axes=[2, -1]), N("Squeeze", ["u"], ["y"], axes=[2])], []),
    ("squeeze-unsqueeze-13", 13, X4, [N("Unsqueeze", ["x", "a"], ["u"]), N("Squeeze", ["u", "b"], ["y"])],
     [tensor("a", i64(1, 4)), tensor("b", i64(4))]),
    ("squeeze-all-ones", 13, (1, 5, 1), [N("Squeeze", ["x", "a"], ["y"])], [tensor("a", i64(1, 3))]),
    ("gather-indices", 13, X4, [N("Gather", ["x", "i"], ["y"], axis=3)], [tensor("i", i64(5, 0, -1, 2))]),
    ("gather-scalar", 13, X4, [N("Gather", ["x", "i"], ["y"], axis=2)], [tensor("i", np.int64(-2))]),
    ("gather-2d", 13, X4, [N("Gather", ["x", "i"], ["y"], axis=1)], [tensor("i", np.array([[0, 1], [1, 1]], dtype=np.int64))]),
    ("slice", 13, X4, [N("Slice", ["x", "s", "e", "a", "t"], ["y"])], [tensor("s", i64(1, 0)), tensor("e", i64(5, -1)),
                                                                        tensor("a", i64(3, 2)), tensor("t", i64(2, 1))]),
    ("slice-negative-step", 13, X4, [N("Slice", ["x", "s", "e", "a", "t"], ["y"])],
     [tensor("s", i64(-1)), tensor("e", i64(-9223372036854775807)), tensor("a", i64(3)), tensor("t", i64(-2))]),
    ("slice-dynamic-end", 13, X4, [N("Shape", ["x"], ["shape"]), N("Gather", ["shape", "k"], ["w"], axis=0),
                                   N("Unsqueeze", ["w", "z"], ["w1"]), N("Sub", ["w1", "one"], ["end"]),
                                   N("Slice", ["x", "one", "end", "three"], ["y"])],
     [tensor("k", np.int64(3)), tensor("z", i64(0)), tensor("one", i64(1)), tensor("three", i64(3))]),
    ("cast-int-and-back", 13, X4, [N("Mul", ["x", "k"], ["s"]), N("Cast", ["s"], ["i"], to=TensorProto.INT64),
                                   N("Cast", ["i"], ["y"], to=TensorProto.FLOAT)], [tensor("k", np.float32(7.0))]),
    ("constant-of-shape", 13, X4, [N("Shape", ["x"], ["shape"]), N("ConstantOfShape", ["shape"], ["c"],
                                    value=tensor("v", np.array([0.25], dtype=np.float32))), N("Add", ["x", "c"], ["y"])], []),
    ("range", 13, X4, [N("Shape", ["x"], ["shape"]), N("Gather", ["shape", "k"], ["w"], axis=0),
                       N("Range", ["zero", "w", "one"], ["r"]), N("Cast", ["r"], ["rf"], to=TensorProto.FLOAT),
                       N("Mul", ["x", "rf"], ["y"])], [tensor("k", np.int64(3)), tensor("zero", np.int64(0)), tensor("one", np.int64(1))]),
    ("expand-dynamic", 13, (1, 5, 6), [N("Shape", ["x"], ["shape"]), N("Slice", ["shape", "z", "one"], ["n"]),
                                       N("Concat", ["n", "rest"], ["target"], axis=0), N("Expand", ["x", "target"], ["y"])],
     [tensor("z", i64(0)), tensor("one", i64(1)), tensor("rest", i64(3, 5, 6))]),
    ("expand-const", 13, X4, [N("Expand", ["c", "s"], ["e"]), N("Add", ["x", "e"], ["y"])], [tensor("c", w(1, 6)), tensor("s", i64(2, 5, 1))]),
    ("constant-and-identity-weights", 13, X4, [
        N("Constant", [], ["wc"], value=tensor("v", w(3, 2, 3, 3))), N("Identity", ["wc"], ["w1"]), N("Identity", ["b"], ["b1"]),
        N("Conv", ["x", "w1", "b1"], ["y"])], [tensor("b", w(3))]),
    ("dropout-12", 12, X4, [N("Dropout", ["x", "r"], ["y"])], [tensor("r", np.float32(0.5))]),
    ("dropout-7", 7, X4, [N("Dropout", ["x"], ["y"], ratio=0.3)], []),
    ("where-equal", 13, X4, [N("Greater", ["x", "h"], ["g"]), N("Where", ["g", "x", "h"], ["y"])], [tensor("h", np.float32(0.5))]),
    ("logic", 13, X4, [N("Less", ["x", "a"], ["l"]), N("GreaterOrEqual", ["x", "b"], ["g"]), N("LessOrEqual", ["x", "b"], ["le"]),
                       N("And", ["l", "g"], ["both"]), N("Or", ["both", "le"], ["o"]), N("Xor", ["o", "g"], ["xo"]), N("Not", ["xo"], ["n"]),
                       N("Round", ["x"], ["r"]), N("Equal", ["r", "one"], ["e"]), N("Or", ["n", "e"], ["c"]),
                       N("Where", ["c", "x", "a"], ["y"])],
     [tensor("a", np.float32(0.7)), tensor("b", np.float32(0.3)), tensor("one", np.float32(1.0))]),
    ("max-min-sum-mean", 13, X4, [N("Max", ["x", "h"], ["a"]), N("Min", ["x", "h"], ["b"]), N("Sum", ["a", "b", "x"], ["c"]),
                                  N("Mean", ["c", "x"], ["y"])], [tensor("h", np.float32(0.5))]),
    ("split-13", 13, X4, [N("Split", ["x", "s"], ["a", "b"], axis=3), N("Mul", ["a", "b"], ["y"])], [tensor("s", i64(3, 3))]),
    ("split-18", 18, X4, [N("Split", ["x"], ["a", "b", "c"], axis=2, num_outputs=3), N("Concat", ["c", "a", "b"], ["y"], axis=2)], []),
    ("tile", 13, X4, [N("Tile", ["x", "r"], ["y"])], [tensor("r", i64(1, 2, 1, 3))]),
    ("argmin-castlike", 15, X4, [N("ArgMin", ["x"], ["a"], axis=1), N("CastLike", ["a", "x"], ["y"])], []),
    ("size", 13, X4, [N("Size", ["x"], ["n"]), N("Cast", ["n"], ["f"], to=TensorProto.FLOAT), N("Mul", ["x", "f"], ["y"])], []),
    ("argmax-cast", 13, X4, [N("ArgMax", ["x"], ["a"], axis=3, keepdims=0, select_last_index=1),
                             N("Cast", ["a"], ["y"], to=TensorProto.FLOAT)], []),
    ("resize-nearest-asymmetric", 13, X4, [N("Resize", ["x", "", "s"], ["y"], mode="nearest", coordinate_transformation_mode="asymmetric",
                                            nearest_mode="floor")], [tensor("s", np.array([1, 1, 2, 2], dtype=np.float32))]),
    ("resize-nearest-half-pixel-down", 18, (2, 8, 8), [N("Resize", ["x", "", "", "z"], ["y"], mode="nearest", axes=[2, 3])],
     [tensor("z", i64(4, 3))]),
    ("resize-nearest-tf", 13, X4, [N("Resize", ["x", "", "s"], ["y"], coordinate_transformation_mode="tf_half_pixel_for_nn",
                                    nearest_mode="round_prefer_ceil")], [tensor("s", np.array([1, 1, 1.5, 1.7], dtype=np.float32))]),
    ("resize-nearest-opset11", 11, X4, [N("Resize", ["x", "roi", "s"], ["y"], mode="nearest", coordinate_transformation_mode="asymmetric",
                                         nearest_mode="floor")],
     [tensor("roi", np.array([], dtype=np.float32)), tensor("s", np.array([1, 1, 2, 3], dtype=np.float32))]),
    ("resize-linear-half-pixel", 13, X4, [N("Resize", ["x", "", "s"], ["y"], mode="linear")],
     [tensor("s", np.array([1, 1, 2, 2], dtype=np.float32))]),
    ("resize-linear-pytorch", 13, X4, [N("Resize", ["x", "", "s"], ["y"], mode="linear", coordinate_transformation_mode="pytorch_half_pixel")],
     [tensor("s", np.array([1, 1, 0.5, 1.5], dtype=np.float32))]),
    ("resize-linear-align-corners", 18, X4, [N("Resize", ["x", "", "", "z"], ["y"], mode="linear", coordinate_transformation_mode="align_corners",
                                              axes=[3, 2])], [tensor("z", i64(4, 9))]),
    ("resize-linear-asymmetric-18", 18, X4, [N("Resize", ["x", "", "", "z"], ["y"], mode="linear", coordinate_transformation_mode="asymmetric",
                                              axes=[2, 3])], [tensor("z", i64(7, 11))]),
    ("resize-linear-symmetric-19", 19, X4, [N("Resize", ["x", "", "s"], ["y"], mode="linear",
                                             coordinate_transformation_mode="half_pixel_symmetric")],
     [tensor("s", np.array([1, 1, 1.7, 2.3], dtype=np.float32))]),
    ("resize-cubic", 13, X4, [N("Resize", ["x", "", "s"], ["y"], mode="cubic")], [tensor("s", np.array([1, 1, 2, 2], dtype=np.float32))]),
    ("resize-cubic-exclude", 13, X4, [N("Resize", ["x", "", "s"], ["y"], mode="cubic", exclude_outside=1, cubic_coeff_a=-0.5)],
     [tensor("s", np.array([1, 1, 1.5, 0.5], dtype=np.float32))]),
    *[(f"old-{op.lower()}-{opset}-{mode}", opset, X4, [N(op, ["x", "s"], ["y"], mode=mode)],
       [tensor("s", np.array([1, 1, 2, 1.5], dtype=np.float32))])
      for op, opset in (("Upsample", 9), ("Resize", 10)) for mode in ("nearest", "linear")],
    ("old-slice-10", 10, X4, [N("Slice", ["x", "a", "b", "c"], ["y"])], [tensor("a", i64(1)), tensor("b", i64(4)), tensor("c", i64(3))]),
    ("old-pad-9", 9, X4, [N("Pad", ["x"], ["y"], pads=[0, 0, 1, 2, 0, 0, 2, 1], value=0.5)], []),
    ("old-reducemean-9", 9, X4, [N("ReduceMean", ["x"], ["y"], axes=[2])], []),
    ("resize-dynamic-sizes", 13, X4, [N("Shape", ["x"], ["shape"]), N("Slice", ["shape", "z", "two"], ["nc"]),
                                      N("Concat", ["nc", "hw"], ["sizes"], axis=0), N("Resize", ["x", "", "", "sizes"], ["y"], mode="nearest")],
     [tensor("z", i64(0)), tensor("two", i64(2)), tensor("hw", i64(10, 3))]),
]

INT_OUTPUT = {"argmax-cast", "argmin-castlike", "cast-int-and-back"}


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_operator_matches_onnxruntime(case, one_thread):
    name, opset, shape, nodes, initializers = case
    data = make_model(nodes, shape, opset=opset, initializers=initializers)
    converted = convert(data)
    for batch in (5, 1):
        x = seeded(batch, *shape, seed=batch)
        expected = ort_run(data, x)
        with torch.no_grad():
            actual = converted.module(torch.from_numpy(x)).numpy()
        if name in INT_OUTPUT:
            assert np.array_equal(actual, expected)
        else:
            assert relative_error(actual, expected) <= 1e-5, name


def test_every_registered_operator_has_a_parity_case():
    covered = {node.op_type for case in CASES for node in case[3]}
    assert sorted(set(OPS) - covered) == []
