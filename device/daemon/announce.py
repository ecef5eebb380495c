"""Announcement conventions: the chime before chosen priorities, a gain per priority, quiet hours."""

from __future__ import annotations

import datetime
import logging
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from jetvox.device.config import AnnouncementsConfig, ConfigError, QuietHours, clock_minutes

log = logging.getLogger(__name__)

def now() -> datetime.datetime:
    """Local wall-clock time (the quiet-hours clock; tests replace it)."""
    return datetime.datetime.now()


CHIME_S = 0.55
"""Length of the built-in chime, its tail included."""


def builtin_chime(sample_rate: int) -> np.ndarray:
    """The built-in two-tone chime (E6 then C6, bell-like decay), float32 at ``sample_rate``; ends in silence."""
    t = np.arange(int(round(CHIME_S * sample_rate)), dtype=np.float64) / sample_rate
    out = np.zeros_like(t)
    for onset, freq in ((0.0, 1318.51), (0.18, 1046.50)):
        local = t - onset
        on = local >= 0
        tone = np.sin(2 * np.pi * freq * local) + 0.25 * np.sin(2 * np.pi * 2 * freq * local)
        out += np.where(on, tone * np.exp(-np.clip(local, 0, None) * 9.0), 0.0)
    attack = np.minimum(1.0, t / 0.004)  # no click at the start
    release = np.clip((t[-1] - t) / 0.08, 0.0, 1.0)  # exactly silent at the end: the speech follows with no step
    out *= attack * release
    return (0.3 * out / np.max(np.abs(out))).astype(np.float32)


def load_chime(path: Path, sample_rate: int) -> np.ndarray:
    """A user's 16-bit PCM WAV as mono float32 at ``sample_rate``; ConfigError naming ``announcements.chime``."""
    try:
        with wave.open(str(path), "rb") as wav:
            width, channels, rate = wav.getsampwidth(), wav.getnchannels(), wav.getframerate()
            frames = wav.readframes(wav.getnframes())
    except (OSError, EOFError, wave.Error) as exc:
        raise ConfigError(f"announcements.chime: cannot read {path} as a WAV file: {exc}") from None
    if width != 2:
        raise ConfigError(f"announcements.chime: expected 16-bit PCM samples in {path}, got {8 * width}-bit")
    audio = np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0
    if channels > 1:
        audio = audio[: len(audio) // channels * channels].reshape(-1, channels).mean(axis=1)
    if not len(audio):
        raise ConfigError(f"announcements.chime: {path} holds no audio")
    if rate != sample_rate:
        positions = np.arange(int(round(len(audio) * sample_rate / rate))) * (rate / sample_rate)
        audio = np.interp(positions, np.arange(len(audio)), audio).astype(np.float32)
    return np.asarray(audio, dtype=np.float32)


@dataclass(frozen=True)
class QuietWindow:
    """The daily quiet-hours window of the configuration."""

    start: int
    """Minutes after midnight the window opens."""
    end: int
    """Minutes after midnight it closes."""
    priorities: frozenset[str]
    """Priorities it holds (or drops)."""
    action: str
    """``hold`` or ``drop``."""
    label: str
    """``HH:MM-HH:MM`` for reasons and logs."""

    @classmethod
    def of(cls, cfg: QuietHours) -> Optional["QuietWindow"]:
        if cfg.start is None or cfg.end is None or cfg.start == cfg.end or not cfg.priorities:
            return None
        return cls(start=clock_minutes(cfg.start, "announcements.quiet_hours.start"),
                   end=clock_minutes(cfg.end, "announcements.quiet_hours.end"),
                   priorities=frozenset(cfg.priorities), action=cfg.action, label=f"{cfg.start}-{cfg.end}")

    def active(self, now: datetime.datetime) -> bool:
        """True if ``now`` (local time) lies in the window."""
        minute = now.hour * 60 + now.minute
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end  # across midnight


class Announcements:
    """What the worker asks per message: the chime to play first, the gain, whether quiet hours hold it."""

    def __init__(self, cfg: AnnouncementsConfig, clock: Optional[Callable[[], datetime.datetime]] = None) -> None:
        """Read the configuration (the chime file is read once per sample rate, on first use).

        Args:
            cfg: the ``announcements`` section.
            clock: local wall-clock time (default: ``now``, looked up at each call).
        """
        self._cfg = cfg
        self._clock = clock or (lambda: now())
        self._chimes: dict[int, np.ndarray] = {}
        self.quiet = QuietWindow.of(cfg.quiet_hours)
        """The quiet-hours window, or None."""

    def chime(self, priority: str, sample_rate: int) -> Optional[np.ndarray]:
        """The chime to play before a message of ``priority``, or None."""
        if priority not in self._cfg.chime_priorities:
            return None
        chime = self._chimes.get(sample_rate)
        if chime is None:
            path = self._cfg.chime
            chime = builtin_chime(sample_rate) if path is None else load_chime(path, sample_rate)
            self._chimes[sample_rate] = chime
        return chime

    def gain(self, priority: str) -> float:
        """The configured gain of ``priority``."""
        return float(getattr(self._cfg.volume, priority))

    def held(self) -> frozenset[str]:
        """Priorities quiet hours hold right now (empty outside the window)."""
        if self.quiet is None or not self.quiet.active(self._clock()):
            return frozenset()
        return self.quiet.priorities

    def holding(self) -> frozenset[str]:
        """Priorities that wait right now: ``held`` when quiet hours hold (empty when they drop)."""
        if self.quiet is None or self.quiet.action != "hold":
            return frozenset()
        return self.held()

    def quiet_reason(self) -> str:
        assert self.quiet is not None
        return f"quiet hours ({self.quiet.label})"
