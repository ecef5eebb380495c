"""Cut an acoustic model at its duration boundary into static-shape stages (encoder, regulator, decoder)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from jetvox.engines.onnxrt import ort_session
from jetvox.provisioning.split import SplitError, _const_tensors

log = logging.getLogger(__name__)

STAGES_VERSION = 1
"""Bump when the cut changes (part of the provisioning step's key)."""
DURATIONS = "durations"
Z = "z"
FRAMES = "frames"
PHONEMES = "phonemes"

# Ops whose output shape comes from the value of an input: (op, the inputs that set the shape).
SHAPE_FROM_VALUE: Mapping[str, tuple[int, ...]] = {
    "Range": (0, 1, 2), "ConstantOfShape": (0,), "Expand": (1,), "Reshape": (1,), "Tile": (1,),
    "Slice": (1, 2, 3, 4), "Pad": (1,), "Resize": (1, 2, 3), "OneHot": (1,), "TopK": (1,),
    "Squeeze": (1,), "Unsqueeze": (1,),
}
# Ops that belong on the host whenever they see the durations: data-dependent output shapes, prefix sums
# (FP16 CumSum is exact only up to 2,048) and random draws (kept out of the engines so they are pure).
HOST_OPS = frozenset({"NonZero", "Compress", "CumSum", "RandomNormal", "RandomNormalLike", "RandomUniform",
                      "RandomUniformLike", "Multinomial", "Loop", "If", "Scan"})
# Ops through which a tensor's *shape*, not its value, flows on.
SHAPE_READERS = frozenset({"Shape", "Size"})


@dataclass(frozen=True)
class Stages:
    """The three models and what the split found."""

    encoder: onnx.ModelProto
    """Phoneme ids to phoneme-rate features and ``durations`` (shapes follow the ids)."""
    regulator: onnx.ModelProto
    """Durations and features to frame-rate tensors: the data-dependent part (ONNX Runtime on the CPU)."""
    decoder: onnx.ModelProto
    """Frame-rate tensors to ``z`` (shapes follow the frame count)."""
    summary: dict
    """Node counts per stage and the tensors passed between them."""


def _probe_shapes(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape for one run (ONNX Runtime, unoptimised graph, all intermediates exposed)."""
    return {k: tuple(v.shape) for k, v in probe_values(model, feeds).items()}


def probe_values(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray],
                 constants: bool = False) -> dict[str, np.ndarray]:
    """Every node output's value for one run (ONNX Runtime, unoptimised graph, all exposed).

    Args:
        model: the graph.
        feeds: its inputs.
        constants: also the outputs of nodes computed from constants alone (a constant subgraph).
    """
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    have = {o.name for o in probe.graph.output}
    consts = set() if constants else _const_tensors(probe.graph)
    for node in probe.graph.node:
        for out in node.output:
            if out and out not in have and out not in consts:
                probe.graph.output.append(onnx.ValueInfoProto(name=out))
                have.add(out)
    sess = ort_session(probe.SerializeToString(), optimize=False)
    names = [o.name for o in sess.get_outputs()]
    values = sess.run(names, dict(feeds))
    return {n: np.asarray(v) for n, v in zip(names, values)} | dict(feeds)


def _axes(a: tuple[int, ...], b: tuple[int, ...], p: tuple[int, int], t: tuple[int, int]) -> list[int | str] | None:
    """Symbolic dims of a tensor from two probes: ``phonemes``, ``frames``, a fixed int, or None (neither)."""
    if len(a) != len(b):
        return None
    dims: list[int | str] = []
    for x, y in zip(a, b):
        if (x, y) == p:
            dims.append(PHONEMES)
        elif (x, y) == t:
            dims.append(FRAMES)
        elif x == y:
            dims.append(int(x))
        else:
            return None
    return dims


def _reroute_durations(model: onnx.ModelProto, shapes: Mapping[str, tuple[int, ...]]) -> onnx.ModelProto:
    """Make ``durations`` [1, P] the one tensor the frame side reads the durations from.

    In a Piper split, ``durations`` is a Reshape of the duration predictor's ``Ceil`` [1, 1, P], whose
    consumers build the alignment; they are given a Reshape of ``durations`` back to that shape instead,
    so the stages pass the canonical tensor (and the runtime may rescale it).
    """
    graph = model.graph
    producer = next((n for n in graph.node if DURATIONS in n.output), None)
    if producer is None:
        raise SplitError("the acoustic model has no 'durations' output: it cannot be staged")
    if producer.op_type not in ("Reshape", "Squeeze", "Unsqueeze", "Identity"):
        return model
    src = producer.input[0]
    if not any(src in n.input for n in graph.node if n is not producer):
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    dims = [-1 if d == shapes[DURATIONS][1] else d for d in shapes[src]]
    g.initializer.append(numpy_helper.from_array(np.array(dims, dtype=np.int64), "jetvox/durations_back_shape"))
    back = f"{DURATIONS}/as_{src.strip('/').replace('/', '_')}"
    node = helper.make_node("Reshape", [DURATIONS, "jetvox/durations_back_shape"], [back], name="jetvox/durations_back")
    for n in g.node:
        if n.name != producer.name:
            n.input[:] = [back if i == src else i for i in n.input]
    g.node.append(node)
    return _toposort(out)


def _toposort(model: onnx.ModelProto) -> onnx.ModelProto:
    graph = model.graph
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    order = []
    while pending:
        rest = []
        for n in pending:
            if all(i in ready for i in n.input):
                order.append(n)
                ready.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise SplitError("the acoustic graph has a cycle or an undefined tensor")
        pending = rest
    del graph.node[:]
    graph.node.extend(order)
    return model


def _closure(start: set[str], nodes: Sequence[onnx.NodeProto], through_shape: bool) -> tuple[set[str], set[int]]:
    """Tensors computed from ``start`` and the indices of the nodes computing them (graph order)."""
    tensors, hit = set(start), set()
    for idx, node in enumerate(nodes):
        if not through_shape and node.op_type in SHAPE_READERS:
            continue
        if any(i in tensors for i in node.input if i):
            hit.add(idx)
            tensors.update(o for o in node.output if o)
    return tensors, hit


def split_stages(model: onnx.ModelProto, probes: Sequence[Mapping[str, np.ndarray]]) -> Stages:
    """Cut ``model`` (inputs ``input``, ``input_lengths``, ``scales``; outputs ``z``, ``durations``) into stages.

    Args:
        model: the acoustic model (FP32 or Q/DQ INT8).
        probes: feeds for at least two sentences whose phoneme and frame counts are all distinct; the
            stages' symbolic shapes (``phonemes``, ``frames``) are read from the tensors' shapes in these runs.
    """
    first = _probe_shapes(model, probes[0])
    pair = _distinct_pair(model, probes, first)
    model = _reroute_durations(model, first)
    shapes_a, shapes_b = (_probe_shapes(model, f) for f in pair)
    p = (shapes_a[DURATIONS][1], shapes_b[DURATIONS][1])
    t = (shapes_a[Z][2], shapes_b[Z][2])
    dims = {name: _axes(shapes_a[name], shapes_b.get(name, ()), p, t) for name in shapes_a}
    cut = _Cut(model, dims)
    for name in cut.dec_inputs:
        if dims.get(name) is None or PHONEMES in (dims.get(name) or []):
            raise SplitError(f"decoder input {name} is not frame-rate (shape {shapes_a.get(name)}); cannot stage")
    extract = onnx.utils.Extractor(_with_value_infos(model, pair[0], dims, shapes_a))
    encoder = extract.extract_model(cut.graph_inputs, cut.enc_outputs)
    regulator = extract.extract_model(cut.reg_inputs, cut.reg_outputs)
    decoder = extract.extract_model(cut.dec_inputs, [Z])
    for stage, name in ((encoder, "encoder"), (regulator, "regulator"), (decoder, "decoder")):
        _declare_io(stage, dims, shapes_a)
        stage.graph.name = f"jetvox-acoustic-{name}"
        onnx.checker.check_model(stage)
    summary = {
        "nodes": {"encoder": len(encoder.graph.node), "regulator": len(regulator.graph.node),
                  "decoder": len(decoder.graph.node)},
        "encoder_outputs": cut.enc_outputs, "decoder_inputs": cut.dec_inputs,
    }
    log.info("acoustic stages: %s", summary["nodes"])
    return Stages(encoder, regulator, decoder, summary)


class _Cut:
    """Which nodes are regulator and which decoder, and the tensors each stage takes and gives."""

    def __init__(self, model: onnx.ModelProto, dims: Mapping[str, list[int | str] | None]) -> None:
        graph = model.graph
        self.nodes = list(graph.node)
        self.consts = _const_tensors(graph)
        self.graph_inputs = [i.name for i in graph.input]
        self.dims = dims
        _, dep = _closure({DURATIONS}, self.nodes, through_shape=True)  # the frame side: all the durations reach
        dv, _ = _closure({DURATIONS}, self.nodes, through_shape=False)  # tensors whose values follow them
        self.produced_by = {o: idx for idx, n in enumerate(self.nodes) for o in n.output if o}
        regulate = self._regulator(dep, dv)
        decode = {idx for idx in dep if idx not in regulate}
        if self.produced_by.get(Z) not in decode:
            raise SplitError("z is not computed by a static-shape decoder after the durations; cannot stage this model")
        self.dec_inputs = self._external_inputs(decode)
        self.reg_inputs = self._external_inputs(regulate)
        self.reg_outputs = [i for i in self.dec_inputs if self.produced_by.get(i) in regulate]
        encoder_side = [i for i in self.dec_inputs + self.reg_inputs
                        if i not in self.graph_inputs and self.produced_by.get(i) not in dep]
        self.enc_outputs = list(dict.fromkeys([DURATIONS, *encoder_side]))

    def _phoneme_rate(self, name: str) -> bool:
        d = self.dims.get(name)
        return d is None or PHONEMES in d

    def _regulator(self, dep: set[int], dv: set[str]) -> set[int]:
        """Frame-side nodes that set shapes from values, run host ops or read phoneme-rate tensors, and what they need."""
        regulate = set()
        for idx in dep:
            node = self.nodes[idx]
            shape_inputs = [node.input[k] for k in SHAPE_FROM_VALUE.get(node.op_type, ()) if k < len(node.input)]
            if (node.op_type in HOST_OPS or any(i in dv for i in shape_inputs if i)
                    or any(self._phoneme_rate(i) for i in node.input if i and i not in self.consts)
                    or any(self._phoneme_rate(o) for o in node.output if o)):
                regulate.add(idx)
        todo = list(regulate)
        while todo:  # everything on the frame side that a regulator node needs is regulator too
            for i in self.nodes[todo.pop()].input:
                src = self.produced_by.get(i)
                if src is not None and src in dep and src not in regulate:
                    regulate.add(src)
                    todo.append(src)
        return regulate

    def _external_inputs(self, members: set[int]) -> list[str]:
        inside = {o for idx in members for o in self.nodes[idx].output}
        seen: dict[str, None] = {}
        for idx in sorted(members):
            for i in self.nodes[idx].input:
                if i and i not in inside and i not in self.consts:
                    seen[i] = None
        return list(seen)


def value_shaped_nodes(model: onnx.ModelProto) -> list[str]:
    """Nodes whose output shape follows the *values* of the graph's inputs (not only their shapes).

    A TensorRT engine of a graph without them has shapes that follow its input shapes alone: static
    within its optimisation profile.
    """
    nodes = list(model.graph.node)
    consts = _const_tensors(model.graph)
    start = {i.name for i in model.graph.input if i.name not in consts}
    dv, _ = _closure(start, nodes, through_shape=False)
    out = []
    for idx, node in enumerate(nodes):
        shape_inputs = [node.input[k] for k in SHAPE_FROM_VALUE.get(node.op_type, ()) if k < len(node.input)]
        if node.op_type in ("NonZero", "Compress") or any(i in dv for i in shape_inputs if i):
            out.append(node.name or f"{node.op_type}#{idx}")
    return out


def _distinct_pair(
    model: onnx.ModelProto, probes: Sequence[Mapping[str, np.ndarray]], first: Mapping[str, tuple[int, ...]]
) -> tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]]:
    """Two probes whose phoneme and frame counts are four distinct numbers, none a fixed size of the graph."""
    runs = [(probes[0], first)] + [(f, _probe_shapes(model, f)) for f in probes[1:]]
    fixed = {1, 2, 3}
    for n, (fa, sa) in enumerate(runs):
        for fb, sb in runs[n + 1:]:
            counts = {sa[DURATIONS][1], sb[DURATIONS][1], sa[Z][2], sb[Z][2]}
            if len(counts) == 4 and not counts & fixed:
                return fa, fb
    raise SplitError("staging needs two probe sentences with distinct phoneme and frame counts")


def _with_value_infos(
    model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], dims: Mapping[str, list[int | str] | None],
    shapes: Mapping[str, tuple[int, ...]],
) -> onnx.ModelProto:
    """A copy of ``model`` with a value_info (type and symbolic shape) for every tensor, as the Extractor needs."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    types = {k: helper.np_dtype_to_tensor_dtype(v.dtype) for k, v in probe_values(model, feeds).items()}
    del out.graph.value_info[:]
    known = {vi.name for vi in list(out.graph.input) + list(out.graph.output)}
    for name, elem in types.items():
        if name not in known:
            out.graph.value_info.append(helper.make_tensor_value_info(name, elem, dims.get(name) or None))
    return out


def _declare_io(model: onnx.ModelProto, dims: Mapping[str, list[int | str] | None], shapes: Mapping[str, tuple]) -> None:
    """Give every input and output its element type and symbolic shape (``phonemes``, ``frames``)."""
    types = {vi.name: vi.type.tensor_type.elem_type for vi in onnx.shape_inference.infer_shapes(model).graph.value_info}
    for vi in list(model.graph.input) + list(model.graph.output):
        elem = vi.type.tensor_type.elem_type or types.get(vi.name, onnx.TensorProto.FLOAT)
        shape = dims.get(vi.name) or list(shapes[vi.name])
        vi.CopyFrom(helper.make_tensor_value_info(vi.name, elem, shape))


def qdq_nodes(model: onnx.ModelProto) -> int:
    """QuantizeLinear nodes in ``model`` (an INT8 TensorRT build needs them; without, it is FP16)."""
    return sum(n.op_type == "QuantizeLinear" for n in model.graph.node)
