"""Tests for device.normalize: spoken forms, sentence splitting and hostile input."""

from __future__ import annotations

import pytest

from jetvox.device.text.normalize import normalize, prepare, split_sentences

SPOKEN = [
    # integers and thousands separators
    ("42", "forty-two"),
    ("1,250 people", "one thousand two hundred fifty people"),
    ("1,000,000", "one million"),
    ("007", "zero zero seven"),
    # decimals and signs
    ("21.5", "twenty-one point five"),
    ("0.05", "zero point zero five"),
    ("-5 °C", "minus five degrees Celsius"),
    ("-0.5 V", "minus zero point five volts"),
    ("+3 °C", "plus three degrees Celsius"),
    ("sensor-5", "sensor-five"),
    # ranges
    ("20-25", "twenty to twenty-five"),
    ("20-25 °C", "twenty to twenty-five degrees Celsius"),
    ("40–60%", "forty to sixty percent"),
    ("-10--5 °C", "minus ten to minus five degrees Celsius"),
    ("10:00-12:00", "ten o'clock to twelve o'clock"),
    ("5-10V", "five to ten volts"),
    ("20 - 25 °C", "twenty to twenty-five degrees Celsius"),
    ("1-2-3", "one-two-three"),
    # percentages
    ("45%", "forty-five percent"),
    ("10.5 %", "ten point five percent"),
    ("45 %RH", "forty-five percent relative humidity"),
    # temperatures
    ("21°C", "twenty-one degrees Celsius"),
    ("21 °C", "twenty-one degrees Celsius"),
    ("21° C", "twenty-one degrees Celsius"),
    ("21 deg C", "twenty-one degrees Celsius"),
    ("70 °F", "seventy degrees Fahrenheit"),
    ("1 °C", "one degree Celsius"),
    ("-1 °C", "minus one degree Celsius"),
    ("21℃", "twenty-one degrees Celsius"),
    ("45°", "forty-five degrees"),
    # units, singular and plural
    ("60 km/h", "sixty kilometers per hour"),
    ("5 m/s", "five meters per second"),
    ("3.2 kWh", "three point two kilowatt hours"),
    ("1 kWh", "one kilowatt hour"),
    ("1500 W", "one thousand five hundred watts"),
    ("2kW", "two kilowatts"),
    ("1 V", "one volt"),
    ("2 V", "two volts"),
    ("1.5 V", "one point five volts"),
    ("230V", "two hundred thirty volts"),
    ("10 A", "ten amps"),
    ("500 mA", "five hundred milliamps"),
    ("400 ppm", "four hundred parts per million"),
    ("1013 hPa", "one thousand thirteen hectopascals"),
    ("1.5 bar", "one point five bar"),
    ("300 lux", "three hundred lux"),
    ("200 lx", "two hundred lux"),
    ("55 dB", "fifty-five decibels"),
    ("5 mm", "five millimeters"),
    ("3 cm", "three centimeters"),
    ("1 m", "one meter"),
    ("12 km", "twelve kilometers"),
    ("1 kg", "one kilogram"),
    ("500 g", "five hundred grams"),
    ("2 L", "two liters"),
    ("250 ml", "two hundred fifty milliliters"),
    ("50 Hz", "fifty hertz"),
    ("30 s", "thirty seconds"),
    ("delay 5s", "delay five seconds"),
    ("1 min", "one minute"),
    ("5 min", "five minutes"),
    ("1 h", "one hour"),
    ("2 h", "two hours"),
    ("12 µg/m³", "twelve micrograms per cubic meter"),
    ("12 ug/m3", "twelve micrograms per cubic meter"),
    # clock times
    ("10:45 PM", "ten forty-five PM"),
    ("10:45 p.m.", "ten forty-five PM."),
    ("at 10:45 p.m. tonight", "at ten forty-five PM tonight"),
    ("7am", "seven AM"),
    ("22:45", "twenty-two forty-five"),
    ("07:05", "seven oh five"),
    ("12:00", "twelve o'clock"),
    ("13:00", "thirteen hundred"),
    ("00:00", "midnight"),
    ("9:05:30", "nine oh five and thirty seconds"),
    ("at 5 p.m. Then we go", "at five PM. Then we go"),
    ("25:70", "twenty-five:seventy"),
    # dates
    ("2026-11-21", "November twenty-first, twenty twenty-six"),
    ("2005-01-02", "January second, two thousand five"),
    ("21/11/2026", "November twenty-first, twenty twenty-six"),
    ("11/21/2026", "November twenty-first, twenty twenty-six"),
    ("21.11.2026", "November twenty-first, twenty twenty-six"),
    ("3/4/2026", "three slash four slash two thousand twenty-six"),
    ("2026-11-21T22:45:00Z", "November twenty-first, twenty twenty-six at twenty-two forty-five"),
    ("the 1990s", "the nineteen nineties"),
    # ordinals
    ("1st", "first"),
    ("22nd", "twenty-second"),
    ("3rd", "third"),
    ("4th floor", "fourth floor"),
    # abbreviations
    ("Dr. Smith lives at 12 Oak Dr.", "Doctor Smith lives at twelve Oak Drive"),
    ("St. Louis is on Main St.", "Saint Louis is on Main Street"),
    ("No. 5", "number five"),
    ("#3", "number three"),
    ("No. I will not", "No. I will not"),
    ("approx. 20", "approximately twenty"),
    ("e.g. this, i.e. that", "for example this, that is that"),
    ("cats vs. dogs", "cats versus dogs"),
    ("Temp: 21 hum: 45%", "Temperature: twenty-one humidity: forty-five percent"),
    ("temp=21.5°C", "temperature twenty-one point five degrees Celsius"),
    ("the temp sensor is humming", "the temp sensor is humming"),
    # symbols
    ("salt & pepper", "salt and pepper"),
    ("2+2", "two plus two"),
    ("3 + 4", "three plus four"),
    ("½ cup", "one half cup"),
    ("GPIO17", "GPIO seventeen"),
    ("1.2.3", "one dot two dot three"),
    ("it's 30 °C — hot", "it's thirty degrees Celsius, hot"),
    # Unicode clean-up
    ("café Zürich", "café Zürich"),
    ("Ｆｕｌｌ　ｗｉｄｔｈ １２", "Full width twelve"),
    ("١٢٣", "one hundred twenty-three"),
    ("Hello 🙂 world 👍🏽", "Hello world"),
    ("a\x00b\x07c", "abc"),
    ("tab\tseparated", "tab separated"),
    ("one\r\ntwo", "one\ntwo"),
    ("Привет мир", ""),
    ("你好 world", "world"),
    ("Живу at 5 °C", "at five degrees Celsius"),
    # lone units
    ("%", "percent"),
    ("°C", "degrees Celsius"),
    ("kWh", "kilowatt hour"),
    ("price per kWh", "price per kilowatt hour"),
    ("°", "degrees"),
    # empty-ish input
    ("", ""),
    ("   \n\t  ", ""),
    ("🙂🙂", ""),
    ("...", ""),
]


