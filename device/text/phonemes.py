"""espeak-ng phonemes (through piper-tts's bundled espeak-ng binding) mapped to a voice's phoneme ids."""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from typing import Mapping, Sequence

from jetvox.device.text.inline import PLACEHOLDER, InlinePhonemes

log = logging.getLogger(__name__)

BOS, EOS, PAD = "^", "$", "_"

# espeak-ng keeps global state in C: one engine per process, used under a lock.
_LOCK = threading.Lock()
_ESPEAK = None


class _Espeak:
    """piper-tts's espeak-ng binding, choosing a voice only when it changes.

    piper's ``EspeakPhonemizer.phonemize`` selects the voice on every call, and espeak-ng leaks about 1.3 KB
    in each selection (measured: 4 MB per 3,000 sentences, the daemon's only steady growth). The clause handling
    below is the same as piper's, so the phonemes, and the ids, stay exactly those of the reference runtime
    (``tests/test_normalize.py`` compares them).
    """

    def __init__(self) -> None:
        from piper import espeakbridge
        from piper.phonemize_espeak import ESPEAK_DATA_DIR

        espeakbridge.initialize(str(ESPEAK_DATA_DIR))
        self._bridge = espeakbridge
        self._voice: str | None = None

    def phonemize(self, voice: str, text: str) -> list[list[str]]:
        """Text to phonemes grouped by sentence, as piper's ``EspeakPhonemizer.phonemize``."""
        if voice != self._voice:
            self._bridge.set_voice(voice)
            self._voice = voice
        groups: list[list[str]] = []
        current: list[str] = []
        for phonemes, terminator, end_of_sentence in self._bridge.get_phonemes(text):
            phonemes = _LANG_SWITCH.sub("", phonemes) + terminator
            if terminator in (",", ":", ";"):
                phonemes += " "  # not a sentence boundary
            current.extend(unicodedata.normalize("NFD", phonemes))
            if end_of_sentence:
                groups.append(current)
                current = []
        if current:
            groups.append(current)
        return groups


_LANG_SWITCH = re.compile(r"\([^)]+\)")
"""espeak-ng's (lang) flags around words of another language."""


def _espeak() -> _Espeak:
    global _ESPEAK
    if _ESPEAK is None:
        _ESPEAK = _Espeak()
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

    def _with_inline(self, sentence: str, inline: InlinePhonemes) -> list[str]:
        out: list[str] = []
        at = 0
        for match in PLACEHOLDER.finditer(sentence):
            for part in (self.phonemes(sentence[at:match.start()]) if sentence[at:match.start()].strip() else [],
                         inline.spans.get(match.group(0), [])):
                if part:
                    if out and out[-1] != " ":
                        out.append(" ")
                    out.extend(part)
            at = match.end()
        rest = sentence[at:]
        if rest.strip(" "):
            tail = self.phonemes(rest)
            if out and tail and tail[0] not in (" ", ".", ",", "!", "?", ";", ":"):
                out.append(" ")
            out.extend(tail)
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

    def sentence_ids(self, sentence: str, inline: InlinePhonemes | None = None) -> list[int]:
        """Phoneme ids of one sentence; an empty list when nothing speakable remains.

        Args:
            sentence: normalised text.
            inline: ``[[ phonemes ]]`` spans whose placeholders the sentence holds (spoken as written).
        """
        if inline is None or not inline.spans or not PLACEHOLDER.search(sentence):
            phonemes = self.phonemes(sentence)
        else:
            phonemes = self._with_inline(sentence, inline)
        phonemes = [p for p in phonemes if p in self.id_map]
        if not any(p not in (" ", ".", ",", "!", "?", ";", ":") for p in phonemes):
            return []
        return self.ids(phonemes)
