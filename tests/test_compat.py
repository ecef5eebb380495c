"""The static TensorRT compatibility check: every graph a TensorRT build consumes passes it for 8.6 and 10."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from jetvox.device.voice import manifest as mf
from jetvox.engines.onnxrt import ort_session
from jetvox.provisioning.int8 import quantize as qz
from jetvox.provisioning.tensorrt.build import dim_ranges, profiles_for
from jetvox.provisioning.tensorrt.compat import TARGETS, check_model
from jetvox.provisioning.tensorrt.step import shapes_of
from tests.voicefix import TEACHER, voice_config

ROLES = {"acoustic_encoder": "acoustic_encoder", "acoustic_decoder": "acoustic_decoder", "vocoder": "vocoder"}


def _model(node: onnx.NodeProto, inits: list | None = None, opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph([node], "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits or [])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.slow
@pytest.mark.parametrize("voice", [TEACHER, "joe-fast"])
def test_the_models_tensorrt_builds_pass_for_both_versions(voice: str) -> None:
    cfg = voice_config(voice__name=voice)
    d = mf.voice_dir(cfg.state_dir, voice)
    manifest = mf.read_manifest(d)
    for role, entry in ROLES.items():
        problems = check_model(onnx.load(str(d / manifest.model(entry).file)))
        assert problems == [], "\n".join(map(str, problems[:10]))
        # static shapes per profile: every dynamic axis is one the profile sets (BuildError otherwise)
        profile = profiles_for(manifest.model(entry).inputs, dim_ranges(role, **shapes_of(cfg)))
        assert profile and all(lo <= hi for lo, _, hi in profile.values())


@pytest.mark.slow
def test_the_int8_vocoder_quantised_for_tensorrt_passes(tmp_path: Path) -> None:
    """Quantised as provisioning does where TensorRT is installed (symmetric INT8 activations)."""
    cfg = voice_config(voice__name="joe-fast")
    d = mf.voice_dir(cfg.state_dir, "joe-fast")
    vocoder = d / mf.read_manifest(d).model("vocoder").file
    pre = tmp_path / "pre.onnx"
    qz.preprocess(vocoder, pre)
    rng = np.random.default_rng(0)
    windows = [rng.standard_normal((1, 192, 64)).astype(np.float32) for _ in range(2)]
    cache = qz.calibrate(pre, windows, "MinMax", tmp_path, lambda _m: None)["MinMax"]
    out = tmp_path / "vocoder.trt.int8.onnx"
    qz.quantize(pre, out, cache, "MinMax", [], activation="int8")
    model = onnx.load(str(out))
    assert any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    assert check_model(model) == []
    ort_session(out)  # and it still runs


def test_an_unsupported_op_is_named_for_both_versions() -> None:
    problems = check_model(_model(helper.make_node("Unique", ["x"], ["y"], name="uniq")))
    assert [(p.target, p.node) for p in problems] == [(t, "uniq") for t in TARGETS]
    assert "op Unique is not supported" in str(problems[0])


def test_opset_beyond_a_parser_is_refused_for_that_version_only() -> None:
    problems = check_model(_model(helper.make_node("Relu", ["x"], ["y"]), opset=19))
    assert [p.target for p in problems] == ["8.6"] and "up to 17" in problems[0].what


def test_asymmetric_quantisation_and_computed_axes_are_refused() -> None:
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    zp = numpy_helper.from_array(np.array(3, np.uint8), "zp")
    problems = check_model(_model(helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["y"], name="q"), [scale, zp]))
    assert problems and all("zero point must be 0" in p.what for p in problems)
    graph = helper.make_graph(
        [helper.make_node("Shape", ["x"], ["axes"]), helper.make_node("Unsqueeze", ["x", "axes"], ["y"], name="u")], "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    problems = check_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert problems and all(p.node == "u" and "must be a constant" in p.what for p in problems)


def test_float64_tensors_are_refused() -> None:
    graph = helper.make_graph([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.DOUBLE)], "t",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [1, 4])])
    problems = check_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert problems and "float64" in problems[0].what
