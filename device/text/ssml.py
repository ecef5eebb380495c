"""SSML for announcements: a hardened parse into spans of text with their rate, volume, voice and pauses."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Optional
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException
from num2words import num2words

from jetvox.engines.errors import JetvoxError

MAX_DEPTH = 32
"""Deepest element nesting accepted."""
MAX_BREAK_S = 10.0
"""Longest single pause."""
BREAK_STRENGTH = {"none": 0.0, "x-weak": 0.1, "weak": 0.2, "medium": 0.4, "strong": 0.7, "x-strong": 1.0}
RATE_NAMES = {"x-slow": 0.5, "slow": 0.75, "medium": 1.0, "default": 1.0, "fast": 1.25, "x-fast": 1.5}
VOLUME_NAMES = {"silent": -60.0, "x-soft": -12.0, "soft": -6.0, "medium": 0.0, "default": 0.0, "loud": 6.0,
                "x-loud": 12.0}
EMPHASIS = {"strong": (0.8, 4.0), "moderate": (0.88, 2.0), "none": (1.0, 0.0), "reduced": (1.1, -3.0)}
"""Emphasis level -> (rate factor, dB): slower and louder."""
SUPPORTED = ("speak", "p", "s", "break", "prosody", "say-as", "sub", "phoneme", "emphasis", "voice")


class SsmlError(JetvoxError, ValueError):
    """SSML that cannot be spoken; nothing of it is."""


def is_ssml(text: str) -> bool:
    """True for a text that asks to be read as SSML: it starts with ``<speak`` (or an XML prologue before one)."""
    head = text.lstrip()
    return head.startswith("<speak") or (head.startswith(("<?xml", "<!")) and "<speak" in head)


@dataclass(frozen=True)
class Style:
    """What applies to a stretch of text."""

    rate: float = 1.0
    """Speaking-rate factor: 2 is twice as fast (length scale divided by it)."""
    volume_db: float = 0.0
    """Gain in dB on top of the message's volume."""
    voice: Optional[str] = None
    """Voice for this stretch; None is the message's."""


@dataclass(frozen=True)
class Span:
    """Text spoken in one style, then a pause."""

    text: str
    """Plain text (``[[ ipa ]]`` where a ``phoneme`` element was)."""
    style: Style = Style()
    """Rate, volume, voice."""
    pause_s: float = 0.0
    """Exact silence after it (``break``)."""


@dataclass
class Document:
    """A parsed SSML message."""

    spans: list[Span] = field(default_factory=list)
    """In order; pauses are attached to the span before them."""
    ignored: list[str] = field(default_factory=list)
    """Unknown elements (their text is still spoken) and unsupported attributes, by name, once each."""

    def note(self, what: str) -> None:
        if what not in self.ignored:
            self.ignored.append(what)

    @property
    def voices(self) -> list[str]:
        """The voices its spans name, once each, sorted."""
        return sorted({span.style.voice for span in self.spans if span.style.voice})


