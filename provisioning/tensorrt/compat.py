"""Static TensorRT compatibility check of an ONNX graph: ops, attributes, types and opset of the targeted versions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from jetvox.provisioning.split import _const_tensors

# ONNX operators the TensorRT ONNX parser supports ("Y" in onnx-tensorrt's docs/operators.md of the
# release/8.6-GA branch, and in both 10.0-GA and the 10.x main branch for "10").
_COMMON = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast Ceil Celu Clip
Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace DequantizeLinear Div Dropout
Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor GRU Gather GatherElements GatherND Gemm GlobalAveragePool
GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization HardSigmoid HardSwish Identity If
ImageScaler InstanceNormalization IsInf IsNaN LRN LSTM LayerNormalization LeakyRelu Less LessOrEqual Log
LogSoftmax Loop LpNormalization LpPool MatMul Max MaxPool Mean MeanVarianceNormalization Min Mod Mul Neg
NonMaxSuppression NonZero Not OneHot Or PRelu Pad ParametricSoftplus Pow QuantizeLinear RNN RandomNormal
RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceLogSum ReduceLogSumExp ReduceMax
ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RoiAlign Round
ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax
Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu
Unsqueeze Upsample Where Xor
""".split())
SUPPORTED_OPS: Mapping[str, frozenset[str]] = {
    "8.6": _COMMON,
    "10": _COMMON | {"CastLike", "Gelu", "Hardmax", "Mish"},
}
MAX_OPSET: Mapping[str, int] = {"8.6": 17, "10": 20}
"""Highest ai.onnx opset each parser reads (8.6: "up to Opset 17"; 10.0: "opset 9 to opset 20")."""
TARGETS = ("8.6", "10")
"""JetPack 6.0 ships TensorRT 8.6; JetPack 6.1 and 6.2 ship 10.3."""

# Inputs the parser requires to be constants (the matrices' "must be an initializer" restrictions).
CONSTANT_INPUTS: Mapping[str, tuple[int, ...]] = {
    "Slice": (3,), "Squeeze": (1,), "Unsqueeze": (1,), "CumSum": (1,), "Pad": (3,),
    "ReduceMax": (1,), "ReduceMean": (1,), "ReduceSum": (1,), "ReduceMin": (1,), "ReduceProd": (1,),
    "TopK": (1,),
}
ZERO_POINTS: Mapping[str, int] = {"QuantizeLinear": 2, "DequantizeLinear": 2}
"""Q/DQ: the zero point (input 2) must be zero (TensorRT quantises symmetrically)."""
UNSUPPORTED_TYPES = {TensorProto.DOUBLE: "float64", TensorProto.STRING: "string", TensorProto.COMPLEX64: "complex64",
                     TensorProto.COMPLEX128: "complex128"}


@dataclass(frozen=True)
class Problem:
    """One thing a TensorRT version would refuse."""

    target: str
    """TensorRT version (``8.6`` or ``10``)."""
    node: str
    """Node name (or op type and index when unnamed), or ``model`` for graph-wide problems."""
    what: str
    """What is wrong, and what the parser expects."""

    def __str__(self) -> str:
        return f"TensorRT {self.target}: {self.node}: {self.what}"


def check_model(model: onnx.ModelProto, targets: tuple[str, ...] = TARGETS) -> list[Problem]:
    """Every op, attribute, type and opset in ``model`` that a targeted TensorRT ONNX parser would refuse."""
    graph = model.graph
    consts = _const_tensors(graph)
    inits = {i.name: i for i in graph.initializer}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    problems: list[Problem] = []
    for target in targets:
        if opset > MAX_OPSET[target]:
            problems.append(Problem(target, "model", f"opset {opset}; the parser reads up to {MAX_OPSET[target]}"))
    for tensor in list(graph.input) + list(graph.output) + list(graph.value_info):
        elem = tensor.type.tensor_type.elem_type
        if elem in UNSUPPORTED_TYPES:
            problems += [Problem(t, tensor.name, f"type {UNSUPPORTED_TYPES[elem]} is not a TensorRT type") for t in targets]
    for init in graph.initializer:
        if init.data_type in UNSUPPORTED_TYPES:
            problems += [Problem(t, init.name, f"initializer of type {UNSUPPORTED_TYPES[init.data_type]}") for t in targets]
    for idx, node in enumerate(graph.node):
        label = node.name or f"{node.op_type}#{idx}"
        if node.domain not in ("", "ai.onnx"):
            problems += [Problem(t, label, f"custom-domain op {node.domain}::{node.op_type} needs a plugin") for t in targets]
            continue
        for target in targets:
            if node.op_type not in SUPPORTED_OPS[target]:
                problems.append(Problem(target, label, f"op {node.op_type} is not supported by the ONNX parser"))
        for k in CONSTANT_INPUTS.get(node.op_type, ()):
            if k < len(node.input) and node.input[k] and node.input[k] not in consts:
                problems += [Problem(t, label, f"{node.op_type} input {k} ({node.input[k]}) must be a constant")
                             for t in targets]
        zp_at = ZERO_POINTS.get(node.op_type)
        if zp_at is not None and zp_at < len(node.input) and node.input[zp_at]:
            zp = inits.get(node.input[zp_at])
            if zp is None or np.any(numpy_helper.to_array(zp) != 0):
                problems += [Problem(t, label, f"{node.op_type} zero point must be 0 (symmetric INT8)") for t in targets]
        if node.op_type == "ScatterND" and any(a.name == "reduction" and a.s not in (b"", b"none") for a in node.attribute):
            problems += [Problem(t, label, "ScatterND with a reduction") for t in targets]
    return problems
