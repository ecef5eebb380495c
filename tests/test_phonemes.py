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
