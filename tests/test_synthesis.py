"""Streaming synthesis on the real provisioned voice: chunking, early first chunk, seams, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from jetvox.device.synthesis.synthesizer import SynthesisError, Synthesizer
from jetvox.device.voice import manifest as mf
from jetvox.device.voice.loader import load_voice
from tests.voicefix import voice_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def synth():
    cfg = voice_config(synthesis__noise_scale=0.0, synthesis__noise_w=0.0)
    voice = load_voice(cfg)
    s = Synthesizer(voice, cfg.synthesis)
    yield s
    s.close()
    voice.close()


SENTENCE = "Warning: the garage door has been open for fifteen minutes, and the porch light is still on."


def test_chunked_equals_unchunked(synth: Synthesizer) -> None:
    [ids] = synth.sentences(SENTENCE)
    z = synth.acoustic(ids, synth.defaults)
    full = synth.vocode_full(z)
    chunks = [c for c, _last in synth.vocode_chunks(z)]
    assert len(chunks) >= 3, "the sentence is long enough to need several chunks"
    joined = np.concatenate(chunks)
    assert joined.shape == full.shape
    rel = np.linalg.norm(joined - full) / np.linalg.norm(full)
    assert rel < 1e-3


def test_no_clicks_at_the_seams(synth: Synthesizer) -> None:
    [ids] = synth.sentences(SENTENCE)
    z = synth.acoustic(ids, synth.defaults)
    chunks = [c for c, _last in synth.vocode_chunks(z)]
    joined = np.concatenate(chunks)
    step = np.abs(np.diff(joined))
    seams = np.cumsum([len(c) for c in chunks])[:-1]
    # A click is a jump at a seam far above the signal's ordinary sample-to-sample steps.
    assert step[seams - 1].max() <= np.percentile(step, 99.9)


def test_first_chunk_arrives_before_the_rest_is_vocoded(synth: Synthesizer, monkeypatch) -> None:
    calls: list[int] = []
    real = synth.voice.vocoder.infer

    def counting(feeds):
        calls.append(feeds["z"].shape[2])
        return real(feeds)

    monkeypatch.setattr(synth.voice.vocoder, "infer", counting)
    stream = synth.synthesize(SENTENCE + " " + SENTENCE)
    first = next(stream)
    assert len(calls) == 1, "only the first chunk was vocoded when it was yielded"
    assert calls[0] <= synth.cfg.first_chunk_frames + 2 * synth.cfg.overlap_frames
    assert first.index == 0 and first.sentence == 0 and not first.last
    rest = list(stream)
    assert rest[-1].last and rest[-1].sentence == 1
    assert len(calls) == 1 + len(rest)
    assert [c.index for c in rest] == list(range(1, len(rest) + 1))


def test_sentences_are_pipelined_and_separated_by_silence(synth: Synthesizer) -> None:
    chunks = list(synth.synthesize("Battery low. Door open."))
    assert {c.sentence for c in chunks} == {0, 1}
    end_of_first = [c for c in chunks if c.sentence == 0][-1].audio
    silence = int(synth.cfg.sentence_silence_s * synth.voice.sample_rate)
    assert np.all(end_of_first[-silence:] == 0.0)
    assert all(np.abs(c.audio).max() <= 1.0 for c in chunks)
    assert all(c.audio.dtype == np.float32 for c in chunks)
    pcm = chunks[0].pcm16()
    assert len(pcm) == 2 * len(chunks[0].audio)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the text is empty"),
        ("   \n\t ", "the text is empty"),
        ("x" * 100_000, "the limit is 20000"),
        ("\x00\x07\x1b", "nothing speakable"),
        ("😀🎉", "nothing speakable"),
    ],
)
def test_bad_text_is_a_clear_error(synth: Synthesizer, text: str, message: str) -> None:
    with pytest.raises(SynthesisError, match=message):
        list(synth.synthesize(text))


@pytest.mark.parametrize("text", ["Привет мир", "温度 25 °C", "°C", "%", "kWh", "hello\x00 world\x1b", "a" * 5000])
def test_odd_text_is_spoken_or_cleanly_refused(synth: Synthesizer, text: str) -> None:
    try:
        chunks = list(synth.synthesize(text))
    except SynthesisError as exc:
        assert "nothing speakable" in str(exc)
    else:
        assert chunks and chunks[-1].last
        assert sum(len(c.audio) for c in chunks) > 0


def test_long_text_is_split_into_bounded_sentences(synth: Synthesizer) -> None:
    text = " ".join(["the pump is running"] * 400)  # no punctuation at all, 7,600 characters
    sentences = synth.sentences(text)
    assert len(sentences) > 1
    assert max(len(ids) for ids in sentences) <= synth.voice_max_ids()


def test_sentences_fit_the_acoustic_engine_profile() -> None:
    """Issue 11, defect 3: what the frontend emits never exceeds what the TensorRT profile was built for."""
    from jetvox.device.synthesis.synthesizer import synthesizer_for
    from jetvox.provisioning.tensorrt.step import profile_of

    cfg = voice_config()
    manifest = mf.read_manifest(mf.voice_dir(cfg.state_dir, cfg.voice.name))
    profile_max = profile_of(cfg, manifest, "acoustic_encoder", "acoustic_encoder").max["input"][1]
    assert profile_max == cfg.engine.max_phonemes
    voice = load_voice(cfg)
    synth = synthesizer_for(voice, cfg)
    try:
        # one 369-character sentence (under max_sentence_chars, so the text splitter keeps it whole) of ~800 ids
        text = " ".join(["the heat pump in the basement is running"] * 9) + "."
        assert len(text) <= cfg.synthesis.max_sentence_chars
        assert len(voice.phonemizer.sentence_ids(text)) > profile_max
        pieces = synth.pieces(text)
        assert len(pieces) > 1 and max(len(ids) for _, ids in pieces) <= profile_max
        assert " ".join(p for p, _ in pieces).split() == text.split()  # every word kept, in order
    finally:
        synth.close()
        voice.close()


def test_a_20000_character_text_starts_after_phonemising_its_first_sentence(synth: Synthesizer) -> None:
    base = "The washing machine has finished its cycle and the laundry is ready to be hung up. "
    text = (base * 300)[:20000]
    calls = []
    phonemizer = synth.voice.phonemizer
    original = phonemizer.sentence_ids

    def counting(sentence: str, inline: object = None) -> list[int]:
        calls.append(sentence)
        return original(sentence, inline)  # type: ignore[arg-type]

    phonemizer.sentence_ids = counting  # type: ignore[method-assign]
    try:
        stream = synth.synthesize(text)
        first = next(stream)
        assert first.index == 0 and len(calls) <= 2, len(calls)  # not the whole text before the first audio
        stream.close()  # type: ignore[attr-defined]
    finally:
        phonemizer.sentence_ids = original  # type: ignore[method-assign]
    assert len(synth.sentences(text)) > 200


def test_nothing_speakable_anywhere_is_an_error_before_any_audio(synth: Synthesizer) -> None:
    with pytest.raises(SynthesisError, match="nothing speakable"):
        synth.synthesize("!!! ??? ... " * 50)
