"""Compute cost of an ONNX model: multiply-accumulates from its Conv/ConvTranspose/MatMul/Gemm nodes, and ORT CPU time."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import onnx

from jetvox.engines.onnxrt import ort_session

log = logging.getLogger(__name__)

COUNTED = ("Conv", "ConvTranspose", "MatMul", "Gemm")


@dataclass(frozen=True)
class MacCount:
    """Multiply-accumulates of one run of a model on a fixed input."""

    total: int
    """All counted multiply-accumulates."""
    by_op: dict[str, int]
    """Per operator type."""
    uncounted: int
    """Counted-type nodes whose shapes were unknown (0 when the count is complete)."""


def _shapes_by_running(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    """Concrete shape of every tensor, by running the model once with every node output exposed as a graph output.

    Static shape inference cannot follow data-dependent sizes (frames from durations), so the fixed input is run.
    """
    m = onnx.ModelProto()
    m.CopyFrom(model)
    known = {o.name for o in m.graph.output}
    wanted = []
    for node in m.graph.node:
        if node.op_type not in COUNTED:
            continue
        for name in list(node.input[:2]) + list(node.output[:1]):
            if name and name not in known:
                known.add(name)
                wanted.append(name)
    inits = {i.name: tuple(i.dims) for i in m.graph.initializer}
    wanted = [n for n in wanted if n not in inits]
    for name in wanted:
        m.graph.output.append(onnx.ValueInfoProto(name=name))
    sess = ort_session(m.SerializeToString(), optimize=False)
    names = [o.name for o in sess.get_outputs()]
    values = sess.run(names, dict(feeds))
    shapes = dict(inits)
    shapes.update({n: tuple(np.shape(v)) for n, v in zip(names, values)})
    return shapes


def count_macs(model: onnx.ModelProto | Path | str, feeds: Mapping[str, np.ndarray]) -> MacCount:
    """Multiply-accumulates of the Conv, ConvTranspose, MatMul and Gemm nodes for one run on ``feeds``.

    Args:
        model: an ONNX model or its path.
        feeds: the fixed input (names to arrays) whose run is counted.
    """
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    shapes = _shapes_by_running(model, feeds)
    by_op = {op: 0 for op in COUNTED}
    uncounted = 0
    for node in model.graph.node:
        if node.op_type not in COUNTED:
            continue
        a, b = (shapes.get(node.input[0]), shapes.get(node.input[1]))
        out = shapes.get(node.output[0])
        if a is None or b is None or out is None:
            uncounted += 1
            continue
        if node.op_type == "Conv":  # W [Cout, Cin/g, k...]: each output element costs Cin/g * prod(k)
            macs = int(np.prod(out)) * int(np.prod(b[1:]))
        elif node.op_type == "ConvTranspose":  # W [Cin, Cout/g, k...]: each input element scatters Cout/g * prod(k)
            macs = int(np.prod(a)) * int(np.prod(b[1:]))
        elif node.op_type == "MatMul":
            macs = int(np.prod(out)) * int(a[-1])
        else:  # Gemm: out [M, N], inner dimension from A (transposed or not)
            trans_a = next((at.i for at in node.attribute if at.name == "transA"), 0)
            macs = int(np.prod(out)) * int(a[0] if trans_a else a[-1])
        by_op[node.op_type] += macs
    if uncounted:
        log.warning("%d counted-type node(s) had no known shape; the MAC count is a lower bound", uncounted)
    return MacCount(total=sum(by_op.values()), by_op=by_op, uncounted=uncounted)


def ort_seconds(path: Path, feeds: Mapping[str, np.ndarray], threads: int = 1, repeats: int = 3) -> float:
    """Best-of-``repeats`` wall time of one ONNX Runtime CPU run (after one warm-up run).

    Args:
        path: the ``.onnx`` file.
        feeds: the input.
        threads: intra-op threads (1 = the per-core cost).
        repeats: timed runs.
    """
    sess = ort_session(path, threads=threads)
    sess.run(None, dict(feeds))
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        sess.run(None, dict(feeds))
        best = min(best, time.perf_counter() - t)
    return best
