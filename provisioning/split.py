"""Split a Piper VITS graph into an acoustic model and a vocoder where the decoder begins."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable

import onnx
from onnx import helper, shape_inference

from jetvox.engines.errors import JetvoxError

log = logging.getLogger(__name__)

ACOUSTIC_INPUTS = ("input", "input_lengths", "scales")
Z_NAME = "z"
DURATIONS_NAME = "durations"
AUDIO_NAME = "audio"


class SplitError(JetvoxError, ValueError):
    """The graph does not have the shape of a splittable VITS voice."""


@dataclass(frozen=True)
class Boundary:
    """Where the vocoder begins."""

    tensor: str
    """The latent tensor (the vocoder's only outside input) in the source graph."""
    channels: int
    """Latent channels (192 for Piper voices)."""
    durations: str | None
    """Tensor holding per-phoneme frame counts (the ``Ceil`` of the duration predictor), if found."""
    vocoder_nodes: int
    """Nodes after the boundary."""


def _const_tensors(graph: onnx.GraphProto) -> set[str]:
    """Initializers, Constant outputs, and everything computed from them alone."""
    consts = {i.name for i in graph.initializer}
    for node in graph.node:  # graph.node is topologically sorted (ONNX requires it)
        ins = [i for i in node.input if i]
        if node.op_type == "Constant" or (ins and all(i in consts for i in ins)):
            consts.update(node.output)
    return consts


def find_boundary(model: onnx.ModelProto) -> Boundary:
    """Find the vocoder's input: the earliest tensor every path from the inputs to the audio passes through.

    Over the data-flow graph of tensors that lie on a path from a graph input to the
    output, a tensor is a cut iff no edge jumps over its position in topological order.
    The first cut after the inputs is where the generator (decoder) starts: before it,
    the sequence mask, noise scales and lengths all still flow in side by side.
    """
    graph = model.graph
    if len(graph.output) != 1:
        raise SplitError(f"expected one graph output (audio), found {len(graph.output)}")
    consts = _const_tensors(graph)
    inputs = [i.name for i in graph.input if i.name not in consts]
    out = graph.output[0].name

    order, edges = _tensor_graph(graph, inputs, consts)
    back: dict[str, list[str]] = {}
    for a, b in edges:
        back.setdefault(b, []).append(a)
    cut = _first_cut(order, edges, inputs, out, back)
    if cut is None:
        raise SplitError(
            "no single tensor separates the decoder from the rest of the graph "
            "(multi-speaker voices feed a speaker embedding into the decoder and are not supported)"
        )

    vocoder = _closure([out], back, stop={cut})
    channels = _channels(model, cut)
    durations = next((n.output[0] for n in graph.node if n.op_type == "Ceil"), None)
    boundary = Boundary(tensor=cut, channels=channels, durations=durations, vocoder_nodes=len(vocoder))
    log.info("vocoder boundary at %s (%d channels)", cut, channels)
    return boundary


def _tensor_graph(graph: onnx.GraphProto, inputs: list[str], consts: set[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Tensors in topological order, and the edges tensor -> tensor through nodes (constants left out)."""
    order: list[str] = list(inputs)
    edges: list[tuple[str, str]] = []
    for node in graph.node:
        ins = [i for i in node.input if i and i not in consts]
        for o in node.output:
            if o in consts or not o:
                continue
            order.append(o)
            edges.extend((i, o) for i in ins)
    return order, edges


def _first_cut(
    order: list[str], edges: list[tuple[str, str]], inputs: list[str], out: str, back: dict[str, list[str]]
) -> str | None:
    """The first tensor after the inputs, on an input -> output path, that no edge jumps over."""
    pos = {t: n for n, t in enumerate(order)}
    fwd: dict[str, list[str]] = {}
    for a, b in edges:
        fwd.setdefault(a, []).append(b)
    live = _closure(inputs, fwd) & _closure([out], back)  # only tensors on some input -> output path
    if out not in live:
        raise SplitError("the output does not depend on the inputs")
    live_order = sorted(live, key=pos.__getitem__)
    rank = {t: n for n, t in enumerate(live_order)}
    # An edge (a, b) "jumps over" every position strictly between a and b; a virtual
    # source feeds all graph inputs, so positions before the last input are covered too.
    cover = [0] * (len(live_order) + 1)
    first_input_rank = min(rank[i] for i in inputs if i in live)
    last_input_rank = max(rank[i] for i in inputs if i in live)
    if last_input_rank > first_input_rank:
        cover[first_input_rank + 1] += 1
        cover[last_input_rank + 1] -= 1  # inputs after the first are jumped by the source
    for a, b in edges:
        if a in live and b in live and rank[b] - rank[a] > 1:
            cover[rank[a] + 1] += 1
            cover[rank[b]] -= 1
    running = 0
    for n, tensor in enumerate(live_order):
        running += cover[n]
        if n > last_input_rank and running == 0 and tensor != out:
            return tensor
    return None


def _closure(start: Iterable[str], adj: dict[str, list[str]], stop: set[str] | None = None) -> set[str]:
    seen = set(start)
    todo = list(seen)
    while todo:
        t = todo.pop()
        if stop and t in stop:
            continue
        for nxt in adj.get(t, ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _channels(model: onnx.ModelProto, tensor: str) -> int:
    """The fixed channel count of ``tensor`` ([batch, channels, frames]) from shape inference."""
    inferred = shape_inference.infer_shapes(model)
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        if vi.name == tensor:
            dims = vi.type.tensor_type.shape.dim
            if len(dims) != 3:
                raise SplitError(f"latent {tensor} should be [batch, channels, frames], has rank {len(dims)}")
            if not dims[1].HasField("dim_value"):
                raise SplitError(f"latent {tensor} has no fixed channel count")
            return int(dims[1].dim_value)
    # Shape inference could not follow the graph: fall back to the decoder's first Conv weight.
    for node in model.graph.node:
        if node.op_type == "Conv" and tensor in node.input:
            w = next(i for i in model.graph.initializer if i.name == node.input[1])
            return int(w.dims[1])
    raise SplitError(f"cannot determine the channel count of latent {tensor}")


def _rename(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if i == old else i for i in node.input]
        node.output[:] = [new if o == old else o for o in node.output]


def split_model(model: onnx.ModelProto, boundary: Boundary) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """Extract (acoustic, vocoder) models with canonical tensor names.

    acoustic: ``input`` int64 [1,P], ``input_lengths`` int64 [1], ``scales`` float [3]
    -> ``z`` float [1,C,T] and, when found, ``durations`` float [1,P] (frames per phoneme).
    vocoder: ``z`` float [1,C,T] -> ``audio`` float [1, T*hop].
    """
    names = [i.name for i in model.graph.input]
    if tuple(names) != ACOUSTIC_INPUTS:
        raise SplitError(f"expected Piper inputs {list(ACOUSTIC_INPUTS)}, got {names}")
    audio_src = model.graph.output[0].name
    outputs = [boundary.tensor] + ([boundary.durations] if boundary.durations else [])
    model = _with_value_infos(model, boundary)
    acoustic = onnx.utils.Extractor(model).extract_model(list(ACOUSTIC_INPUTS), outputs)
    vocoder = onnx.utils.Extractor(model).extract_model([boundary.tensor], [audio_src])

    # Acoustic: rename the outputs and flatten durations [1,1,P] -> [1,P].
    _rename(acoustic.graph, boundary.tensor, Z_NAME)
    acoustic.graph.output[0].name = Z_NAME
    if boundary.durations:
        raw = boundary.durations
        acoustic.graph.output.pop()
        shape = helper.make_tensor("durations_shape", onnx.TensorProto.INT64, [2], [1, -1])
        acoustic.graph.initializer.append(shape)
        acoustic.graph.node.append(
            helper.make_node("Reshape", [raw, "durations_shape"], [DURATIONS_NAME], name="jetvox/durations")
        )
        acoustic.graph.output.append(
            helper.make_tensor_value_info(DURATIONS_NAME, onnx.TensorProto.FLOAT, [1, "phonemes"])
        )
    _set_io(acoustic.graph.output[0], onnx.TensorProto.FLOAT, [1, boundary.channels, "frames"])

    # Vocoder: z in, audio [1, samples] out.
    _rename(vocoder.graph, boundary.tensor, Z_NAME)
    vocoder.graph.input[0].name = Z_NAME
    _set_io(vocoder.graph.input[0], onnx.TensorProto.FLOAT, [1, boundary.channels, "frames"])
    shape = helper.make_tensor("audio_shape", onnx.TensorProto.INT64, [2], [1, -1])
    vocoder.graph.initializer.append(shape)
    vocoder.graph.node.append(
        helper.make_node("Reshape", [audio_src, "audio_shape"], [AUDIO_NAME], name="jetvox/audio")
    )
    vocoder.graph.output.pop()
    vocoder.graph.output.append(helper.make_tensor_value_info(AUDIO_NAME, onnx.TensorProto.FLOAT, [1, "samples"]))

    for m, name in ((acoustic, "jetvox-acoustic"), (vocoder, "jetvox-vocoder")):
        m.graph.name = name
        onnx.checker.check_model(m)
    return acoustic, vocoder


def _with_value_infos(model: onnx.ModelProto, boundary: Boundary) -> onnx.ModelProto:
    """Shape-inferred copy of ``model`` that has value_info for the tensors we cut at."""
    inferred = shape_inference.infer_shapes(model)
    known = {vi.name for vi in inferred.graph.value_info} | {o.name for o in inferred.graph.output}
    if boundary.tensor not in known:
        inferred.graph.value_info.append(
            helper.make_tensor_value_info(boundary.tensor, onnx.TensorProto.FLOAT, [1, boundary.channels, "frames"])
        )
    if boundary.durations and boundary.durations not in known:
        inferred.graph.value_info.append(
            helper.make_tensor_value_info(boundary.durations, onnx.TensorProto.FLOAT, None)
        )
    return inferred


def _set_io(vi: onnx.ValueInfoProto, elem: int, dims: list[int | str]) -> None:
    new = helper.make_tensor_value_info(vi.name, elem, dims)
    vi.CopyFrom(new)
