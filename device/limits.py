"""One set of bounds for values a user sets: the config file, `jetvox` flags and MQTT JSON fields share them."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass


def cpu_count() -> int:
    """CPUs this process may run on (the affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Bound:
    """An inclusive range for one setting; ``check`` turns a raw value into a finite float or says why not."""

    lo: float
    """Smallest allowed value."""
    hi: float
    """Largest allowed value."""
    integer: bool = False
    """Only whole numbers are allowed."""

    def describe(self) -> str:
        return f"between {_num(self.lo)} and {_num(self.hi)}"

    def problem(self, value: object) -> str | None:
        """Why ``value`` is not allowed (expected vs got), or None if it is."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"expected a number {self.describe()}, got {show(value)}"
        if self.integer and not isinstance(value, int):
            return f"expected a whole number {self.describe()}, got {show(value)}"
        try:
            number = float(value)
        except OverflowError:  # an int of hundreds of digits
            return f"expected a number {self.describe()}, got an integer of {len(str(abs(int(value))))} digits"
        if not math.isfinite(number):
            return f"expected a finite number {self.describe()}, got {show(value)}"
        if not self.lo <= number <= self.hi:
            return f"must be {self.describe()}, got {show(value)}"
        return None


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def show(value: object) -> str:
    """A short repr for messages: huge values must not flood a log line."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        return f"an integer of {len(str(abs(value)))} digits"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


VOLUME = Bound(0.0, 4.0)
"""Gain: ``synthesis.volume``, ``audio.volume``, ``--volume``, JSON ``volume``."""
LENGTH_SCALE = Bound(0.25, 4.0)
"""Speaking rate (above 1 is slower): ``synthesis.length_scale``, ``--length-scale``, JSON ``length_scale``."""
TTL_S = Bound(0.0, 10 * 365 * 86400.0)
"""Seconds a message may wait (0 = never expires): ``queue.default_ttl_s``, JSON ``ttl_s``."""
SENTENCE_SILENCE_S = Bound(0.0, 10.0)
"""Silence after each sentence: ``synthesis.sentence_silence_s``."""
NOISE = Bound(0.0, 2.0)
"""Generator and duration noise: ``synthesis.noise_scale``, ``synthesis.noise_w``."""
MAX_THREADS_PER_CPU = 4
THREADS = Bound(0, MAX_THREADS_PER_CPU * cpu_count(), integer=True)
"""ONNX Runtime threads per session (0 = its default): at most 4 per CPU, ``engine.threads``."""
PAYLOAD_BYTES = Bound(1, 16 * 1024 * 1024, integer=True)
"""Largest MQTT payload accepted: ``queue.max_payload_bytes`` (mosquitto's default limit is 256 MB)."""
TEXT_CHARS = Bound(1, 1_000_000, integer=True)
"""Longest text of one request: ``synthesis.max_text_chars``."""
SPOOL_MESSAGES = Bound(1, 10_000_000, integer=True)
"""Most messages waiting in the on-disk spool: ``queue.max_queued``."""
FLEET_PREFETCH = Bound(1, 100, integer=True)
"""Messages a fleet member takes ahead of the one it speaks: ``mqtt.fleet_prefetch``."""
MAX_VOICES = Bound(1, 16, integer=True)
"""Voices a daemon keeps loaded at once: ``synthesis.max_voices``."""
