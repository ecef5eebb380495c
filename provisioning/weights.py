"""Expand a shipped model's narrow-stored weights (float16 or INT8 through Cast and Mul) to float32 initializers."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

NARROW = (TensorProto.FLOAT16, TensorProto.INT8)
"""Initializer types a distilled student may store its weights in (``distill.export.compact`` and ``store_int8``)."""


def expand_stored_weights(model: onnx.ModelProto) -> int:
    """Fold each ``Cast`` of a narrow initializer to float32, and each ``Mul`` of such a result by a float32
    constant (an INT8 weight's scale), into one float32 initializer, in place; returns how many were made.

    ONNX Runtime folds these itself when it loads a model, but TensorRT's parser and ONNX Runtime's quantiser
    see an INT8 constant without its Q/DQ pair, so provisioning hands them plain float32 weights. The values are
    the ones the runtime computes (the same float32 cast and product); every other node is left as it was.
    """
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    folded: dict[str, np.ndarray] = {}
    dropped: set[int] = set()

    def constant(name: str) -> np.ndarray | None:
        if name in folded:
            return folded[name]
        init = inits.get(name)
        return numpy_helper.to_array(init) if init is not None and init.data_type == TensorProto.FLOAT else None

    for k, node in enumerate(graph.node):
        if node.op_type == "Cast" and node.input[0] in inits and inits[node.input[0]].data_type in NARROW:
            to = next((a.i for a in node.attribute if a.name == "to"), None)
            if to == TensorProto.FLOAT:
                folded[node.output[0]] = numpy_helper.to_array(inits[node.input[0]]).astype(np.float32)
                dropped.add(k)
        elif node.op_type == "Mul" and any(i in folded for i in node.input):
            a, b = (constant(i) for i in node.input)
            if a is not None and b is not None:
                folded[node.output[0]] = (a * b).astype(np.float32)
                dropped.add(k)
    if not dropped:
        return 0
    kept = [n for k, n in enumerate(graph.node) if k not in dropped]
    used = {i for n in kept for i in n.input} | {o.name for o in graph.output}
    made = [numpy_helper.from_array(folded[name], name) for name in folded if name in used]
    initializers = [i for i in graph.initializer if i.name in used] + made
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    del graph.node[:]
    graph.node.extend(kept)
    onnx.checker.check_model(model)
    return len(made)
