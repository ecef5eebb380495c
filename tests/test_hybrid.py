"""The hybrid acoustic student: the teacher's text encoder grafted in front of the student's decoder, sharpening,
and a tiny training run that logs and resumes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch", reason="the distillation extra (pip install .[train]) is not installed")

from jetvox.device.synthesis.feeds import acoustic_feeds  # noqa: E402
from jetvox.device.voice.sources import PACKAGED_VOICE, resolve_voice  # noqa: E402
from jetvox.engines.onnxrt import ort_session  # noqa: E402
from jetvox.provisioning.distill import hybrid  # noqa: E402
from jetvox.provisioning.distill.interface import InterfaceError  # noqa: E402
from jetvox.provisioning.distill.models import LATENT, AcousticConfig, StudentAcoustic  # noqa: E402
from onnxruntime.quantization.quant_utils import get_opset_version  # noqa: E402

IDS = [1, 0, 20, 0, 31, 0, 45, 0, 3, 0, 59, 0, 27, 0, 2]
TINY = AcousticConfig(dim=16, enc_layers=1, dec_dilations=(1, 2))


@pytest.fixture(scope="module")
def teacher() -> Path:
    model = resolve_voice(PACKAGED_VOICE).model
    assert model is not None
    return model


def _tiny_hybrid(seed: int = 0) -> hybrid.HybridAcoustic:
    torch.manual_seed(seed)
    return hybrid.HybridAcoustic(StudentAcoustic(TINY)).eval()


def test_the_text_encoder_is_the_teachers_prior_mean(teacher: Path) -> None:
    """Cut where VITS splits means from log-scales: the same m_p the whole teacher computes, and no noise input."""
    enc = hybrid.text_encoder(teacher)
    assert [i.name for i in enc.graph.input] == ["input", "input_lengths"]
    feeds = acoustic_feeds(IDS, (0.667, 1.0, 0.8))
    (mp,) = ort_session(enc.SerializeToString()).run([hybrid.MP], {k: feeds[k] for k in ("input", "input_lengths")})
    whole = hybrid.with_prior_mean(teacher)
    ref = ort_session(whole.SerializeToString()).run([whole.graph.output[-1].name], feeds)[0]
    assert mp.shape == (1, LATENT, len(IDS))
    np.testing.assert_array_equal(mp, ref)


def test_a_graph_without_a_noise_free_split_is_refused() -> None:
    node = onnx.helper.make_node("Split", ["scales"], ["a", "b"], axis=0)
    graph = onnx.helper.make_graph([node], "g", [onnx.helper.make_tensor_value_info("scales", 1, [2])], [])
    with pytest.raises(InterfaceError, match="not a VITS acoustic model"):
        hybrid.prior_mean(onnx.helper.make_model(graph))


def test_the_grafted_model_equals_encoder_then_torch_head(teacher: Path, tmp_path: Path) -> None:
    """One ONNX file with the teacher's interface, equal to the teacher's encoder feeding the torch hybrid (up to the
    float16 storage of the exported weights)."""
    model = _tiny_hybrid()
    path = hybrid.export(model, teacher, tmp_path / "acoustic.onnx")
    feeds = acoustic_feeds(IDS, (0.667, 1.0, 0.8))
    z, dur = ort_session(path).run(["z", "durations"], feeds)
    enc = ort_session(hybrid.text_encoder(teacher).SerializeToString())
    (mp,) = enc.run([hybrid.MP], {k: feeds[k] for k in ("input", "input_lengths")})
    with torch.no_grad():
        zt, dt = model(*(torch.from_numpy(feeds[k]) for k in ("input", "input_lengths", "scales")), torch.from_numpy(mp))
    np.testing.assert_array_equal(dur, dt.numpy())
    assert z.shape == zt.shape and np.abs(z - zt.numpy()).max() < 2e-2 * np.abs(zt.numpy()).max()
    # one opset per domain: ONNX Runtime's quantiser (the INT8 step of `jetvox provision`) refuses two
    exported = onnx.load(str(path))
    assert [o.domain for o in exported.opset_import] == [""]
    get_opset_version(exported)


def test_teacher_forced_training_matches_inference() -> None:
    """forward_train on the durations inference chose gives inference's latents (batch 1, no padding)."""
    model = _tiny_hybrid()
    ids = torch.tensor([IDS])
    mp = torch.randn(1, LATENT, len(IDS))
    with torch.no_grad():
        z, dur = model(ids, torch.tensor([len(IDS)]), torch.tensor([0.0, 1.0, 0.0]), mp)
        zt = model.forward_train(mp, dur, int(dur.sum()))
    torch.testing.assert_close(zt, z, rtol=1e-5, atol=1e-5)


