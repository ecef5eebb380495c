"""The MQTT contract: topic names and typed payloads with ``from_json`` / ``to_json``."""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Optional

from jetvox.device import limits
from jetvox.device.text import ssml
from jetvox.device.text.ssml import Document as SsmlDocument
from jetvox.engines.errors import JetvoxError

PRIORITIES = ("low", "normal", "high", "alert")
OUTPUTS = ("speaker", "mqtt", "both")
STATES = ("queued", "started", "done", "dropped", "error")
MAX_ID_CHARS = 128


class PayloadError(JetvoxError, ValueError):
    """A payload that cannot be accepted; ``reason`` goes into the ``error`` status."""

    def __init__(self, reason: str, msg_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.msg_id = msg_id
        """The message's own id when it could be read (the error status goes to it)."""


def new_id(prefix: str = "") -> str:
    """A fresh message id for messages that did not bring one."""
    return f"{prefix}{uuid.uuid4().hex[:16]}"


def valid_id(value: object) -> bool:
    """True if ``value`` can be a message id: a short string usable as one topic level."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_ID_CHARS
        and not any(c in value for c in "/+#") and value.isprintable()
    )


def _number(data: dict[str, Any], key: str, bound: limits.Bound, msg_id: str | None) -> Optional[float]:
    value = data.get(key)
    if value is None:
        return None
    problem = bound.problem(value)
    if problem is not None:
        raise PayloadError(f"{key}: {problem}", msg_id)
    return float(value)


def _choice(data: dict[str, Any], key: str, choices: tuple[str, ...], msg_id: str | None) -> Optional[str]:
    value = data.get(key)
    if value is None:
        return None
    if value not in choices:
        raise PayloadError(f"{key}: expected one of {', '.join(choices)}, got {limits.show(value)}", msg_id)
    return str(value)


def _decode(payload: bytes, max_bytes: int) -> str:
    if len(payload) > max_bytes:
        raise PayloadError(f"payload is {len(payload)} bytes; the limit is {max_bytes} (queue.max_payload_bytes)")
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"payload is not valid UTF-8 (byte {exc.start})") from None


def _object(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"payload is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise PayloadError("payload is not acceptable JSON: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise PayloadError(f"payload is not acceptable JSON: {str(exc)[:120]}") from None
    if not isinstance(data, dict):
        raise PayloadError(f"JSON payload must be an object, got {type(data).__name__}")
    return data


def _text(data: dict[str, Any], max_chars: int, msg_id: str | None) -> str:
    text = data.get("text")
    if not isinstance(text, str):
        raise PayloadError(f"text: expected a string, got {type(text).__name__}", msg_id)
    problem = text_problem(text, max_chars)
    if problem is not None:
        raise PayloadError(problem[1], msg_id)
    return text


def text_problem(text: str, max_chars: int) -> Optional[tuple[str, str]]:
    """(code, reason) when ``text`` cannot be spoken as one request: ``empty-text`` or ``text-too-long``."""
    if not text.strip():
        return "empty-text", "text is empty"
    if len(text) > max_chars:
        return "text-too-long", (f"text is {len(text)} characters; the limit is {max_chars} "
                                 "(synthesis.max_text_chars)")
    return None


VOICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
"""What a voice name may look like (it names a folder under the state dir)."""


def _voice(data: dict[str, Any], msg_id: str | None) -> Optional[str]:
    value = data.get("voice")
    if value is None:
        return None
    if not isinstance(value, str) or not VOICE_NAME.match(value):
        raise PayloadError(f"voice: expected a voice name (letters, digits, '.', '_', '-'), got {limits.show(value)}",
                           msg_id)
    return value


def _ssml(data: dict[str, Any], msg_id: str | None) -> Optional[ssml.Document]:
    """The parsed SSML if the message is SSML, else None; PayloadError (line and column) when it cannot be parsed."""
    flag = data.get("ssml")
    if flag is not None and not isinstance(flag, bool):
        raise PayloadError(f"ssml: expected true or false, got {limits.show(flag)}", msg_id)
    text = data.get("text")
    if not (flag or (flag is None and isinstance(text, str) and ssml.is_ssml(text))):
        return None
    try:
        return ssml.parse(str(text))
    except ssml.SsmlError as exc:
        raise PayloadError(str(exc), msg_id) from None


def _given_id(data: dict[str, Any]) -> str | None:
    value = data.get("id")
    if value is None:
        return None
    if not valid_id(value):
        raise PayloadError(f"id: expected 1 to {MAX_ID_CHARS} printable characters without / + #, got {limits.show(value)}")
    return str(value)


@dataclass(frozen=True)
class SayRequest:
    """A ``<prefix>/say`` message: plain UTF-8 text or the JSON object of the contract."""

    text: str
    """What to speak."""
    id: Optional[str] = None
    """The sender's message id (status and audio topics use it; redeliveries are recognised by it)."""
    priority: str = "normal"
    """``low``, ``normal``, ``high`` or ``alert`` (an alert goes first and may cut off a low one)."""
    output: Optional[str] = None
    """``speaker``, ``mqtt`` or ``both``; None uses the daemon's configured output."""
    ttl_s: Optional[float] = None
    """Drop the message if it has waited longer than this; None uses queue.default_ttl_s, 0 never expires."""
    volume: Optional[float] = None
    """Gain for this message (0 to 4)."""
    length_scale: Optional[float] = None
    """Speaking rate for this message: above 1 is slower (0.25 to 4)."""
    sentence_silence: Optional[float] = None
    """Seconds of silence between this message's sentences (0 to 10); None uses synthesis.sentence_silence_s."""
    voice: Optional[str] = None
    """A provisioned voice to speak this message with; None uses the configured one."""
    ssml: bool = False
    """The text is SSML (``"ssml": true``, or text that starts with ``<speak``); checked on arrival."""
    document: Optional[SsmlDocument] = field(default=None, compare=False, repr=False)
    """The SSML as parsed on arrival (not part of the JSON): intake reads its voices and ignored elements."""

    @classmethod
    def from_json(cls, text: str | bytes, max_chars: int = 20000) -> "SayRequest":
        """Parse the JSON object form; PayloadError says what is wrong."""
        data = _object(text.decode("utf-8") if isinstance(text, bytes) else text)
        msg_id = _given_id(data)
        text = _text(data, max_chars, msg_id)
        document = _ssml(data, msg_id)
        return cls(
            text=text,
            id=msg_id,
            priority=_choice(data, "priority", PRIORITIES, msg_id) or "normal",
            output=_choice(data, "output", OUTPUTS, msg_id),
            ttl_s=_number(data, "ttl_s", limits.TTL_S, msg_id),
            volume=_number(data, "volume", limits.VOLUME, msg_id),
            length_scale=_number(data, "length_scale", limits.LENGTH_SCALE, msg_id),
            sentence_silence=_number(data, "sentence_silence", limits.SENTENCE_SILENCE_S, msg_id),
            voice=_voice(data, msg_id),
            ssml=document is not None,
            document=document,
        )

    @classmethod
    def from_payload(cls, payload: bytes, max_bytes: int = 65536, max_chars: int = 20000) -> "SayRequest":
        """Parse an MQTT payload: JSON if it starts with ``{``, else the whole payload is the text.

        Args:
            payload: the raw MQTT payload.
            max_bytes: larger payloads are rejected (queue.max_payload_bytes).
            max_chars: longer texts are rejected (synthesis.max_text_chars).
        """
        text = _decode(payload, max_bytes)
        if text.lstrip().startswith("{"):
            return cls.from_json(text, max_chars)
        document = _ssml({"text": text}, None)
        return cls(text=_text({"text": text}, max_chars, None), ssml=document is not None, document=document)

    def to_json(self) -> str:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "document"}
        return json.dumps({k: v for k, v in data.items() if v is not None}, ensure_ascii=False)


