"""The teacher's text encoder ported to torch: the same prior mean as its ONNX graph, batched or not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch", reason="the distillation extra (pip install .[train]) is not installed")

from jetvox.device.voice.sources import PACKAGED_VOICE, resolve_voice  # noqa: E402
from jetvox.engines.onnxrt import ort_session  # noqa: E402
from jetvox.provisioning.distill import hybrid, text_encoder  # noqa: E402
from jetvox.provisioning.distill.interface import InterfaceError  # noqa: E402


@pytest.fixture(scope="module")
def graph() -> onnx.ModelProto:
    model = resolve_voice(PACKAGED_VOICE).model
    assert isinstance(model, Path)
    return hybrid.text_encoder(model)


def test_the_port_computes_the_graphs_prior_mean(graph: onnx.ModelProto) -> None:
    """Lengths below, at and above the relative-position window (4 each side), and a long sentence."""
    encoder = text_encoder.from_onnx(graph)
    assert encoder.cfg.filters == (768,) * 6 and encoder.cfg.window == 4
    session = ort_session(graph.SerializeToString())
    rng = np.random.default_rng(0)
    for n in (1, 3, 5, 6, 40, 150):
        ids = rng.integers(1, 150, n).astype(np.int64)[None]
        (ref,) = session.run([hybrid.MP], {"input": ids, "input_lengths": np.array([n], np.int64)})
        with torch.no_grad():
            ours = encoder(torch.from_numpy(ids), torch.tensor([n])).numpy()
        assert ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_a_padded_batch_equals_each_sentence_alone(graph: onnx.ModelProto) -> None:
    encoder = text_encoder.from_onnx(graph)
    a, b = [5, 0, 20, 0, 31, 0, 45], [7, 0, 9]
    batch = torch.tensor([a, b + [0] * (len(a) - len(b))])
    with torch.no_grad():
        both = encoder(batch, torch.tensor([len(a), len(b)]))
        alone = [encoder(torch.tensor([x]), torch.tensor([len(x)])) for x in (a, b)]
    torch.testing.assert_close(both[0], alone[0][0], atol=1e-5, rtol=0)
    torch.testing.assert_close(both[1, :, :len(b)], alone[1][0], atol=1e-5, rtol=0)
    assert float(both[1, :, len(b):].abs().max()) == 0.0  # masked past its end


def test_a_graph_that_is_not_a_vits_text_encoder_is_refused() -> None:
    node = onnx.helper.make_node("Gather", ["table", "input"], ["x"])
    table = onnx.numpy_helper.from_array(np.zeros((4, 2), np.float32), "table")
    graph = onnx.helper.make_graph([node], "g", [onnx.helper.make_tensor_value_info("input", 7, [1, None])],
                                   [onnx.helper.make_tensor_value_info("x", 1, None)], [table])
    with pytest.raises(InterfaceError, match="no enc_p.encoder.ffn_layers"):
        text_encoder.from_onnx(onnx.helper.make_model(graph))
    del graph.node[:]
    with pytest.raises(InterfaceError, match="no embedding table"):
        text_encoder.from_onnx(onnx.helper.make_model(graph))


def _tiny_teacher() -> text_encoder.TextEncoder:
    torch.manual_seed(0)
    cfg = text_encoder.TextEncoderConfig(vocab=20, hidden=16, filters=(32, 32), out=8, window=2)
    enc = text_encoder.TextEncoder(cfg)
    with torch.no_grad():
        for p in enc.parameters():
            p.normal_(0, 0.3)
    return enc.eval()


def _error(a: text_encoder.TextEncoder, b: text_encoder.TextEncoder, sentences: list[np.ndarray]) -> float:
    with torch.no_grad():
        return float(np.mean([(a(torch.from_numpy(s)[None], torch.tensor([len(s)]))
                               - b(torch.from_numpy(s)[None], torch.tensor([len(s)]))).abs().mean().item()
                              for s in sentences]))


def test_shrinking_to_full_width_reproduces_the_teacher_and_the_refit_beats_a_plain_cut() -> None:
    """`shrink` keeps the channels that carry the most and refits each block's output convolution: at full width
    it gives the teacher back; cut to a quarter, it is closer to the teacher than the same cut without the refit."""
    teacher = _tiny_teacher()
    rng = np.random.default_rng(1)
    fit = [rng.integers(1, 20, int(n)).astype(np.int64) for n in rng.integers(8, 40, 40)]
    held = [rng.integers(1, 20, int(n)).astype(np.int64) for n in rng.integers(8, 40, 10)]
    same, residuals = text_encoder.shrink(teacher, 32, fit, ridge=1e-9)
    assert same.cfg.filters == (32, 32) and max(residuals) < 1e-3
    assert _error(same, teacher, held) < 1e-3
    small, residuals = text_encoder.shrink(teacher, 8, fit)
    assert small.cfg.filters == (8, 8) and min(residuals) > 0
    plain = text_encoder.TextEncoder(small.cfg)
    plain.load_state_dict(small.state_dict())
    with torch.no_grad():  # the same channels, the teacher's own output weights: no refit
        for i, (cut, full) in enumerate(zip(plain.ffn_layers, teacher.ffn_layers)):
            rows = [int(torch.nonzero((full.conv_1.weight == w).all(dim=(1, 2)))[0]) for w in cut.conv_1.weight]
            cut.conv_2.weight.copy_(full.conv_2.weight[:, rows])
            cut.conv_2.bias.copy_(full.conv_2.bias)
    assert _error(small, teacher, held) < 0.8 * _error(plain, teacher, held)
    for wrong in (0, 33):
        with pytest.raises(ValueError, match=f"from 1 to 32 feed-forward channels; got {wrong}"):
            text_encoder.shrink(teacher, wrong, fit)
