"""The INT8 calibration corpus: size, determinism, disjointness, realistic model inputs, reproducible noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from jetvox.device.evaluation.sentences import HELD_OUT, check_disjoint, normalised_key
from jetvox.device.text.normalize import prepare
from jetvox.provisioning.int8 import calibration as cal
from tests.voicefix import TEACHER


def test_corpus_has_at_least_200_distinct_sentences() -> None:
    sentences = cal.generate_sentences()
    assert len(sentences) >= 200
    assert len({normalised_key(s) for s in sentences}) == len(sentences)


def test_corpus_is_deterministic_per_seed() -> None:
    assert cal.generate_sentences(50, seed=7) == cal.generate_sentences(50, seed=7)
    assert cal.generate_sentences(50, seed=7) != cal.generate_sentences(50, seed=8)
    # a longer corpus extends a shorter one with the same seed
    assert cal.generate_sentences(300)[:240] == cal.generate_sentences(240)


def test_corpus_is_disjoint_from_the_evaluation_sentences() -> None:
    sentences = cal.generate_sentences(1000, seed=123)
    check_disjoint(sentences)  # raises on overlap
    eval_keys = {normalised_key(s) for s in HELD_OUT}
    assert not eval_keys & {normalised_key(s) for s in sentences}


def test_corpus_is_in_the_style_of_device_traffic() -> None:
    sentences = cal.generate_sentences()
    text = " ".join(sentences)
    for needle in ("°C", "%", "ppm", "kW", "km/h", "AM", "PM", ":", "Warning:", "bar", "lux"):
        assert needle in text, needle
    assert sum(any(c.isdigit() for c in s) for s in sentences) / len(sentences) > 0.9


def test_every_sentence_normalises_to_speakable_text() -> None:
    for sentence in cal.generate_sentences():
        pieces = prepare(sentence, 400)
        assert pieces and all(not any(c.isdigit() for c in p) for p in pieces), (sentence, pieces)


def test_bad_count_is_rejected() -> None:
    with pytest.raises(ValueError, match="positive"):
        cal.generate_sentences(0)


def _calibration_set() -> cal.CalibrationSet:
    rng = np.random.default_rng(0)
    z = tuple(rng.standard_normal((1, 192, t)).astype(np.float32) for t in (40, 7, 33))
    ids = tuple(rng.integers(0, 100, size=n).astype(np.int64) for n in (21, 5, 17))
    return cal.CalibrationSet(sentences=("a", "b"), piece_sentence=(0, 1, 1), ids=ids, z=z)


def test_calibration_set_round_trips_through_npz(tmp_path: Path) -> None:
    cset = _calibration_set()
    path = tmp_path / "calibration.npz"
    cset.save(path)
    back = cal.CalibrationSet.load(path)
    assert back.sentences == cset.sentences and back.piece_sentence == cset.piece_sentence
    assert all((a == b).all() for a, b in zip(back.ids, cset.ids))
    for a, b in zip(back.z, cset.z):
        assert a.dtype == np.float32 and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)  # stored as float16
    with np.load(path, allow_pickle=False) as data:  # no pickled objects in the file
        assert set(data.files) >= {"ids", "z", "sentences"}


def test_split_holds_out_whole_sentences() -> None:
    cset = _calibration_set()
    calib, held = cset.split(2)  # sentence 1 (both its pieces) is held out
    assert [z.shape[2] for z in calib] == [40] and [z.shape[2] for z in held] == [7, 33]


def _random_model() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])
    node = helper.make_node("RandomNormalLike", ["x"], ["y"], name="noise")
    model = helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what this onnxruntime accepts, whatever onnx writes by default
    return model


def test_seed_noise_makes_random_nodes_reproducible() -> None:
    model = cal.seed_noise(_random_model(), 5.0)
    feeds = {"x": np.zeros((1, 8), dtype=np.float32)}
    runs = [
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
        for _ in range(2)
    ]
    np.testing.assert_array_equal(runs[0], runs[1])
    seeds = [a.f for a in model.graph.node[0].attribute if a.name == "seed"]
    assert seeds == [5.0]
    cal.seed_noise(model, None)
    assert not [a for a in model.graph.node[0].attribute if a.name == "seed"]


@pytest.fixture(scope="module")
def fp32_voice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The teacher voice split into acoustic + vocoder (INT8 steps off: this module needs FP32 only)."""
    from jetvox.device import config
    from jetvox.provisioning.pipeline import provision

    state = tmp_path_factory.mktemp("fp32-state")
    cfg = config.load(state_dir=str(state), voice__name=TEACHER, provision__int8="off")
    return provision(cfg, progress=lambda _m: None).directory


@pytest.mark.slow
def test_calibration_inputs_come_from_the_real_models(fp32_voice: Path) -> None:
    """Phoneme ids and z from the FP32 acoustic model, reproducible thanks to the seeded noise."""
    from jetvox.device.text.phonemes import Phonemizer
    from jetvox.device.voice.manifest import read_manifest

    directory = fp32_voice
    manifest = read_manifest(directory)
    phonemizer = Phonemizer(manifest.espeak_voice, manifest.phoneme_id_map)
    sentences = cal.generate_sentences(4)
    scales = (0.667, 1.0, 0.8)
    builds = [
        cal.build_calibration_set(sentences, directory / "acoustic.onnx", phonemizer, scales, 400, lambda _m: None)
        for _ in range(2)
    ]
    first, second = builds
    assert len(first.z) >= len(sentences)
    for ids, z in zip(first.ids, first.z):
        assert ids.dtype == np.int64 and ids[0] == manifest.phoneme_id_map["^"][0]
        assert z.shape[:2] == (1, manifest.latent_channels) and z.shape[2] > 20
        assert 0.5 < float(z.std()) < 5.0  # noise_scale 0.667 makes z spread like the runtime's
    for a, b in zip(first.z, second.z):
        np.testing.assert_array_equal(a, b)
