"""The espeak-ng wrapper: exactly piper-tts's phonemes, without espeak-ng's leak on every voice selection."""

from __future__ import annotations

from piper.phonemize_espeak import EspeakPhonemizer

from jetvox.device.evaluation.sentences import EVAL_SENTENCES
from jetvox.device.text.phonemes import _espeak

EXTRA = ["Hello, world: this is a test; really?", "Ça va (bien) merci.", "No terminator here",
         "Wait... what?! Yes.", "CO2 at 1,450 ppm; open the window!"]


def rss_kib() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_phonemes_equal_piper_tts() -> None:
    ours, reference = _espeak(), EspeakPhonemizer()
    for text in [*EVAL_SENTENCES, *EXTRA]:
        assert ours.phonemize("en-us", text) == reference.phonemize("en-us", text), text


def test_phonemising_thousands_of_sentences_does_not_grow_memory() -> None:
    ours = _espeak()
    for i in range(300):  # warm up espeak-ng's own caches
        ours.phonemize("en-us", f"Value {i % 97}.")
    before = rss_kib()
    for i in range(3000):
        ours.phonemize("en-us", f"Value {i % 97}.")
    grown = rss_kib() - before
    # piper's phonemize selects the voice on each call: about 4 MB for these 3,000 sentences
    assert grown < 1024, f"{grown} KiB"


def test_inline_phonemes_are_spoken_as_written_and_unknown_symbols_are_an_error() -> None:
    import pytest

    from jetvox.device.synthesis.synthesizer import SynthesisError, Synthesizer
    from jetvox.device.voice.loader import load_voice
    from tests.voicefix import voice_config

    cfg = voice_config(voice__name="joe-fast")
    with load_voice(cfg) as voice:
        synth = Synthesizer(voice, cfg.synthesis)
        try:
            hello = "".join(voice.phonemizer.phonemes("hello")).strip(" .")
            plain = synth.sentences("Say hello to the team at 3 pm.")
            inline = synth.sentences(f"Say [[ {hello} ]] to the team at 3 pm.")
            assert inline == plain  # espeak-ng's own phonemes for the word, written inline: the same ids
            other = synth.sentences("Say [[ wˈɜːld ]] to the team at 3 pm.")
            assert other != plain and len(other) == 1
            # a phoneme span is not normalised and does not end a sentence: "." inside stays a symbol
            assert len(synth.sentences("Call [[ dʒˈɛt.vɑks ]] now. Then stop.")) == 2
            with pytest.raises(SynthesisError, match=r"the voice has no symbol '☃'"):
                synth.synthesize("Say [[ h☃loʊ ]] now.")
        finally:
            synth.close()
