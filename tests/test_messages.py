"""The MQTT payload dataclasses: parsing, validation, round trips."""

from __future__ import annotations

import json

import pytest

from jetvox.device.daemon.messages import (
    HermesSay,
    HermesSayFinished,
    PayloadError,
    SayRequest,
    Status,
    Topics,
    valid_id,
)


def test_plain_text_payload() -> None:
    req = SayRequest.from_payload("Hello world, 21 °C.".encode())
    assert req == SayRequest(text="Hello world, 21 °C.")


def test_json_payload_with_every_field() -> None:
    payload = json.dumps({"text": "Hi", "id": "a-1", "priority": "alert", "output": "both", "ttl_s": 5,
                          "volume": 0.5, "length_scale": 1.2, "unknown_extra": True}).encode()
    req = SayRequest.from_payload(payload)
    assert req == SayRequest(text="Hi", id="a-1", priority="alert", output="both", ttl_s=5.0, volume=0.5,
                             length_scale=1.2)
    assert SayRequest.from_json(req.to_json()) == req


@pytest.mark.parametrize(
    "payload, fragment",
    [
        (b"\xff\xfe\x00bad", "not valid UTF-8"),
        (b'{"text": "unterminated', "not valid JSON"),
        (b'{"text": 5}', "text: expected a string"),
        (b'{"text": "   "}', "text is empty"),
        (b"", "text is empty"),
        (b"   \n", "text is empty"),
        (b'{"text": "x", "priority": "urgent"}', "priority: expected one of"),
        (b'{"text": "x", "output": "radio"}', "output: expected one of"),
        (b'{"text": "x", "ttl_s": "soon"}', "ttl_s: expected a number"),
        (b'{"text": "x", "ttl_s": true}', "ttl_s: expected a number"),
        (b'{"text": "x", "volume": 9}', "volume: must be between"),
        (b'{"text": "x", "length_scale": 0}', "length_scale: must be between"),
        (b'{"text": "x", "sentence_silence": -0.1}', "sentence_silence: must be between 0 and 10"),
        (b'{"text": "x", "sentence_silence": NaN}', "sentence_silence: expected a finite number"),
        (b'{"text": "x", "id": "a/b"}', "id: expected"),
        (b'{"text": "x", "id": 7}', "id: expected"),
        (b'{"text": "x", "id": ""}', "id: expected"),
    ],
)
def test_bad_payloads_are_rejected_with_a_reason(payload: bytes, fragment: str) -> None:
    with pytest.raises(PayloadError) as err:
        SayRequest.from_payload(payload)
    assert fragment in err.value.reason


def test_json_array_is_text_but_object_must_be_valid() -> None:
    # Only a leading "{" selects JSON: anything else is text to speak.
    assert SayRequest.from_payload(b'["a"]').text == '["a"]'
    with pytest.raises(PayloadError, match="must be an object"):
        SayRequest.from_json("[1]")


def test_error_keeps_the_id_when_it_was_readable() -> None:
    with pytest.raises(PayloadError) as err:
        SayRequest.from_payload(b'{"id": "m7", "text": "x", "priority": 3}')
    assert err.value.msg_id == "m7"


def test_size_and_length_limits() -> None:
    with pytest.raises(PayloadError, match="payload is 101 bytes; the limit is 100"):
        SayRequest.from_payload(b"a" * 101, max_bytes=100)
    with pytest.raises(PayloadError, match="text is 11 characters; the limit is 10"):
        SayRequest.from_payload(b"a" * 11, max_chars=10)


def test_valid_id() -> None:
    assert valid_id("kitchen-alert.1")
    assert not valid_id("a+b") and not valid_id("a#") and not valid_id("x" * 129) and not valid_id("a\nb")


def test_status_json_round_trip_omits_nones() -> None:
    st = Status(id="m1", state="done", sample_rate=22050, chunks=3, audio_s=1.5, first_audio_ms=120.0,
                outputs=("mqtt", "speaker"), ts=1.0)
    data = json.loads(st.to_json())
    assert data == {"id": "m1", "state": "done", "sample_rate": 22050, "chunks": 3, "audio_s": 1.5,
                    "first_audio_ms": 120.0, "outputs": ["mqtt", "speaker"], "ts": 1.0}
    assert Status.from_json(st.to_json()) == st


def test_status_rejects_unknown_state() -> None:
    with pytest.raises(ValueError):
        Status(id="m", state="spoken")


def test_hermes_say_and_finished() -> None:
    say = HermesSay.from_payload(json.dumps({"text": "Hello", "id": "h1", "siteId": "kitchen",
                                             "sessionId": "s1", "lang": "en"}).encode())
    assert (say.text, say.id, say.site_id, say.session_id, say.lang) == ("Hello", "h1", "kitchen", "s1", "en")
    assert HermesSay.from_json(say.to_json()) == say
    fin = HermesSayFinished(id="h1", site_id="kitchen", session_id="s1")
    assert json.loads(fin.to_json()) == {"id": "h1", "siteId": "kitchen", "sessionId": "s1"}
    assert HermesSayFinished.from_json(fin.to_json()) == fin
    with pytest.raises(PayloadError, match="siteId"):
        HermesSay.from_json('{"text": "x", "siteId": 3}')
    with pytest.raises(PayloadError, match="not valid JSON"):
        HermesSay.from_payload(b"plain text")


def test_topics() -> None:
    t = Topics(prefix="jetvox/box", shared_group="fleet", site_id="hall")
    assert t.say == "jetvox/box/say"
    assert t.say_filter == "$share/fleet/jetvox/box/say"
    assert t.status("m1") == "jetvox/box/status/m1"
    assert t.audio("m1") == "jetvox/box/audio/m1"
    assert t.availability == "jetvox/box/availability"
    assert t.play_bytes("m1") == "hermes/audioServer/hall/playBytes/m1"
    assert Topics(prefix="p").say_filter == "p/say"


def test_every_hostile_payload_is_a_payload_error() -> None:
    from tests.hostile import SAY_INVALID

    for payload in SAY_INVALID:
        with pytest.raises(PayloadError) as err:
            SayRequest.from_payload(payload)
        assert len(err.value.reason) < 300, err.value.reason  # no flood in the status or the log
