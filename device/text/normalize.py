"""Turn sensor and automation text into US-English words that espeak-ng reads correctly."""

from __future__ import annotations

import datetime
import logging
import re
import unicodedata
from fractions import Fraction
from types import MappingProxyType
from typing import Iterable, Iterator, Mapping

from num2words import num2words

logger = logging.getLogger(__name__)

DEFAULT_MAX_CHARS = 400

# ---------------------------------------------------------------------------
# Patterns (compiled once; immutable)
# ---------------------------------------------------------------------------

# An unsigned number: "1,250", "1250", "21.5", "1,250.75".
_UNSIGNED = r"(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?"
# An optional sign that only counts when it is not glued to a preceding word ("x-5").
_SIGNED = rf"(?:(?<![\w.])(?P<sign>[-+]))?(?<![\w.])(?P<num>{_UNSIGNED})"

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
_NEWLINES = re.compile(r"\r\n?|[\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_SPACES = re.compile(r"[^\S\n]+")
_VULGAR = re.compile(r"(\d?)([\u00bc-\u00be\u2150-\u215e])")
_ORDINAL_INDICATOR = re.compile(r"º(?=\s?[CFcf]\b)")
_DASHES = str.maketrans({"\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-",
                         "\u2212": "-", "\u2014": ", ", "\u2015": ", ",
                         "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})

_ISO_T = re.compile(
    r"(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}(?::\d{2})?)(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?\b"
)
_ISO_DATE = re.compile(r"(?<![\w.\-/])(\d{4})-(\d{1,2})-(\d{1,2})(?![\w]|[-/.]\d)")
_DMY_DATE = re.compile(r"(?<![\w.\-/])(\d{1,2})([/.])(\d{1,2})\2(\d{4})(?![\w]|[-/.]\d)")
_TIME_RANGE = re.compile(r"(?<![\w:])(\d{1,2}:\d{2})\s?-\s?(?=\d{1,2}:\d{2})")
_AMPM = r"(?P<ampm>[AaPp]\.?[Mm]\.?)(?![\w])"
_CLOCK = re.compile(
    rf"(?<![\w:.])(?P<h>\d{{1,2}}):(?P<m>\d{{2}})(?::(?P<s>\d{{2}}))?(?![\w:]|\.\d)(?:\s?{_AMPM})?"
)
_SENTENCE_FOLLOWS = re.compile(r"\s*(?:$|\n|[A-Z])")
_HOUR_AMPM = re.compile(rf"(?<![\w:.])(?P<h>\d{{1,2}})\s?{_AMPM}")

_DOCTOR_DRIVE = re.compile(r"\bDr\.")
_SAINT_STREET = re.compile(r"\bSt\.")
_ADDRESS_BEFORE = re.compile(r"\d+[a-zA-Z]?\s+(?:[A-Z][\w'-]*\s+){1,3}$")
_CAPITAL_AFTER = re.compile(r"\s+[A-Z]")
_CAPITAL_BEFORE = re.compile(r"\b[A-Z][a-z]+\s+$")
_SIMPLE_ABBREVIATIONS = (
    (re.compile(r"\bNo\.(?=\s?\d)"), "number"),
    (re.compile(r"#(?=\s?\d)"), "number "),
    (re.compile(r"\bMrs\.", re.IGNORECASE), "Missus"),
    (re.compile(r"\bMr\.", re.IGNORECASE), "Mister"),
    (re.compile(r"\bapprox\b\.?", re.IGNORECASE), "approximately"),
    (re.compile(r"(?<!\w)e\.\s?g\.(?!\w)", re.IGNORECASE), "for example"),
    (re.compile(r"(?<!\w)i\.\s?e\.(?!\w)", re.IGNORECASE), "that is"),
    (re.compile(r"\bvs\b\.?", re.IGNORECASE), "versus"),
)
# "temp"/"hum" only as a label directly before a value: "Temp: 21", "hum=45%", "temp 21.5".
_LABEL_ABBREVIATIONS = re.compile(r"\b(?P<word>temp|hum)\b\.?(?=\s?[:=]|\s?[-+]?\d)", re.IGNORECASE)
_LABEL_WORDS = MappingProxyType({"temp": "temperature", "hum": "humidity"})

_AMPERSAND = re.compile(r"\s*&\s*")
_PLUS = re.compile(r"(?<=\d)\s?\+\s?(?=\d)")
# "20-25" is a range; "1-2-3", "555-1234-9" and "20-25.5.1" are not (the right side must end there).
_RANGE = re.compile(
    rf"(?<![\w.,:\-])(?P<low>[-+]?{_UNSIGNED})(?:-|\s+-\s+)(?P<high>[-+]?{_UNSIGNED})(?!\d|[-.:/,]\d)"
)
_DECADE = re.compile(r"(?<![\w.])((?:1\d|20)\d0)s\b")
_ORDINAL = re.compile(r"(?<![\w.])(\d+)(?:st|nd|rd|th)\b", re.IGNORECASE)
_TEMPERATURE = re.compile(
    rf"{_SIGNED}\s?(?:°\s?|deg(?:rees?)?\.?\s?)(?P<scale>[CcFf])(?![\w])"
)
_DEGREES = re.compile(rf"{_SIGNED}\s?°")
_PERCENT = re.compile(rf"{_SIGNED}\s?%(?:\s?(?P<rh>RH)\b)?")
_FRACTION = re.compile(r"(?<![\w.])(\d+)\u2044(\d+)(?![\w.])")
_SLASH_NUMBERS = re.compile(r"(?<=\d)\s?/\s?(?=\d)")
_DOTTED = re.compile(r"(?<![\w.])\d+(?:\.\d+){2,}(?![\w]|\.\d)")
_BARE_NUMBER = re.compile(rf"(?:(?<![\w.])(?P<sign>[-+]))?(?P<num>{_UNSIGNED}|(?<![\w.])\.\d+)")

# Not calendar.month_name: that follows the process locale, and espeak-ng here speaks English.
_MONTHS = ("", "January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")
_SCALES = MappingProxyType({"c": "Celsius", "f": "Fahrenheit"})

# symbol -> (singular, plural). Case-sensitive: "m" is meter, "M" is not a unit here.
_UNITS: Mapping[str, tuple[str, str]] = MappingProxyType({
    "km/h": ("kilometer per hour", "kilometers per hour"),
    "kph": ("kilometer per hour", "kilometers per hour"),
    "mph": ("mile per hour", "miles per hour"),
    "m/s": ("meter per second", "meters per second"),
    "kWh": ("kilowatt hour", "kilowatt hours"),
    "Wh": ("watt hour", "watt hours"),
    "kW": ("kilowatt", "kilowatts"),
    "W": ("watt", "watts"),
    "mV": ("millivolt", "millivolts"),
    "V": ("volt", "volts"),
    "mA": ("milliamp", "milliamps"),
    "A": ("amp", "amps"),
    "ppm": ("part per million", "parts per million"),
    "ppb": ("part per billion", "parts per billion"),
    "hPa": ("hectopascal", "hectopascals"),
    "mbar": ("millibar", "millibars"),
    "bar": ("bar", "bar"),
    "lux": ("lux", "lux"),
    "lx": ("lux", "lux"),
    "dB": ("decibel", "decibels"),
    "mm": ("millimeter", "millimeters"),
    "cm": ("centimeter", "centimeters"),
    "km": ("kilometer", "kilometers"),
    "m2": ("square meter", "square meters"),
    "m3": ("cubic meter", "cubic meters"),
    "m": ("meter", "meters"),
    "kg": ("kilogram", "kilograms"),
    "mg": ("milligram", "milligrams"),
    "g": ("gram", "grams"),
    "ml": ("milliliter", "milliliters"),
    "mL": ("milliliter", "milliliters"),
    "L": ("liter", "liters"),
    "l": ("liter", "liters"),
    "kHz": ("kilohertz", "kilohertz"),
    "Hz": ("hertz", "hertz"),
    "ms": ("millisecond", "milliseconds"),
    "sec": ("second", "seconds"),
    "s": ("second", "seconds"),
    "min": ("minute", "minutes"),
    "hrs": ("hour", "hours"),
    "hr": ("hour", "hours"),
    "h": ("hour", "hours"),
    "rpm": ("revolution per minute", "revolutions per minute"),
    # NFKC turns "µ" into Greek "μ" and "³" into "3".
    "μg/m3": ("microgram per cubic meter", "micrograms per cubic meter"),
    "ug/m3": ("microgram per cubic meter", "micrograms per cubic meter"),
})
_UNIT_ALTERNATION = "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))
_UNIT = re.compile(rf"{_SIGNED}\s?(?P<unit>{_UNIT_ALTERNATION})(?![\w/])")

# Symbols that are safe to expand with no number in front ("price per kWh", a lone "%").
_LONE_UNITS = ("kWh", "Wh", "kW", "km/h", "m/s", "hPa", "ppm", "μg/m3", "ug/m3", "dB",
               "Hz", "kHz", "mA", "mV", "lx", "km", "kg", "cm", "ml", "mL")
_LONE_UNIT = re.compile(
    r"(?<![\w/])(" + "|".join(re.escape(u) for u in sorted(_LONE_UNITS, key=len, reverse=True))
    + r")(?![\w/])"
)
_LONE_TEMPERATURE = re.compile(r"°\s?([CF])\b")
_LONE_SYMBOLS = (("°", " degrees "), ("%", " percent "))

_KEEP_PUNCTUATION = frozenset(".,;:!?'\"()-\n ")
_SPACE_BEFORE_PUNCT = re.compile(r" +([,.;:!?)])")
_SPACE_AFTER_PAREN = re.compile(r"\( +")
_REPEATED_COMMA = re.compile(r",(?:\s*,)+")
_COMMA_GLUED = re.compile(r",(?=[^\s\d,\"')])")

_SENTENCE_END = re.compile(r"[.!?;]+[\"')\]]*(?=\s|$)|\n")
_NO_SPLIT_AFTER = re.compile(
    r"(?:\b(?i:dr|st|no|mr|mrs|ms|approx|vs|e\.g|i\.e)|(?<![\w.])[A-Z](?:\.[A-Z])+)\.$"
)
_COMMA_BREAK = re.compile(r"(?<=,)\s+")


# ---------------------------------------------------------------------------
# Number words (num2words, US style: no "and", no commas)
# ---------------------------------------------------------------------------


def _us(words: str) -> str:
    """Drop the British "and" and the commas num2words puts in long numbers."""
    return re.sub(r"\s+", " ", words.replace(",", "").replace(" and ", " ")).strip()


def _digits(digits: str) -> str:
    """Read a digit string one digit at a time."""
    return " ".join(num2words(int(d)) for d in digits)


def _cardinal(digits: str) -> str:
    """Words for a non-negative integer written as digits (commas allowed)."""
    digits = digits.replace(",", "")
    if (len(digits) > 1 and digits.startswith("0")) or len(digits) > 15:
        return _digits(digits)
    return _us(num2words(int(digits)))


def _ordinal(value: int) -> str:
    """Words for an ordinal ("twenty-second")."""
    return _us(num2words(value, to="ordinal"))


def _year(value: int) -> str:
    """Words for a calendar year ("twenty twenty-six")."""
    return _us(num2words(value, to="year"))


def _number(num: str, sign: str | None = None) -> str:
    """Words for a signed decimal number as written ("-21.5" -> "minus twenty-one point five")."""
    integer, _, fraction = num.partition(".")
    words = _cardinal(integer) if integer else ""
    if fraction:
        words = f"{words} point {_digits(fraction)}".strip()
    prefix = {"-": "minus ", "+": "plus "}.get(sign or "", "")
    return prefix + words


def _is_one(num: str) -> bool:
    """Whether a written quantity takes a singular unit ("1 volt" but "1.5 volts")."""
    return num == "1"


def _fraction_words(numerator: int, denominator: int) -> str:
    """Words for a simple fraction ("three quarters")."""
    if denominator == 0:
        return f"{_cardinal(str(numerator))} over zero"
    if denominator in (2, 4):
        singular, plural = ("half", "halves") if denominator == 2 else ("quarter", "quarters")
    else:
        singular = _ordinal(denominator)
        plural = singular + "s"
    return f"{_cardinal(str(numerator))} {singular if numerator == 1 else plural}"


# ---------------------------------------------------------------------------
# Unicode clean-up
# ---------------------------------------------------------------------------


def _vulgar_fraction(match: re.Match[str]) -> str:
    """Spell a vulgar-fraction character ("½") before NFKC mangles "21½" into "211⁄2"."""
    value = Fraction(unicodedata.numeric(match.group(2))).limit_denominator(100)
    words = _fraction_words(value.numerator, value.denominator)
    return f"{match.group(1)} and {words}" if match.group(1) else f" {words}"


def _clean_char(char: str) -> str:
    """Map one character after NFKC: drop controls, format marks and emoji, keep the rest."""
    if char in "\n°":
        return char
    category = unicodedata.category(char)
    if char == "\t" or category.startswith("Z"):
        return " "
    if category in ("Cc", "Cf", "Mn", "Me"):
        return ""
    if category.startswith("C") or category in ("So", "Sk", "Sc"):
        return " "
    if category == "Nd" and not char.isascii():
        return str(unicodedata.decimal(char))
    return char


def _clean_unicode(text: str) -> str:
    """NFKC-normalise, unify line breaks, drop terminal colour codes, controls and emoji."""
    text = _NEWLINES.sub("\n", _ANSI_ESCAPE.sub("", text))
    text = _ORDINAL_INDICATOR.sub("°", text)
    text = _VULGAR.sub(_vulgar_fraction, text)
    text = unicodedata.normalize("NFKC", text).translate(_DASHES)
    text = "".join(_clean_char(c) for c in text)
    return _SPACES.sub(" ", text)


def _is_latin_letter(char: str) -> bool:
    """Whether a letter belongs to the Latin script (which espeak-ng's English voice can read)."""
    return char.isascii() or unicodedata.name(char, "").startswith("LATIN")


def _final_char(char: str) -> str:
    """Keep Latin letters and speakable punctuation; everything else becomes a space."""
    if char in _KEEP_PUNCTUATION:
        return char
    if char.isalpha():
        return char if _is_latin_letter(char) else " "
    if unicodedata.category(char).startswith("M"):
        return ""
    return " "


def _tidy(text: str) -> str:
    """Drop unsayable characters, collapse whitespace and drop empty lines."""
    text = "".join(_final_char(c) for c in text)
    text = _REPEATED_COMMA.sub(",", text)
    text = _COMMA_GLUED.sub(", ", text)
    lines = (_SPACES.sub(" ", line).strip(" ,") for line in text.split("\n"))
    lines = (_SPACE_AFTER_PAREN.sub("(", _SPACE_BEFORE_PUNCT.sub(r"\1", line)) for line in lines)
    return "\n".join(line for line in lines if line.strip(" .,;:!?'\"()-"))


# ---------------------------------------------------------------------------
# Dates and times
# ---------------------------------------------------------------------------


def _say_date(year: int, month: int, day: int) -> str | None:
    """Words for a valid date ("November twenty-first, twenty twenty-six"), else None."""
    try:
        datetime.date(year, month, day)
    except ValueError:
        return None
    return f"{_MONTHS[month]} {_ordinal(day)}, {_year(year)}"


def _iso_date(match: re.Match[str]) -> str:
    """Replace an ISO date when it is a real date."""
    year, month, day = (int(g) for g in match.groups())
    return _say_date(year, month, day) or match.group(0)


def _dmy_date(match: re.Match[str]) -> str:
    """Replace a D/M/Y or M/D/Y date only when the order is unambiguous."""
    first, second, year = int(match.group(1)), int(match.group(3)), int(match.group(4))
    if first == second or (first > 12 and second <= 12):
        day, month = first, second
    elif second > 12 and first <= 12:
        month, day = first, second
    else:
        return match.group(0)
    return _say_date(year, month, day) or match.group(0)


def _ampm(match: re.Match[str]) -> str:
    """Normalise "p.m." / "pm" to " PM" (espeak spells it as letters).

    A final period is kept when it also ends the sentence ("at 5 p.m. Then").
    """
    raw = match.group("ampm")
    if not raw:
        return ""
    period = "." if raw.endswith(".") and _SENTENCE_FOLLOWS.match(match.string, match.end()) else ""
    return (" AM" if raw[0] in "Aa" else " PM") + period


def _say_clock(hour: int, minute: int, second: int | None, ampm: str) -> str:
    """Words for a clock time ("seven oh five", "twelve o'clock", "twenty-two hundred")."""
    if minute == 0 and ampm:
        words = _cardinal(str(hour))
    elif minute == 0 and hour == 0:
        words = "midnight"
    elif minute == 0:
        words = f"{_cardinal(str(hour))} " + ("hundred" if hour > 12 else "o'clock")
    elif minute < 10:
        words = f"{_cardinal(str(hour))} oh {_cardinal(str(minute))}"
    else:
        words = f"{_cardinal(str(hour))} {_cardinal(str(minute))}"
    if second:
        words += f" and {_cardinal(str(second))} second{'' if second == 1 else 's'}"
    return words + ampm


def _clock(match: re.Match[str]) -> str:
    """Replace a valid "HH:MM[:SS] [AM|PM]" clock time."""
    hour, minute = int(match.group("h")), int(match.group("m"))
    second = int(match.group("s")) if match.group("s") else None
    ampm = _ampm(match)
    max_hour = 12 if ampm else 23
    if hour > max_hour or (ampm and hour == 0) or minute > 59 or (second or 0) > 59:
        return match.group(0)
    return _say_clock(hour, minute, second, ampm)


def _hour_ampm(match: re.Match[str]) -> str:
    """Replace "10 PM" / "7am"."""
    hour = int(match.group("h"))
    if not 1 <= hour <= 12:
        return match.group(0)
    return _cardinal(str(hour)) + _ampm(match)


def _dates_and_times(text: str) -> str:
    """Expand ISO/slashed dates and clock times."""
    text = _ISO_T.sub(r"\1 at \2", text)
    text = _ISO_DATE.sub(_iso_date, text)
    text = _DMY_DATE.sub(_dmy_date, text)
    text = _TIME_RANGE.sub(r"\1 to ", text)
    text = _CLOCK.sub(_clock, text)
    return _HOUR_AMPM.sub(_hour_ampm, text)


# ---------------------------------------------------------------------------
# Abbreviations and symbols
# ---------------------------------------------------------------------------


def _after_address(match: re.Match[str]) -> bool:
    """Whether the abbreviation follows "<number> <Capitalised words>" as in "12 Elm St."."""
    return bool(_ADDRESS_BEFORE.search(match.string[max(0, match.start() - 80):match.start()]))


def _before_name(match: re.Match[str]) -> bool:
    """Whether a capitalised word follows the abbreviation."""
    return bool(_CAPITAL_AFTER.match(match.string, match.end()))


def _after_name(match: re.Match[str]) -> bool:
    """Whether a capitalised word comes just before the abbreviation ("Oak Dr.")."""
    return bool(_CAPITAL_BEFORE.search(match.string, max(0, match.start() - 40), match.start()))


def _doctor_or_drive(match: re.Match[str]) -> str:
    """"Dr. Smith" -> "Doctor Smith"; "12 Oak Dr." and "Oak Dr." -> "Drive"."""
    if _after_address(match) or (_after_name(match) and not _before_name(match)):
        return "Drive"
    return "Doctor"


def _saint_or_street(match: re.Match[str]) -> str:
    """"St. Louis" -> "Saint Louis"; "Main St." -> "Main Street"."""
    return "Saint" if _before_name(match) and not _after_address(match) else "Street"


def _label(match: re.Match[str]) -> str:
    """"Temp: 21" -> "Temperature: 21", keeping the capital."""
    word = match.group("word")
    full = _LABEL_WORDS[word.lower()]
    return full.capitalize() if word[0].isupper() else full


def _abbreviations(text: str) -> str:
    """Expand a conservative set of abbreviations."""
    text = _DOCTOR_DRIVE.sub(_doctor_or_drive, text)
    text = _SAINT_STREET.sub(_saint_or_street, text)
    for pattern, replacement in _SIMPLE_ABBREVIATIONS:
        text = pattern.sub(replacement, text)
    text = _LABEL_ABBREVIATIONS.sub(_label, text)
    text = _AMPERSAND.sub(" and ", text)
    return _PLUS.sub(" plus ", text)


# ---------------------------------------------------------------------------
# Numbers with units
# ---------------------------------------------------------------------------


def _temperature(match: re.Match[str]) -> str:
    """"-5 °C" -> "minus five degrees Celsius"."""
    num = match.group("num")
    degrees = "degree" if _is_one(num) else "degrees"
    return f"{_number(num, match.group('sign'))} {degrees} {_SCALES[match.group('scale').lower()]}"


def _degrees(match: re.Match[str]) -> str:
    """"45°" -> "forty-five degrees"."""
    num = match.group("num")
    return f"{_number(num, match.group('sign'))} {'degree' if _is_one(num) else 'degrees'}"


def _percent(match: re.Match[str]) -> str:
    """"45%" -> "forty-five percent"; "45 %RH" -> "... percent relative humidity"."""
    suffix = " relative humidity" if match.group("rh") else ""
    return f"{_number(match.group('num'), match.group('sign'))} percent{suffix}"


def _decade(match: re.Match[str]) -> str:
    """"1990s" -> "nineteen nineties" (not "1990 seconds")."""
    words = _year(int(match.group(1)))
    return words[:-1] + "ies" if words.endswith("y") else words + "s"


def _unit(match: re.Match[str]) -> str:
    """"1.5 V" -> "one point five volts"; "1 V" -> "one volt"."""
    num = match.group("num")
    singular, plural = _UNITS[match.group("unit")]
    return f"{_number(num, match.group('sign'))} {singular if _is_one(num) else plural}"


def _units(text: str) -> str:
    """Expand ranges, ordinals, temperatures, percentages and units after numbers."""
    text = _DECADE.sub(_decade, text)
    text = _RANGE.sub(r"\g<low> to \g<high>", text)
    text = _ORDINAL.sub(lambda m: _ordinal(int(m.group(1))), text)
    text = _TEMPERATURE.sub(_temperature, text)
    text = _DEGREES.sub(_degrees, text)
    text = _PERCENT.sub(_percent, text)
    return _UNIT.sub(_unit, text)


# ---------------------------------------------------------------------------
# Remaining numbers and lone symbols
# ---------------------------------------------------------------------------


def _pad(match: re.Match[str], words: str) -> str:
    """Put spaces between spoken words and letters glued to the original digits."""
    text = match.string
    before = " " if match.start() > 0 and text[match.start() - 1].isalpha() else ""
    after = " " if match.end() < len(text) and text[match.end()].isalpha() else ""
    return f"{before}{words}{after}"


def _bare_number(match: re.Match[str]) -> str:
    """Any number left over: "-5" -> "minus five", "GPIO17" -> "GPIO seventeen"."""
    return _pad(match, _number(match.group("num"), match.group("sign")))


def _dotted(match: re.Match[str]) -> str:
    """Version numbers and addresses: "1.2.3" -> "one dot two dot three"."""
    return " dot ".join(_cardinal(part) for part in match.group(0).split("."))


def _fraction(match: re.Match[str]) -> str:
    """"3⁄4" -> "three quarters"."""
    return _fraction_words(int(match.group(1)), int(match.group(2)))


def _numbers(text: str) -> str:
    """Spell every remaining number."""
    text = _FRACTION.sub(_fraction, text)
    text = _SLASH_NUMBERS.sub(" slash ", text)
    text = _DOTTED.sub(_dotted, text)
    return _BARE_NUMBER.sub(_bare_number, text)


def _lone_symbols(text: str) -> str:
    """Say unit symbols that have no number in front of them."""
    text = _LONE_TEMPERATURE.sub(lambda m: f" degrees {_SCALES[m.group(1).lower()]} ", text)
    text = _LONE_UNIT.sub(lambda m: _UNITS[m.group(1)][0], text)
    for symbol, words in _LONE_SYMBOLS:
        text = text.replace(symbol, words)
    return text


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def normalize(text: str) -> str:
    """Rewrite sensor/automation text as plain US-English words for espeak-ng.

    Numbers, dates, clock times, units, ordinals and a few abbreviations become
    words; control characters, emoji and unsayable symbols are dropped. Letters
    from non-Latin scripts are dropped too (espeak-ng's English voice would
    spell them out as "Chinese letter ..."), while accented Latin letters are
    kept. Line breaks are kept as sentence breaks.

    Args:
        text: Raw text, e.g. "Living room: 21.5 °C, 45% at 22:45".

    Returns:
        The spoken form, e.g. "Living room: twenty-one point five degrees
        Celsius, forty-five percent at twenty-two forty-five".
    """
    if not text or not text.strip():
        return ""
    text = _clean_unicode(text)
    text = _dates_and_times(text)
    text = _abbreviations(text)
    text = _units(text)
    text = _numbers(text)
    text = _lone_symbols(text)
    return _tidy(text)


def _raw_sentences(text: str) -> Iterator[str]:
    """Split at . ! ? ; and newlines, but not after known abbreviations or initialisms."""
    start = 0
    for match in _SENTENCE_END.finditer(text):
        tail = text[max(start, match.end() - 16):match.end()]
        if match.group(0) != "\n" and _NO_SPLIT_AFTER.search(tail):
            continue
        yield text[start:match.end()]
        start = match.end()
    yield text[start:]


def _pack(parts: Iterable[str], max_chars: int, joiner: str = " ") -> Iterator[str]:
    """Greedily join parts into pieces of at most max_chars (parts must already fit)."""
    current = ""
    for part in parts:
        candidate = f"{current}{joiner}{part}" if current else part
        if len(candidate) <= max_chars:
            current = candidate
            continue
        if current:
            yield current
        current = part
    if current:
        yield current


def _split_words(clause: str, max_chars: int) -> Iterator[str]:
    """Split at word boundaries; a single word longer than max_chars is cut."""
    words: list[str] = []
    for word in clause.split():
        words.extend(word[i:i + max_chars] for i in range(0, len(word), max_chars))
    return _pack(words, max_chars)


def _split_long(sentence: str, max_chars: int) -> Iterator[str]:
    """Bound a sentence to max_chars: first at commas, then at word boundaries."""
    if len(sentence) <= max_chars:
        yield sentence
        return
    clauses: list[str] = []
    for clause in _COMMA_BREAK.split(sentence):
        clauses.extend([clause] if len(clause) <= max_chars else _split_words(clause, max_chars))
    yield from _pack(clauses, max_chars)


def split_sentences(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> list[str]:
    """Split normalised text into sentences of at most ``max_chars`` characters.

    Splits after . ! ? ; (when followed by whitespace, so "21.5" and "e.g."
    stay whole) and at newlines; over-long sentences are split at commas and
    then at word boundaries. Whitespace-only pieces are dropped.

    Args:
        text: Text, ideally already passed through :func:`normalize`.
        max_chars: Upper bound on the length of every returned piece.

    Returns:
        Non-empty, stripped sentences in order.

    Raises:
        ValueError: If ``max_chars`` is less than 1.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, got {max_chars}")
    pieces: list[str] = []
    for sentence in _raw_sentences(text):
        sentence = " ".join(sentence.split())
        if sentence:
            pieces.extend(_split_long(sentence, max_chars))
    logger.debug("split %s chars into %s pieces", len(text), len(pieces))
    return pieces


def prepare(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> list[str]:
    """Normalise text and split it into speakable sentences.

    Args:
        text: Raw text from a sensor, automation or user.
        max_chars: Upper bound on the length of every returned piece.

    Returns:
        Sentences ready for phonemisation; empty for text with nothing to say.
    """
    return split_sentences(normalize(text), max_chars)
