"""The real TensorRT path: engines built and run through pycuda streams. Runs only where TensorRT and an
NVIDIA GPU are present (a Jetson with JetPack 6: `make test` there exercises it); skipped elsewhere with the reason."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from jetvox.device.evaluation.quality import log_mel_distance
from jetvox.device.synthesis.feeds import acoustic_feeds
from jetvox.device.text.phonemes import Phonemizer
from jetvox.device.voice import manifest as mf
from jetvox.engines.onnxrt import OnnxRuntimeEngine
from tests.voicefix import voice_config


def _why_no_tensorrt() -> str | None:
    """None when a real TensorRT and a CUDA GPU are usable here, else why not."""
    try:
        import pycuda.driver as cuda
        import tensorrt

        from jetvox.engines.tensorrt import tensorrt_version
        from jetvox.engines.tensorrt.common import unsupported_reason

        version = tensorrt_version(tensorrt)
        cuda.init()
        if cuda.Device.count() == 0:
            return "no CUDA device"
        return unsupported_reason(version)
    except Exception as exc:  # ImportError, pycuda's LogicError without a driver, a stub-only tensorrt
        return f"TensorRT/pycuda not usable: {exc}"


WHY = _why_no_tensorrt()
pytestmark = [pytest.mark.hardware, pytest.mark.slow, pytest.mark.skipif(WHY is not None, reason=WHY or "")]
SENTENCE = "Warning: the garage door has been open for fifteen minutes."


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, Path, mf.Manifest]]:
    """FP16 engines of the test voice's two models, as provisioning builds them on this device."""
    from jetvox.provisioning.tensorrt.build import Profile, build_engine, profiles_for

    cfg = voice_config()
    directory = mf.voice_dir(cfg.state_dir, cfg.voice.name)
    manifest = mf.read_manifest(directory)
    out = tmp_path_factory.mktemp("engines")
    s, e = cfg.synthesis, cfg.engine
    shapes = dict(max_phonemes=e.max_phonemes, opt_phonemes=e.opt_phonemes, chunk_frames=s.chunk_frames,
                  max_frames=1024, overlap_frames=s.overlap_frames, channels=manifest.latent_channels)
    engines = {}
    for role in ("acoustic", "vocoder"):
        profile = Profile.from_ranges(role, profiles_for(role, **shapes))
        engines[role] = build_engine(directory / manifest.model(role).file, out / f"{role}.engine",
                                     precision="fp16", profile=profile)
    yield directory, engines["acoustic"], engines["vocoder"], manifest


def test_engines_match_onnx_runtime(built: tuple[Path, Path, Path, mf.Manifest]) -> None:
    from jetvox.engines.tensorrt import TensorRTEngine

    directory, acoustic_engine, vocoder_engine, manifest = built
    feeds = acoustic_feeds(Phonemizer(manifest.espeak_voice, manifest.phoneme_id_map).sentence_ids(SENTENCE))
    with OnnxRuntimeEngine(directory / manifest.model("acoustic").file) as ort_ac, \
            OnnxRuntimeEngine(directory / manifest.model("vocoder").file) as ort_voc, \
            TensorRTEngine(acoustic_engine) as trt_ac, TensorRTEngine(vocoder_engine) as trt_voc:
        z_ref, z_trt = ort_ac.infer(feeds)["z"], trt_ac.infer(feeds)["z"]
        assert z_trt.shape == z_ref.shape, "TensorRT predicted other durations than ONNX Runtime"
        ref = ort_voc.infer({"z": z_ref})["audio"].reshape(-1)
        got = trt_voc.infer({"z": z_ref})["audio"].reshape(-1)
    assert np.isfinite(got).all()
    assert log_mel_distance(got, ref, manifest.sample_rate) < 0.5


def test_two_streams_overlap_and_agree_with_sequential_runs(built: tuple[Path, Path, Path, mf.Manifest]) -> None:
    from jetvox.engines.tensorrt import TensorRTEngine

    _, acoustic_engine, vocoder_engine, manifest = built
    phon = Phonemizer(manifest.espeak_voice, manifest.phoneme_id_map)
    feeds = [acoustic_feeds(phon.sentence_ids(t)) for t in (SENTENCE, "Battery level low.")]
    with TensorRTEngine(acoustic_engine) as ac, TensorRTEngine(vocoder_engine) as voc:
        z0 = ac.infer(feeds[0])["z"]
        pending_ac = ac.submit(feeds[1])  # the next sentence's acoustic model while this one is vocoded
        pending_voc = voc.submit({"z": z0})
        z1, audio0 = pending_ac.result(timeout=60)["z"], pending_voc.result(timeout=60)["audio"]
        np.testing.assert_allclose(audio0, voc.infer({"z": z0})["audio"], atol=1e-3)
        np.testing.assert_allclose(z1, ac.infer(feeds[1])["z"], atol=1e-3)
