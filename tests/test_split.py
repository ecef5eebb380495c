"""The decoder boundary is found from the graph's structure, and the split reproduces the whole model."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from jetvox.provisioning.split import SplitError, find_boundary, split_model


def _toy_vits(condition: str | None = None) -> onnx.ModelProto:
    """A VITS-shaped toy: embedding, mask from lengths, noise-scaled prior, z = prior * mask, conv decoder.

    Tensor and node names are deliberately unlike Piper's (no ``/dec/`` scope anywhere).
    """
    rng = np.random.default_rng(0)
    C = 8
    inits = [
        numpy_helper.from_array(rng.standard_normal((16, C)).astype(np.float32), "emb_w"),
        numpy_helper.from_array(rng.standard_normal((C, C, 3)).astype(np.float32) * 0.3, "gen_w1"),
        numpy_helper.from_array(rng.standard_normal((1, C, 3)).astype(np.float32) * 0.3, "gen_w2"),
        numpy_helper.from_array(np.array([0, 2, 1], np.int64), "perm"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.array([0], np.int64), "zero_i"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
    ]
    nodes = [
        helper.make_node("Gather", ["emb_w", "input"], ["h0"], name="n0"),  # [1, P, C]
        helper.make_node("Transpose", ["h0"], ["h1"], perm=[0, 2, 1], name="n1"),  # [1, C, P]
        helper.make_node("Gather", ["scales", "zero_i"], ["ns"], name="n2"),
        helper.make_node("Mul", ["h1", "ns"], ["h2"], name="n3"),
        helper.make_node("Shape", ["input"], ["shp"], name="n4"),
        helper.make_node("Gather", ["shp", "one"], ["plen"], name="n5"),
        helper.make_node("Squeeze", ["plen"], ["plen_s"], name="n5b"),
        helper.make_node("Range", ["zero_s", "plen_s", "one_s"], ["ar"], name="n6"),
        helper.make_node("Unsqueeze", ["input_lengths", "axis1"], ["len2"], name="n7"),
        helper.make_node("Less", ["ar", "len2"], ["m_b"], name="n8"),
        helper.make_node("Cast", ["m_b"], ["m_f"], to=TensorProto.FLOAT, name="n9"),
        helper.make_node("Unsqueeze", ["m_f", "axis1"], ["mask"], name="n10"),  # [1, 1, P]
        helper.make_node("Add", ["h2", "h1"], ["prior"], name="n11"),
        helper.make_node("Mul", ["prior", "mask"], ["latent_q"], name="n12"),  # the boundary
        helper.make_node("Conv", ["latent_q", "gen_w1"], ["g1"], pads=[1, 1], name="n13"),
        helper.make_node("Tanh", ["g1"], ["g2"], name="n14"),
        helper.make_node("Conv", ["g2", "gen_w2"], ["g3"], pads=[1, 1], name="n15"),
        helper.make_node("Tanh", ["g3"], ["wave"], name="n16"),
    ]
    inits += [
        helper.make_tensor("zero_s", TensorProto.INT64, [], [0]),
        helper.make_tensor("one_s", TensorProto.INT64, [], [1]),
    ]
    if condition == "early":  # the decoder's first layer is also conditioned (like a speaker embedding)
        nodes[15] = helper.make_node("Add", ["g1", "ns"], ["g1b"], name="n14a")
        nodes.insert(16, helper.make_node("Tanh", ["g1b"], ["g2"], name="n14"))
    if condition == "late":  # something reaches the very end: nothing separates the decoder
        nodes[-1] = helper.make_node("Tanh", ["g3"], ["g4"], name="n16")
        nodes.append(helper.make_node("Mul", ["g4", "ns"], ["wave"], name="n17"))
    graph = helper.make_graph(
        nodes,
        "toy",
        [
            helper.make_tensor_value_info("input", TensorProto.INT64, [1, "P"]),
            helper.make_tensor_value_info("input_lengths", TensorProto.INT64, [1]),
            helper.make_tensor_value_info("scales", TensorProto.FLOAT, [3]),
        ],
        [helper.make_tensor_value_info("wave", TensorProto.FLOAT, [1, 1, "S"])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def test_boundary_found_by_structure_not_by_name() -> None:
    b = find_boundary(_toy_vits())
    assert b.tensor == "latent_q"
    assert b.channels == 8


def test_conditioned_first_layer_moves_the_cut_past_it() -> None:
    b = find_boundary(_toy_vits(condition="early"))
    assert b.tensor == "g1b"  # the first tensor after the conditioning joins in


def test_graph_without_a_single_cut_is_refused() -> None:
    with pytest.raises(SplitError, match="no single tensor"):
        find_boundary(_toy_vits(condition="late"))


@pytest.mark.parametrize("condition", [None, "early"])
def test_toy_split_equals_whole(condition: str | None) -> None:
    model = _toy_vits(condition)
    acoustic, vocoder = split_model(model, find_boundary(model))
    feeds = {
        "input": np.array([[1, 5, 7, 2, 9]], np.int64),
        "input_lengths": np.array([5], np.int64),
        "scales": np.array([0.5, 1.0, 0.8], np.float32),
    }
    whole = ort.InferenceSession(model.SerializeToString()).run(None, feeds)[0]
    z = ort.InferenceSession(acoustic.SerializeToString()).run(["z"], feeds)[0]
    audio = ort.InferenceSession(vocoder.SerializeToString()).run(["audio"], {"z": z})[0]
    assert z.shape == (1, 8, 5)
    assert audio.shape == (1, 5)
    np.testing.assert_allclose(audio.reshape(-1), whole.reshape(-1), rtol=0, atol=1e-6)


def test_wrong_inputs_are_named_in_the_error() -> None:
    model = _toy_vits()
    model.graph.input[2].name = "noise"
    for node in model.graph.node:
        node.input[:] = ["noise" if i == "scales" else i for i in node.input]
    with pytest.raises(SplitError, match=r"expected Piper inputs \['input', 'input_lengths', 'scales'\], got"):
        split_model(model, find_boundary(model))