@pytest.mark.parametrize(("text", "spoken"), SPOKEN)
def test_normalize_speaks(text: str, spoken: str) -> None:
    assert normalize(text) == spoken


def test_normalize_output_has_no_digits_or_symbols() -> None:
    text = "At 22:45 on 2026-11-21: 21.5 °C, 45 %, 3.2 kWh & 12 µg/m³ 🙂 #1 $5 <tag> a_b"
    spoken = normalize(text)
    assert not any(c.isdigit() for c in spoken)
    assert not set(spoken) & set("°%&µμ#$<>_🙂")


def test_normalize_keeps_newlines_as_breaks() -> None:
    assert normalize("line one\n\n\nline two\n") == "line one\nline two"


def test_normalize_control_characters_only() -> None:
    assert normalize("\x00\x01\x1b[31mred\x1b[0m\x7f") == "red"
    assert prepare("\x00\x01\x7f") == []


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("It is warm. Open the window!", ["It is warm.", "Open the window!"]),
        ("Really? Yes; ok.", ["Really?", "Yes;", "ok."]),
        ("first\nsecond", ["first", "second"]),
        ("21.5 is fine. e.g. this. Dr. Who.", ["21.5 is fine.", "e.g. this.", "Dr. Who."]),
        ('He said "hi." Then left.', ['He said "hi."', "Then left."]),
        ("The U.S. Army. Done", ["The U.S. Army.", "Done"]),
        ("  \n . \n  ", ["."]),
        ("", []),
        ("   ", []),
    ],
)
def test_split_sentences(text: str, sentences: list[str]) -> None:
    assert split_sentences(text) == sentences


def test_prepare_normalises_before_splitting() -> None:
    text = "It is 21.5 °C. Dr. Smith said e.g. hello!\nAlarm at 10:45 p.m. tonight."
    assert prepare(text) == [
        "It is twenty-one point five degrees Celsius.",
        "Doctor Smith said for example hello!",
        "Alarm at ten forty-five PM tonight.",
    ]


def test_split_long_sentence_at_commas() -> None:
    text = ", ".join(["alpha beta gamma"] * 10)
    pieces = split_sentences(text, max_chars=40)
    assert pieces == ["alpha beta gamma, alpha beta gamma,"] * 4 + ["alpha beta gamma, alpha beta gamma"]
    assert " ".join(pieces).split() == text.split()


def test_split_long_sentence_at_words() -> None:
    pieces = split_sentences("one two three four five six", max_chars=9)
    assert pieces == ["one two", "three", "four five", "six"]


def test_split_cuts_a_single_overlong_word() -> None:
    assert [len(p) for p in split_sentences("x" * 1000, max_chars=400)] == [400, 400, 200]


def test_split_rejects_bad_max_chars() -> None:
    with pytest.raises(ValueError):
        split_sentences("hello", max_chars=0)


def test_prepare_100kb_without_punctuation_is_bounded_and_lossless() -> None:
    words = ["sensor", "reading", "twenty-one", "kitchen", "light", "on", "off"]
    text = " ".join(words[i % len(words)] for i in range(15000))
    assert len(text) > 100_000
    pieces = prepare(text, max_chars=400)
    assert all(0 < len(p) <= 400 for p in pieces)
    assert " ".join(pieces).split() == text.split()


def test_prepare_100kb_of_numbers_and_units_is_bounded() -> None:
    text = "21.5 °C, 45% and 1,250 W " * 4000
    assert len(text) >= 100_000
    pieces = prepare(text, max_chars=200)
    assert all(0 < len(p) <= 200 for p in pieces)
    assert " ".join(pieces).split() == normalize(text).split()
    assert pieces[0].startswith("twenty-one point five degrees Celsius, forty-five percent and")


@pytest.mark.parametrize(
    "text",
    ["1" * 100_000, "-" * 100_000, "." * 100_000, "1." * 50_000, "Dr. " * 25_000, "🙂" * 20_000],
)
def test_prepare_pathological_input_is_bounded(text: str) -> None:
    assert all(0 < len(p) <= 400 for p in prepare(text))
