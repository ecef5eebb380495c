"""Tests for expanding narrow-stored weights to float32 (provisioning.weights)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from jetvox.provisioning.weights import expand_stored_weights

SHIPPED = Path(__file__).resolve().parent.parent / "device" / "voice" / "shipped" / "joe-fast"


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """As the runtime runs it: the stored weights folded at load (and then, as initializers, pre-packed)."""
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


def _stored_model() -> onnx.ModelProto:
    """x @ W + b, W stored INT8 with one scale per output column and b stored float16; a Cast of an input kept."""
    rng = np.random.default_rng(0)
    q = rng.integers(-127, 128, (6, 4)).astype(np.int8)
    nodes = [
        helper.make_node("Cast", ["w__int8"], ["w__wide"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["w__wide", "w__scale"], ["w"]),
        helper.make_node("Cast", ["b__fp16"], ["b"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["n"], ["n32"], to=TensorProto.FLOAT),  # not a weight: stays
        helper.make_node("MatMul", ["x", "w"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["xwb"]),
        helper.make_node("Mul", ["xwb", "n32"], ["y"]),
    ]
    inits = [numpy_helper.from_array(q, "w__int8"),
             numpy_helper.from_array(rng.uniform(0.001, 0.01, (1, 4)).astype(np.float32), "w__scale"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float16), "b__fp16")]
    graph = helper.make_graph(nodes, "stored", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6]),
                                                helper.make_tensor_value_info("n", TensorProto.INT64, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_int8_and_float16_weights_become_the_float32_the_runtime_computes() -> None:
    model = _stored_model()
    feeds = {"x": np.random.default_rng(1).standard_normal((2, 6)).astype(np.float32), "n": np.array([3])}
    before = _run(model, feeds)
    assert expand_stored_weights(model) == 2  # w and b
    assert {i.name: i.data_type for i in model.graph.initializer} == {"w": TensorProto.FLOAT, "b": TensorProto.FLOAT}
    assert [n.op_type for n in model.graph.node] == ["Cast", "MatMul", "Add", "Mul"]  # the input's Cast kept
    np.testing.assert_array_equal(_run(model, feeds), before)
    assert expand_stored_weights(model) == 0  # nothing narrow left


def test_the_shipped_vocoder_expands_to_the_same_audio() -> None:
    model = onnx.load(str(SHIPPED / "vocoder.onnx"))
    narrow = sum(i.data_type in (TensorProto.FLOAT16, TensorProto.INT8) for i in model.graph.initializer)
    z = np.random.default_rng(2).standard_normal((1, 192, 30)).astype(np.float32)
    before = _run(model, {"z": z})
    assert expand_stored_weights(model) == narrow > 0
    assert not any(i.data_type in (TensorProto.FLOAT16, TensorProto.INT8) for i in model.graph.initializer)
    np.testing.assert_array_equal(_run(model, {"z": z}), before)