def parse(text: str) -> Document:
    """Parse an SSML message; SsmlError says what is wrong and where (line and column).

    A text marked as SSML that does not start with ``<speak`` (nor an XML declaration) is read as the inside of
    a ``<speak>`` element, so ``Hello <break time="1s"/> world`` works as is.
    """
    if not text.lstrip().startswith(("<speak", "<?xml", "<!")):
        text = f"<speak>{text}</speak>"
    try:
        root = SafeET.fromstring(text, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise SsmlError(f"SSML refused: {type(exc).__name__} (DTDs, entities and external references "
                        "are not allowed)") from None
    except ParseError as exc:
        line, column = exc.position
        raise SsmlError(f"malformed SSML at line {line}, column {column + 1}: {_reason(exc)}") from None
    if _local(root.tag) != "speak":
        raise SsmlError(f"SSML must have <speak> at the top, got <{_local(root.tag)}>")  # after a declaration
    builder = _Builder()
    builder.walk(root, Style(), 0)
    builder.flush(0.0)
    return builder.doc


def _reason(exc: ParseError) -> str:
    return re.sub(r":\s*line \d+, column \d+$", "", str(exc))


def _local(tag: object) -> str:
    return str(tag).rsplit("}", 1)[-1]


class _Builder:
    """Walks the tree, gathering text into spans."""

    def __init__(self) -> None:
        self.doc = Document()
        self._text: list[str] = []
        self._style = Style()

    def add(self, text: Optional[str], style: Style) -> None:
        if not text or not text.strip():
            if text and self._text:
                self._text.append(" ")
            return
        if style != self._style and "".join(self._text).strip():
            self.flush(0.0)
        self._style = style
        self._text.append(text)

    def flush(self, pause: float) -> None:
        """End the current span, with ``pause`` seconds of silence after it."""
        body = re.sub(r"\s+", " ", "".join(self._text)).strip()
        self._text = []
        if body:
            self.doc.spans.append(Span(body, self._style, pause))
        elif pause:
            if self.doc.spans:
                last = self.doc.spans[-1]
                self.doc.spans[-1] = replace(last, pause_s=min(MAX_BREAK_S, last.pause_s + pause))
            else:
                self.doc.spans.append(Span("", self._style, pause))

    def walk(self, el: Element, style: Style, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise SsmlError(f"SSML nested deeper than {MAX_DEPTH} elements")
        tag = _local(el.tag)
        if tag == "break":
            self.flush(_break(el))
        elif tag == "say-as":
            self.add(_say_as(el, self.doc), style)
        elif tag == "sub":
            alias = el.get("alias")
            if alias is None:
                raise SsmlError("<sub> needs an alias attribute")
            self.add(f" {alias} ", style)
        elif tag == "phoneme":
            self.add(_phoneme(el), style)
        else:
            inner = self._style_of(el, tag, style)
            self.add(el.text, inner)
            for child in el:
                self.walk(child, inner, depth + 1)
            if tag in ("s", "p") and "".join(self._text).strip() and not "".join(self._text).rstrip()[-1:] in ".!?":
                self._text.append(". ")
        if depth > 0:
            self.add(el.tail, style)

    def _style_of(self, el: Element, tag: str, style: Style) -> Style:
        if tag in ("speak", "p", "s"):
            return style
        if tag == "prosody":
            if el.get("pitch") is not None or el.get("contour") is not None or el.get("range") is not None:
                self.doc.note("prosody pitch")
            rate_text, volume_text = el.get("rate"), el.get("volume")
            rate = 1.0 if rate_text is None else _rate(rate_text)
            vol = 0.0 if volume_text is None else _volume(volume_text)
            return replace(style, rate=style.rate * rate, volume_db=style.volume_db + vol)
        if tag == "emphasis":
            level = el.get("level", "moderate")
            if level not in EMPHASIS:
                raise SsmlError(f"<emphasis level>: expected one of {', '.join(EMPHASIS)}, got {level!r}")
            rate, vol = EMPHASIS[level]
            return replace(style, rate=style.rate * rate, volume_db=style.volume_db + vol)
        if tag == "voice":
            name = el.get("name")
            if not name:
                raise SsmlError("<voice> needs a name attribute (a provisioned voice)")
            return replace(style, voice=name)
        self.doc.note(tag)
        return style


def _seconds(value: str, what: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s)\s*", value)
    if m is None:
        raise SsmlError(f"{what}: expected a time such as 500ms or 1.5s, got {value!r}")
    seconds = float(m.group(1)) / (1000.0 if m.group(2) == "ms" else 1.0)
    if seconds > MAX_BREAK_S:
        raise SsmlError(f"{what}: at most {MAX_BREAK_S:g} s, got {value!r}")
    return seconds


def _break(el: Element) -> float:
    if el.get("time") is not None:
        return _seconds(el.get("time", ""), "<break time>")
    strength = el.get("strength", "medium")
    if strength not in BREAK_STRENGTH:
        raise SsmlError(f"<break strength>: expected one of {', '.join(BREAK_STRENGTH)}, got {strength!r}")
    return BREAK_STRENGTH[strength]


def _rate(value: str) -> float:
    if value in RATE_NAMES:
        return RATE_NAMES[value]
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%\s*", value)
    if m is None or not 25.0 <= float(m.group(1)) <= 400.0:
        raise SsmlError(f"<prosody rate>: expected 25% to 400% or one of {', '.join(RATE_NAMES)}, got {value!r}")
    return float(m.group(1)) / 100.0


def _volume(value: str) -> float:
    if value in VOLUME_NAMES:
        return VOLUME_NAMES[value]
    m = re.fullmatch(r"\s*([+-]?\d+(?:\.\d+)?)\s*dB\s*", value)
    if m is None or not -60.0 <= float(m.group(1)) <= 12.0:
        raise SsmlError(f"<prosody volume>: expected -60dB to +12dB or one of {', '.join(VOLUME_NAMES)}, "
                        f"got {value!r}")
    return float(m.group(1))


def _phoneme(el: Element) -> str:
    alphabet, ph = el.get("alphabet", "ipa"), el.get("ph")
    if alphabet != "ipa":
        raise SsmlError(f"<phoneme alphabet>: only ipa (espeak-ng's IPA) is supported, got {alphabet!r}")
    if not ph or "[[" in ph or "]]" in ph:
        raise SsmlError("<phoneme> needs a ph attribute with espeak-ng IPA")
    return f" [[ {ph} ]] "


_DIGITS = "zero one two three four five six seven eight nine".split()


def _say_as(el: Element, doc: Document) -> str:
    kind = el.get("interpret-as", "")
    text = "".join(el.itertext()).strip()
    if kind in ("characters", "spell-out"):
        return " " + ", ".join(c for c in text if not c.isspace()) + " "
    if kind == "digits":
        return " " + " ".join(_DIGITS[int(c)] if c.isdigit() else c for c in text if not c.isspace()) + " "
    if kind == "telephone":
        groups = [g for g in re.split(r"[^0-9+]+", text) if g]
        return " " + ", ".join(" ".join(_DIGITS[int(c)] if c.isdigit() else "plus" for c in g) for g in groups) + ". "
    if kind in ("cardinal", "ordinal"):
        number = text.replace(",", "")
        if not re.fullmatch(r"-?\d{1,15}", number):
            raise SsmlError(f"<say-as interpret-as={kind}>: expected a whole number, got {text[:40]!r}")
        return " " + num2words(int(number), to="ordinal" if kind == "ordinal" else "cardinal") + " "
    if kind == "date":
        return " " + _date(text, el.get("format", "ymd")) + " "
    if kind in ("time", "unit"):
        return f" {text} "  # the normaliser reads times (14:30, 2:30 pm) and units (5 km, 21 °C)
    doc.note(f"say-as {kind}")
    return f" {text} "


_MONTHS = ("January February March April May June July August September October November December").split()


def _date(text: str, fmt: str) -> str:
    parts = [p for p in re.split(r"[^0-9]+", text) if p]
    if not re.fullmatch(r"[ymd]{1,3}", fmt) or len(set(fmt)) != len(fmt) or len(parts) != len(fmt):
        raise SsmlError(f"<say-as interpret-as=date>: {text[:40]!r} does not match format {fmt!r}")
    fields = dict(zip(fmt, (int(p) for p in parts)))
    out = []
    if "m" in fields:
        if not 1 <= fields["m"] <= 12:
            raise SsmlError(f"<say-as interpret-as=date>: no month {fields['m']} in {text[:40]!r}")
        out.append(_MONTHS[fields["m"] - 1])
    if "d" in fields:
        if not 1 <= fields["d"] <= 31:
            raise SsmlError(f"<say-as interpret-as=date>: no day {fields['d']} in {text[:40]!r}")
        out.append(num2words(fields["d"], to="ordinal") + ("," if "y" in fields else ""))
    if "y" in fields:
        out.append(num2words(fields["y"], to="year"))
    return " ".join(out)
