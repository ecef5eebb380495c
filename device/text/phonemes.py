"""espeak-ng phonemes (through piper-tts's bundled espeak-ng binding) mapped to a voice's phoneme ids."""

from __future__ import annotations

import logging
import threading
from typing import Mapping, Sequence

log = logging.getLogger(__name__)

BOS, EOS, PAD = "^", "$", "_"

# espeak-ng keeps global state in C: one phonemiser per process, used under a lock.
_LOCK = threading.Lock()
_ESPEAK = None


def _espeak():  # type: ignore[no-untyped-def]
    global _ESPEAK
    if _ESPEAK is None:
        from piper.phonemize_espeak import EspeakPhonemizer

        _ESPEAK = EspeakPhonemizer()
    return _ESPEAK


class Phonemizer:
    """Sentence text to phoneme ids for one voice."""

    def __init__(self, espeak_voice: str, phoneme_id_map: Mapping[str, Sequence[int]]) -> None:
        """Prepare a phonemiser.

        Args:
            espeak_voice: espeak-ng voice, e.g. ``en-us``.
            phoneme_id_map: the voice's ``phoneme_id_map`` (phoneme -> ids).
        """
        for sym in (BOS, EOS, PAD):
            if sym not in phoneme_id_map:
                raise ValueError(f"phoneme_id_map lacks the special symbol {sym!r}")
        self.espeak_voice = espeak_voice
        self.id_map = {k: list(v) for k, v in phoneme_id_map.items()}

    def phonemes(self, sentence: str) -> list[str]:
        """IPA phonemes of one sentence (espeak-ng may split it into clauses; they are joined)."""
        with _LOCK:
            groups = _espeak().phonemize(self.espeak_voice, sentence)
        out: list[str] = []
        for group in groups:
            if out and group and out[-1] != " ":
                out.append(" ")
            out.extend(group)
        return out

    def ids(self, phonemes: Sequence[str]) -> list[int]:
        """Phoneme ids with BOS, PAD between phonemes and EOS; unknown phonemes are skipped."""
        ids = list(self.id_map[BOS]) + list(self.id_map[PAD])
        for p in phonemes:
            mapped = self.id_map.get(p)
            if mapped is None:
                log.debug("phoneme %r not in the voice's map; skipped", p)
                continue
            ids.extend(mapped)
            ids.extend(self.id_map[PAD])
        ids.extend(self.id_map[EOS])
        return ids

    def sentence_ids(self, sentence: str) -> list[int]:
        """Phoneme ids of one sentence; an empty list when nothing speakable remains."""
        phonemes = [p for p in self.phonemes(sentence) if p in self.id_map]
        if not any(p not in (" ", ".", ",", "!", "?", ";", ":") for p in phonemes):
            return []
        return self.ids(phonemes)
