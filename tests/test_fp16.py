"""Issue 11, defect 1 and the FP16 evidence: every model a TensorRT build consumes stays within FP16 range and
speaks within its limits when every tensor it holds is rounded to FP16 (on the CPU: no GPU is needed)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from jetvox.device.evaluation.sentences import EVAL_SENTENCES
from jetvox.device.voice.loader import load_voice
from jetvox.engines.onnxrt import ort_session
from jetvox.provisioning.tensorrt.fp16 import FP16_MAX, evidence, float_ranges, fp16_rounded, peak_values
from tests.voicefix import TEACHER, voice_config


def _one_node_model(nodes: list, inits: list, inp: str = "x", out: str = "y") -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "t", [helper.make_tensor_value_info(inp, TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_the_inverse_stft_basis_subgraph_is_exact_and_within_one() -> None:
    """The student vocoder's basis comes from bounded tables now (it used to compute k*n up to 523,776)."""
    torch = pytest.importorskip("torch")
    from jetvox.provisioning.distill.export import _basis_nodes
    from jetvox.provisioning.distill.models import HOP, N_FFT, InverseSTFT

    bins = N_FFT // 2 + 1
    nodes, consts = _basis_nodes("basis", "rows", N_FFT, bins)
    graph = helper.make_graph(nodes, "basis", [], [helper.make_tensor_value_info("basis", TensorProto.FLOAT, None)],
                              consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    ranges = float_ranges(model, {})
    assert max(ranges.values()) <= 1.0 + 1e-6, max(ranges, key=ranges.__getitem__)
    with torch.no_grad():
        expected = InverseSTFT(N_FFT, HOP).basis(bins)[0][:, 0, :].numpy()
    got = ort_session(model.SerializeToString()).run(["basis"], {})[0]
    np.testing.assert_allclose(got, expected, atol=2e-7)


def test_range_measurement_and_fp16_rounding_catch_an_overflow() -> None:
    """What the old basis did: an intermediate above 65,504 (here k*n = 523,776), fine in FP32, inf in FP16."""
    big = numpy_helper.from_array(np.full((1, 4), 523_776.0, np.float32), "big")
    small = numpy_helper.from_array(np.full((1, 4), 1.0 / 523_776.0, np.float32), "small")
    model = _one_node_model([helper.make_node("Mul", ["x", "big"], ["kn"]), helper.make_node("Mul", ["kn", "small"], ["y"])],
                            [big, small])
    x = np.ones((1, 4), np.float32)
    assert float_ranges(model, {"x": x})["kn"] == pytest.approx(523_776.0)
    exact = ort_session(model.SerializeToString()).run(["y"], {"x": x})[0]
    half = ort_session(fp16_rounded(model, {"x": x}).SerializeToString(), optimize=False).run(["y"], {"x": x})[0]
    np.testing.assert_allclose(exact, 1.0, rtol=1e-6)
    assert np.all(np.isinf(half) | np.isnan(half))


def test_fp16_rounding_keeps_the_interface_and_rounds_values() -> None:
    w = numpy_helper.from_array(np.full((1, 4), 1.0 + 2 ** -12, np.float32), "w")  # not a float16 value
    model = _one_node_model([helper.make_node("Mul", ["x", "w"], ["y"])], [w])
    x = np.full((1, 4), 3.0, np.float32)
    rounded = fp16_rounded(model, {"x": x})
    sess = ort_session(rounded.SerializeToString(), optimize=False)
    assert [i.name for i in sess.get_inputs()] == ["x"] and [o.name for o in sess.get_outputs()] == ["y"]
    np.testing.assert_array_equal(sess.run(["y"], {"x": x})[0], 3.0)  # w rounds to 1.0 in float16


@pytest.mark.slow
@pytest.mark.parametrize("voice", [TEACHER, "joe-fast"])
def test_every_tensorrt_model_stays_within_fp16_range(voice: str) -> None:
    cfg = voice_config(voice__name=voice, engine__backend="onnxruntime")
    with load_voice(cfg) as v:
        peaks = peak_values(v, EVAL_SENTENCES[0])
    assert set(peaks) == {"encoder", "decoder", "vocoder"}
    # a margin for louder or longer sentences (the largest, 10,000, is the teacher's attention-mask constant)
    assert max(peaks.values()) < FP16_MAX / 4, peaks


@pytest.mark.slow
def test_fp16_simulation_of_the_default_voice_is_within_the_limits() -> None:
    report = evidence(voice_config(voice__name="joe-fast"), EVAL_SENTENCES[:4])
    f = report["figures"]
    assert report["passed"], report["failures"]
    assert f["finite"] and f["changed_durations"] <= 0.05 and f["frame_change"] <= 0.01
    assert 0 < f["vocoder_log_mel"] <= f["log_mel_bound"] and f["decoder_log_mel"] <= f["log_mel_bound"]
    assert f["wer_chain"] <= f["wer_reference"] + 0.02
    assert f["naturalness_chain"]["p808"] >= f["naturalness_reference"]["p808"] - 0.05
