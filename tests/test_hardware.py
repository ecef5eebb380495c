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
from jetvox.engines.staged import StagedAcoustic
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
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Path], mf.Manifest]]:
    """FP16 engines of the test voice's acoustic stages and vocoder, with the profiles provisioning uses."""
    from jetvox.provisioning.tensorrt.build import build_engine
    from jetvox.provisioning.tensorrt.step import profile_of

    cfg = voice_config()
    directory = mf.voice_dir(cfg.state_dir, cfg.voice.name)
    manifest = mf.read_manifest(directory)
    out = tmp_path_factory.mktemp("engines")
    engines = {}
    for role, entry in (("acoustic_encoder", "acoustic_encoder"), ("acoustic_decoder", "acoustic_decoder"),
                        ("vocoder", "vocoder")):
        engines[role] = build_engine(directory / manifest.model(entry).file, out / f"{role}.engine",
                                     precision="fp16", profile=profile_of(cfg, manifest, role, entry))
    yield directory, engines, manifest


def _staged(directory: Path, engines: dict[str, Path], manifest: mf.Manifest) -> StagedAcoustic:
    from jetvox.engines.tensorrt import TensorRTEngine

    regulator = OnnxRuntimeEngine(directory / manifest.model("acoustic_regulator").file)
    return StagedAcoustic(TensorRTEngine(engines["acoustic_encoder"]), regulator,
                          TensorRTEngine(engines["acoustic_decoder"]), max_frames=voice_config().engine.max_frames)


def test_engines_match_onnx_runtime(built: tuple[Path, dict[str, Path], mf.Manifest]) -> None:
    from jetvox.engines.tensorrt import TensorRTEngine

    directory, engines, manifest = built
    feeds = acoustic_feeds(Phonemizer(manifest.espeak_voice, manifest.phoneme_id_map).sentence_ids(SENTENCE))
    with OnnxRuntimeEngine(directory / manifest.model("acoustic").file) as ort_ac, \
            OnnxRuntimeEngine(directory / manifest.model("vocoder").file) as ort_voc, \
            _staged(directory, engines, manifest) as trt_ac, TensorRTEngine(engines["vocoder"]) as trt_voc:
        z_ref, z_trt = ort_ac.infer(feeds)["z"], trt_ac.infer(feeds)["z"]
        assert z_trt.shape == z_ref.shape, "TensorRT predicted other durations than ONNX Runtime"
        ref = ort_voc.infer({"z": z_ref})["audio"].reshape(-1)
        got = trt_voc.infer({"z": z_ref})["audio"].reshape(-1)
        from_trt_latents = ort_voc.infer({"z": z_trt})["audio"].reshape(-1)
    assert np.isfinite(got).all() and np.isfinite(from_trt_latents).all()
    assert log_mel_distance(got, ref, manifest.sample_rate) < 0.5
    assert log_mel_distance(from_trt_latents, ref, manifest.sample_rate) < 0.5


def test_two_streams_overlap_and_agree_with_sequential_runs(built: tuple[Path, dict[str, Path], mf.Manifest]) -> None:
    from jetvox.engines.tensorrt import TensorRTEngine

    _, engines, manifest = built
    phon = Phonemizer(manifest.espeak_voice, manifest.phoneme_id_map)
    feeds = [acoustic_feeds(phon.sentence_ids(t)) for t in (SENTENCE, "Battery level low.")]
    with TensorRTEngine(engines["acoustic_encoder"]) as enc, TensorRTEngine(engines["vocoder"]) as voc:
        z0 = np.random.default_rng(0).standard_normal((1, manifest.latent_channels, 64)).astype(np.float32)
        pending_enc = enc.submit(feeds[1])  # the next sentence's encoder while this one is vocoded
        pending_voc = voc.submit({"z": z0})
        d1, audio0 = pending_enc.result(timeout=60)["durations"], pending_voc.result(timeout=60)["audio"]
        np.testing.assert_allclose(audio0, voc.infer({"z": z0})["audio"], atol=1e-3)
        np.testing.assert_allclose(d1, enc.infer(feeds[1])["durations"], atol=1e-3)