@dataclass(frozen=True)
class Status:
    """A ``<prefix>/status/<id>`` event: one per state transition of a message."""

    id: str
    """The message id."""
    state: str
    """``queued``, ``started``, ``done``, ``dropped`` or ``error``."""
    reason: Optional[str] = None
    """Why a message was dropped or failed."""
    priority: Optional[str] = None
    """The message's priority (queued, started)."""
    queue_length: Optional[int] = None
    """Messages waiting after this one was queued (queued)."""
    sample_rate: Optional[int] = None
    """PCM sample rate of the audio topic (started, done)."""
    chunks: Optional[int] = None
    """PCM chunks produced (done)."""
    audio_s: Optional[float] = None
    """Seconds of audio produced (done)."""
    first_audio_ms: Optional[float] = None
    """Milliseconds from the start of work on the message to its first audio chunk (done)."""
    wait_ms: Optional[float] = None
    """Milliseconds the message waited in the queue before work on it started (started, done)."""
    cached: Optional[bool] = None
    """True when the audio came from the audio cache (done)."""
    outputs: Optional[tuple[str, ...]] = None
    """Outputs that received the audio: ``speaker``, ``mqtt``, ``wav`` (done)."""
    speaker_error: Optional[str] = None
    """Why the speaker did not play it while another output did (done)."""
    voice: Optional[str] = None
    """The voice that spoke it (done)."""
    ignored: Optional[tuple[str, ...]] = None
    """SSML elements and attributes that were not applied, by name (queued): their text is still spoken."""
    duplicate: Optional[bool] = None
    """True when this id was already finished (``done``) or is already waiting (``queued``): not spoken again."""
    chime: Optional[bool] = None
    """True when the announcement chime preceded the speech (done)."""
    muted: Optional[bool] = None
    """True when the speaker was muted, so the message went to its other outputs only (done)."""
    held: Optional[str] = None
    """Why a queued message waits beyond its turn, e.g. quiet hours until they end (queued)."""
    ts: float = field(default_factory=time.time)
    """Unix time of the transition."""

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}, got {self.state!r}")

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if v is not None}
        for key in ("outputs", "ignored"):
            if key in data:
                data[key] = list(data[key])
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Status":
        data = dict(data)
        for key in ("outputs", "ignored"):
            if key in data:
                data[key] = tuple(data[key])
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})  # newer daemons may add fields

    @classmethod
    def from_json(cls, text: str | bytes) -> "Status":
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class HermesSay:
    """A Rhasspy Hermes ``hermes/tts/say`` message."""

    text: str
    """What to speak."""
    id: Optional[str] = None
    """Request id, echoed in ``sayFinished``."""
    site_id: str = "default"
    """Which site should speak it (``siteId``)."""
    lang: Optional[str] = None
    """Requested language (informational: the daemon speaks with its configured voice)."""
    session_id: Optional[str] = None
    """Dialogue session (``sessionId``), echoed in ``sayFinished``."""
    volume: Optional[float] = None
    """Gain (0 to 4)."""

    @classmethod
    def from_json(cls, text: str | bytes, max_chars: int = 20000) -> "HermesSay":
        data = _object(text.decode("utf-8") if isinstance(text, bytes) else text)
        msg_id = _given_id(data)
        site = data.get("siteId", "default")
        if not isinstance(site, str):
            raise PayloadError(f"siteId: expected a string, got {limits.show(site)}", msg_id)
        for key in ("lang", "sessionId"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise PayloadError(f"{key}: expected a string, got {limits.show(data[key])}", msg_id)
        return cls(
            text=_text(data, max_chars, msg_id),
            id=msg_id,
            site_id=site,
            lang=data.get("lang"),
            session_id=data.get("sessionId"),
            volume=_number(data, "volume", limits.VOLUME, msg_id),
        )

    @classmethod
    def from_payload(cls, payload: bytes, max_bytes: int = 65536, max_chars: int = 20000) -> "HermesSay":
        """Parse an MQTT payload (always JSON for Hermes)."""
        return cls.from_json(_decode(payload, max_bytes), max_chars)

    def to_json(self) -> str:
        data = {"text": self.text, "id": self.id, "siteId": self.site_id, "lang": self.lang,
                "sessionId": self.session_id, "volume": self.volume}
        return json.dumps({k: v for k, v in data.items() if v is not None}, ensure_ascii=False)


@dataclass(frozen=True)
class HermesSayFinished:
    """A Rhasspy Hermes ``hermes/tts/sayFinished`` message."""

    id: Optional[str]
    """The request id of the ``say`` message."""
    site_id: str
    """The site that spoke (``siteId``)."""
    session_id: Optional[str] = None
    """The dialogue session (``sessionId``)."""

    def to_json(self) -> str:
        return json.dumps({"id": self.id, "siteId": self.site_id, "sessionId": self.session_id}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> "HermesSayFinished":
        data = json.loads(text)
        return cls(id=data.get("id"), site_id=data.get("siteId", "default"), session_id=data.get("sessionId"))


@dataclass(frozen=True)
class Topics:
    """Topic names of one device, from the prefix."""

    prefix: str
    """``jetvox/<device_id>`` unless configured."""
    shared_group: Optional[str] = None
    """MQTT 5 shared-subscription group for the say topic."""
    site_id: str = "default"
    """Hermes siteId."""

    HERMES_SAY = "hermes/tts/say"
    HERMES_SAY_FINISHED = "hermes/tts/sayFinished"

    @property
    def say(self) -> str:
        return f"{self.prefix}/say"

    @property
    def say_filter(self) -> str:
        """What the daemon subscribes to for say messages (shared when a group is configured)."""
        return f"$share/{self.shared_group}/{self.say}" if self.shared_group else self.say

    @property
    def availability(self) -> str:
        return f"{self.prefix}/availability"

    def status(self, msg_id: str) -> str:
        return f"{self.prefix}/status/{msg_id}"

    def audio(self, msg_id: str) -> str:
        return f"{self.prefix}/audio/{msg_id}"

    def play_bytes(self, msg_id: str) -> str:
        return f"hermes/audioServer/{self.site_id}/playBytes/{msg_id}"
