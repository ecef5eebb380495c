"""SSML: the hardened parse, exact breaks, rates and volumes in the PCM, say-as heard, malformed input refused."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest

from devtools.mosquitto import Mosquitto
from jetvox.device.synthesis.synthesizer import Synthesizer
from jetvox.device.text.ssml import SsmlError, Style, parse
from jetvox.device.voice.loader import load_voice
from tests.mqttfix import Probe, daemon_settings
from tests.voicefix import voice_config

SR = 22050
BOMB = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        + "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10 if i > 1 else "&lol;" * 10}">' for i in range(1, 10))
        + ']><speak>&lol9;</speak>')


def test_spans_styles_and_ignored_elements() -> None:
    doc = parse('<speak>Hello <break time="700ms"/> world. <prosody rate="50%" volume="+6dB">slow '
                '<emphasis level="strong">and</emphasis></prosody> <sub alias="World Wide Web">WWW</sub> '
                '<phoneme alphabet="ipa" ph="dʒˈɛtvɑks">jetvox</phoneme> <mark name="m"/><lang>x</lang> '
                '<prosody pitch="+10%">same</prosody> <voice name="other">hi</voice></speak>')
    assert [(s.text, s.style, s.pause_s) for s in doc.spans] == [
        ("Hello", Style(), 0.7),
        ("world.", Style(), 0.0),
        ("slow", Style(rate=0.5, volume_db=6.0), 0.0),
        ("and", Style(rate=0.4, volume_db=10.0), 0.0),
        ("World Wide Web [[ dʒˈɛtvɑks ]] x same", Style(), 0.0),
        ("hi", Style(voice="other"), 0.0),
    ]
    assert doc.ignored == ["mark", "lang", "prosody pitch"]


@pytest.mark.parametrize("text, kind, expected", [
    ("AB12", "characters", "A, B, 1, 2"),
    ("2026", "digits", "two zero two six"),
    ("+1 555-0100", "telephone", "plus one, five five five, zero one zero zero."),
    ("1,234", "cardinal", "one thousand, two hundred and thirty-four"),
    ("3", "ordinal", "third"),
])
def test_say_as(text: str, kind: str, expected: str) -> None:
    assert parse(f'<speak><say-as interpret-as="{kind}">{text}</say-as></speak>').spans[0].text == expected


def test_say_as_date_formats() -> None:
    said = [parse(f'<speak><say-as interpret-as="date" format="{f}">{t}</say-as></speak>').spans[0].text
            for f, t in (("mdy", "3/14/2026"), ("dmy", "14.03.2026"), ("ymd", "2026-03-14"), ("md", "12/25"))]
    assert said == ["March fourteenth, twenty twenty-six"] * 3 + ["December twenty-fifth"]


@pytest.mark.parametrize("text, fragment", [
    ("<speak>Hello <break></speak>", "malformed SSML at line 1, column 23: mismatched tag"),
    ("<speak>\n  <s>one</s>\n  <s>two</p>\n</speak>", "malformed SSML at line 3, column 11: mismatched tag"),
    ("<speak>a &unknown; b</speak>", "malformed SSML at line 1"),
    (BOMB, "SSML refused: DTDForbidden"),
    ('<!DOCTYPE x SYSTEM "file:///etc/passwd"><speak>x</speak>', "SSML refused"),
    ('<?xml version="1.0"?><say>x</say>', "SSML must have <speak> at the top"),
    ("Hello <break>", "malformed SSML"),
    ('<speak><break time="soon"/></speak>', "<break time>: expected a time such as 500ms"),
    ('<speak><break time="11s"/></speak>', "<break time>: at most 10 s"),
    ('<speak><prosody rate="1000%">x</prosody></speak>', "<prosody rate>: expected 25% to 400%"),
    ('<speak><prosody volume="+40dB">x</prosody></speak>', "<prosody volume>: expected -60dB to +12dB"),
    ('<speak><phoneme alphabet="x-sampa" ph="h@">x</phoneme></speak>', "only ipa"),
    ('<speak><say-as interpret-as="date" format="mdy">14/14/2026</say-as></speak>', "no month 14"),
    ("<speak>" + "<s>" * 40 + "x" + "</s>" * 40 + "</speak>", "nested deeper than 32"),
])
def test_bad_ssml_is_refused_quickly_with_where_and_why(text: str, fragment: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(SsmlError) as err:
        parse(text)
    assert fragment in str(err.value), str(err.value)
    assert time.monotonic() - t0 < 0.5


@pytest.fixture(scope="module")
def synth() -> Iterator[Synthesizer]:
    cfg = voice_config(voice__name="joe-fast", synthesis__noise_scale=0.0, synthesis__noise_w=0.0)
    voice = load_voice(cfg)
    s = Synthesizer(voice, cfg.synthesis)
    yield s
    s.close()
    voice.close()


def audio(synth: Synthesizer, text: str) -> np.ndarray:
    return np.concatenate([c.audio for c in synth.synthesize_spans(parse(text).spans)])


@pytest.mark.slow
def test_breaks_are_exact_silences(synth: Synthesizer) -> None:
    base = len(audio(synth, '<speak>The door is open.<break time="0ms"/>Please close it.</speak>'))
    for time_text, seconds in (("700ms", 0.7), ("1.5s", 1.5)):
        longer = len(audio(synth, f'<speak>The door is open.<break time="{time_text}"/>Please close it.</speak>'))
        assert abs((longer - base) / SR - seconds) <= 0.010, (time_text, (longer - base) / SR)
    strong = len(audio(synth, '<speak>The door is open.<break strength="strong"/>Please close it.</speak>'))
    assert abs((strong - base) / SR - 0.7) <= 0.010


@pytest.mark.slow
def test_prosody_rate_and_volume_act_on_their_span(synth: Synthesizer) -> None:
    text = "The temperature in the greenhouse is rising quickly this afternoon."
    normal = audio(synth, f"<speak>{text}</speak>")
    for rate, ratio in (("50%", 2.0), ("200%", 0.5), ("slow", 1 / 0.75)):
        got = len(audio(synth, f'<speak><prosody rate="{rate}">{text}</prosody></speak>')) / len(normal)
        assert abs(got / ratio - 1) <= 0.10, (rate, got, ratio)
    louder = audio(synth, f'<speak><prosody volume="-6dB">{text}</prosody></speak>')
    assert len(louder) == len(normal)
    gain = float(np.sqrt(np.mean(louder**2)) / np.sqrt(np.mean(normal**2)))
    assert abs(20 * np.log10(gain) + 6.0) < 0.5, gain


@pytest.mark.slow
def test_say_as_characters_is_heard_as_letters(synth: Synthesizer) -> None:
    quality = pytest.importorskip("jetvox.device.evaluation.quality")
    word = quality.transcribe(audio(synth, "<speak>The code is NASA.</speak>"), SR).split()
    spelled = quality.transcribe(audio(synth, '<speak>The code is <say-as interpret-as="characters">NASA'
                                              "</say-as>.</speak>"), SR).split()
    # "n a s a": four letter names, where the word is one
    assert len(spelled) >= len(word) + 2, (word, spelled)


@pytest.mark.slow
def test_ssml_over_mqtt(broker: Mosquitto, state_dir: Path, inproc_daemon: Callable,
                        probe_factory: Callable) -> None:
    probe: Probe = probe_factory(broker, ["jetvox/test/#"])
    inproc_daemon(daemon_settings(state_dir, broker))
    say = "jetvox/test/say"
    probe.publish(say, json.dumps({"id": "ok", "text": '<speak>Door open.<break time="300ms"/><foo>Now.</foo>'
                                                        '<voice name="en_US-joe-medium">Teacher.</voice></speak>'}))
    probe.publish(say, '<speak>plain payload</speak>')
    probe.publish(say, json.dumps({"id": "flag", "ssml": True, "text": 'no speak element <break time="1s"/> here'}))
    probe.publish(say, json.dumps({"id": "bad", "text": "<speak>Hello <break></speak>"}))
    probe.publish(say, json.dumps({"id": "bomb", "text": BOMB}))
    probe.publish(say, json.dumps({"id": "novoice", "text": '<speak><voice name="nobody">x</voice></speak>'}))
    assert probe.final("ok").state == "done" and probe.final("flag").state == "done"
    assert probe.statuses("ok")[0].ignored == ("foo",)
    for msg_id, fragment in (("bad", "line 1, column 23"),
                             ("bomb", "SSML refused"), ("novoice", "nobody is not provisioned")):
        st = probe.final(msg_id)
        assert st.state == "error" and fragment in (st.reason or ""), st
        assert not probe.audio(msg_id)
    probe.wait_for(lambda: sum(1 for s in probe.statuses() if s.state == "done") >= 3, 60, "the plain payload")


@pytest.mark.slow
def test_an_unknown_phoneme_in_any_span_fails_before_the_first_chunk(synth: Synthesizer) -> None:
    from jetvox.device.synthesis.synthesizer import SynthesisError

    spans = parse('<speak>Fine first. <prosody rate="slow">then <phoneme ph="h☃">x</phoneme></prosody></speak>').spans
    with pytest.raises(SynthesisError, match="the voice has no symbol '☃'"):
        synth.synthesize_spans(spans)


@pytest.mark.slow
def test_bench_runs_ssml_beside_plain_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from jetvox.device.cli import main
    from tests.voicefix import provisioned_state_dir

    assert main(["bench", "--json", "--limit", "2", "--systems", "jetvox-fp32,jetvox-ssml",
                 "--state-dir", str(provisioned_state_dir())]) == 0
    systems = json.loads(capsys.readouterr().out)["systems"]
    assert list(systems) == ["jetvox-fp32", "jetvox-ssml"]
    for plain, marked in zip(systems["jetvox-fp32"]["rows"], systems["jetvox-ssml"]["rows"]):
        assert abs(plain["audio_s"] - marked["audio_s"]) < 0.25  # the same words, through the SSML path
