"""Piper's inline phonemes, ``[[ həˈloʊ ]]``: kept away from the normaliser, then spoken exactly as written."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

INLINE = re.compile(r"\[\[(.*?)\]\]", re.DOTALL)
"""``[[ phonemes ]]`` in a text: espeak-ng IPA symbols, spaces between words."""
_MARK = "zqxph"
PLACEHOLDER = re.compile(_MARK + r"([a-z]{2})")
"""The word that stands for an inline span while the text is normalised (lower-case letters pass unchanged)."""


def _tag(index: int) -> str:
    return _MARK + chr(ord("a") + index // 26) + chr(ord("a") + index % 26)


@dataclass
class InlinePhonemes:
    """The inline spans of one text, by placeholder."""

    spans: dict[str, list[str]] = field(default_factory=dict)
    """Placeholder word -> its phonemes (NFD-decomposed symbols, ``" "`` between words)."""

    @classmethod
    def protect(cls, text: str) -> tuple[str, "InlinePhonemes"]:
        """``text`` with every ``[[ ... ]]`` replaced by a placeholder word, and the spans."""
        found = cls()
        if "[[" not in text:
            return text, found

        def swap(match: re.Match[str]) -> str:
            if len(found.spans) >= 26 * 26:
                raise ValueError("more than 676 [[ phoneme ]] spans in one text")
            tag = _tag(len(found.spans))
            words = match.group(1).split()
            found.spans[tag] = list(unicodedata.normalize("NFD", " ".join(words)))
            return f" {tag} "

        return INLINE.sub(swap, text), found

    def unknown(self, known: set[str]) -> list[str]:
        """Symbols of the spans that the voice has no id for, in order of appearance."""
        return list(dict.fromkeys(p for span in self.spans.values() for p in span if p != " " and p not in known))