def test_sharpening_adds_the_detail_above_a_five_frame_mean(tmp_path: Path, teacher: Path) -> None:
    path = hybrid.export(_tiny_hybrid(), teacher, tmp_path / "acoustic.onnx")
    feeds = acoustic_feeds(IDS, (0.0, 3.0, 0.0))
    (z,) = ort_session(path).run(["z"], feeds)
    hybrid.sharpen(path, 1.6)
    (sharp,) = ort_session(path).run(["z"], feeds)
    t = z.shape[2]
    mean5 = np.stack([z[0, :, max(0, i - 2):i + 3].mean(1) for i in range(t)], 1)[None]
    np.testing.assert_allclose(sharp, z + 0.6 * (z - mean5), rtol=1e-5, atol=1e-5)
    with pytest.raises(InterfaceError, match="sharpened already"):
        hybrid.sharpen(path, 1.6)


def _utterances(n: int, rng: np.random.Generator) -> list[hybrid.Utterance]:
    out = []
    for _ in range(n):
        p = int(rng.integers(5, 12))
        dur = rng.integers(1, 6, p).astype(np.float32)
        mp = rng.standard_normal((LATENT, p)).astype(np.float16)
        z = np.repeat(mp.astype(np.float32), dur.astype(int), axis=1) * 0.5  # a function of m_p to learn
        out.append(hybrid.Utterance(np.arange(1, p + 1), dur, mp, z.astype(np.float16)))
    return out


def test_a_tiny_run_learns_logs_and_resumes(tmp_path: Path) -> None:
    data = _utterances(12, np.random.default_rng(0))
    model = _tiny_hybrid()
    rng = np.random.default_rng(1)
    with torch.no_grad():
        before = float(hybrid.crop_loss(model, data, np.arange(12), rng, 16))
    cfg = hybrid.HybridTrainConfig(steps=250, batch=4, crop=16, lr=3e-3)
    assert hybrid.train(model, data, tmp_path, cfg) == 250
    with torch.no_grad():
        after = float(hybrid.crop_loss(model, data, np.arange(12), np.random.default_rng(1), 16))
    assert after < 0.7 * before
    logged = [json.loads(line) for line in (tmp_path / "losses.jsonl").read_text().splitlines()]
    assert [x["step"] for x in logged] == [250] and np.isfinite(logged[0]["l1"])
    again = hybrid.build(tmp_path, student=Path("/nonexistent"))  # from the run's checkpoint, not a student
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))
    more = hybrid.HybridTrainConfig(steps=260, batch=4, crop=16, lr=3e-3)
    assert hybrid.train(again, data, tmp_path, more) == 260
    assert json.loads((tmp_path / "losses.jsonl").read_text().splitlines()[-1])["step"] == 260


def test_the_projection_starts_at_the_students_own_features() -> None:
    data = _utterances(6, np.random.default_rng(2))
    model = _tiny_hybrid()
    ids = torch.from_numpy(data[0].ids)[None]
    mp = torch.from_numpy(data[0].mp.astype(np.float32))[None]
    with torch.no_grad():
        h, _ = model.student.encode(ids, torch.ones(1, 1, ids.shape[1]))
        before = float((model.proj(mp) - h).abs().mean())
        residual = hybrid.init_projection(model, data)
        after = float((model.proj(mp) - h).abs().mean())
    assert after < before and residual < before


def test_a_vocoder_pack_draws_distinct_utterances_in_order() -> None:
    data = _utterances(10, np.random.default_rng(4))
    utts = hybrid.pack(data, 4)
    firsts = [next(i for i, u in enumerate(data) if np.array_equal(u.ids, ids) and np.array_equal(u.durations, d))
              for ids, d in zip(utts.ids, utts.durations)]
    assert len(set(firsts)) == 4 and firsts == sorted(firsts)
    assert hybrid.pack(data, 4).digest() == utts.digest() != hybrid.pack(data, 4, seed=9).digest()
    with pytest.raises(ValueError, match="expected a count from 1 to 10 utterances; got 11"):
        hybrid.pack(data, 11)


def test_training_without_its_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"hybrid train: hybrid data .*hybrid-v1-0of2\.pt not found; make it first"):
        hybrid.main(["train", "--state-dir", str(tmp_path), "--run", str(tmp_path / "run")])
    with pytest.raises(SystemExit, match="hybrid export: no provisioned voice in"):
        hybrid.main(["export", "--state-dir", str(tmp_path), "--run", str(tmp_path / "run"),
                     "--out", str(tmp_path / "a.onnx")])
