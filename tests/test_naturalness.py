"""DNSMOS naturalness (speechmos, offline): clean speech scores above the same speech noisy or muffled."""

from __future__ import annotations

import numpy as np
import pytest

from jetvox.device.evaluation.naturalness import equal_loudness, mean_naturalness, naturalness
from jetvox.device.synthesis.synthesizer import synthesizer_for
from jetvox.device.voice.loader import load_voice
from tests.voicefix import voice_config

pytestmark = pytest.mark.slow
TEXT = "Good morning. The kitchen temperature is twenty one degrees and the washing machine has finished."


@pytest.fixture(scope="module")
def speech() -> tuple[np.ndarray, int]:
    cfg = voice_config(voice__name="joe-fast")
    with load_voice(cfg) as voice:
        synth = synthesizer_for(voice, cfg)
        try:
            audio = np.concatenate([c.audio for c in synth.synthesize(TEXT)])
        finally:
            synth.close()
        return audio, voice.sample_rate


def _low_pass(audio: np.ndarray, sample_rate: int, cutoff_hz: float) -> np.ndarray:
    taps = np.arange(-200, 201)
    h = np.sinc(2 * cutoff_hz / sample_rate * taps) * np.hamming(len(taps))
    return np.convolve(audio, h / h.sum(), mode="same").astype(np.float32)


def test_clean_speech_beats_noisy_and_muffled(speech: tuple[np.ndarray, int]) -> None:
    audio, sr = speech
    clean = naturalness(audio, sr)
    rms = float(np.sqrt(np.mean(audio**2)))
    noisy = naturalness(audio + np.random.default_rng(0).standard_normal(audio.shape).astype(np.float32) * rms / 3, sr)
    muffled = naturalness(_low_pass(audio, sr, 800.0), sr)
    assert 1.0 <= noisy.p808 < clean.p808 <= 5.0
    assert muffled.p808 < clean.p808 and noisy.ovrl < clean.ovrl and muffled.ovrl < clean.ovrl


def test_gain_does_not_move_the_score(speech: tuple[np.ndarray, int]) -> None:
    audio, sr = speech
    loud, quiet = naturalness(audio * 0.9 / np.abs(audio).max(), sr), naturalness(audio * 0.05, sr)
    assert abs(loud.p808 - quiet.p808) < 0.02 and abs(loud.ovrl - quiet.ovrl) < 0.02
    assert mean_naturalness([audio, audio], sr) == naturalness(audio, sr)


def test_equal_loudness_sets_the_active_level() -> None:
    sr = 16000
    t = np.arange(sr) / sr
    tone = np.concatenate([np.zeros(sr // 2), 0.01 * np.sin(2 * np.pi * 440 * t)])  # half a second of silence first
    out = equal_loudness(tone, sr)
    active = out[sr // 2:]
    assert 20 * np.log10(np.sqrt(np.mean(active**2))) == pytest.approx(-26.0, abs=0.1)
    assert np.all(out[: sr // 2] == 0)
    assert np.all(equal_loudness(np.zeros(100), sr) == 0)
