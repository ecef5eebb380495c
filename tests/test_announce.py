"""Announcement conventions measured in the produced PCM: chime, volume per priority, quiet hours."""

from __future__ import annotations

import datetime
import json
import time
import wave
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from devtools.mosquitto import Mosquitto
from jetvox.device.audio.pcm import pcm16_bytes
from jetvox.device.config import AnnouncementsConfig, ConfigError, QuietHours, from_mapping
from jetvox.device.daemon import announce
from jetvox.device.daemon.announce import Announcements, QuietWindow, builtin_chime, load_chime
from tests.mqttfix import Probe, daemon_settings

PREFIX = "jetvox/test"


def test_builtin_chime_is_short_audible_and_ends_in_silence() -> None:
    chime = builtin_chime(22050)
    assert chime.dtype == np.float32 and 0.3 < len(chime) / 22050 < 1.0
    assert 0.25 < np.abs(chime).max() <= 0.3 + 1e-6
    assert abs(float(chime[0])) < 1e-3 and abs(float(chime[-1])) < 1e-6  # no click either side
    spectrum = np.abs(np.fft.rfft(chime))
    peak_hz = np.argmax(spectrum) * 22050 / len(chime)
    assert 1000 < peak_hz < 1400


def test_user_chime_wav_is_resampled_and_mixed_down(tmp_path: Path) -> None:
    path = tmp_path / "chime.wav"
    t = np.arange(44100 // 2) / 44100
    tone = (0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2), w.setsampwidth(2), w.setframerate(44100)
        w.writeframes(np.stack([tone, tone], 1).tobytes())
    audio = load_chime(path, 22050)
    assert abs(len(audio) - 22050 // 2) <= 1 and abs(np.abs(audio).max() - 0.5) < 0.01
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not a wav")
    with pytest.raises(ConfigError, match="announcements.chime: cannot read"):
        load_chime(bad, 22050)
    with pytest.raises(ConfigError, match="announcements.chime: expected a WAV file"):
        from_mapping({"announcements": {"chime": str(tmp_path / "missing.wav")}})


def test_quiet_window_spans_midnight_and_rejects_bad_times() -> None:
    window = QuietWindow.of(QuietHours(start="22:30", end="07:00"))
    assert window is not None
    at = lambda h, m: datetime.datetime(2026, 12, 2, h, m)  # noqa: E731
    assert window.active(at(23, 0)) and window.active(at(3, 0)) and window.active(at(22, 30))
    assert not window.active(at(7, 0)) and not window.active(at(12, 0))
    day = QuietWindow.of(QuietHours(start="13:00", end="14:00"))
    assert day is not None and day.active(at(13, 59)) and not day.active(at(14, 0))
    for bad in ({"start": "24:00", "end": "07:00"}, {"start": "7", "end": "8:00"}, {"start": "22:00"},
                {"start": "22:00", "end": "07:00", "priorities": ["alert"]}):
        with pytest.raises(ConfigError, match="announcements.quiet_hours"):
            from_mapping({"announcements": {"quiet_hours": bad}})


def test_priority_gain_and_chime_selection() -> None:
    ann = Announcements(AnnouncementsConfig(chime_priorities=("high", "alert"),
                                            volume=from_mapping({"announcements": {"volume": {"low": 0.5}}})
                                            .announcements.volume))
    assert ann.gain("low") == 0.5 and ann.gain("alert") == 1.0
    assert ann.chime("normal", 22050) is None and ann.chime("alert", 22050) is not None
    with pytest.raises(ConfigError, match="announcements.volume.high"):
        from_mapping({"announcements": {"volume": {"high": 5}}})


def _pcm(probe: Probe, msg_id: str) -> np.ndarray:
    assert probe.final(msg_id).state == "done", probe.summary()
    return np.frombuffer(b"".join(probe.audio(msg_id)), dtype="<i2").astype(np.float32) / 32767.0


@pytest.mark.slow
def test_chime_then_speech_gap_free_and_volume_per_priority(broker: Mosquitto, state_dir: Path,
                                                              inproc_daemon: Callable, probe_factory: Callable) -> None:
    settings = daemon_settings(state_dir, broker, announcements={"chime_priorities": ["high"],
                                                                 "volume": {"high": 0.5}})
    inproc_daemon(settings)
    probe = probe_factory(broker, [f"{PREFIX}/#"])
    text = "The front door is open."
    probe.publish(f"{PREFIX}/say", json.dumps({"id": "n", "text": text}))
    normal = _pcm(probe, "n")
    probe.publish(f"{PREFIX}/say", json.dumps({"id": "h", "text": text, "priority": "high"}))
    high = _pcm(probe, "h")
    done = probe.final("h")
    assert done.chime is True and probe.final("n").chime is None
    chime = np.frombuffer(pcm16_bytes(builtin_chime(22050)), dtype="<i2").astype(np.float32) / 32767.0
    # the first samples are the chime, exactly; the speech follows at once (no gap: lengths add up)
    assert np.array_equal(high[: len(chime)], chime)
    speech = high[len(chime):]
    assert len(speech) == len(normal)
    ratio = np.sqrt(np.mean(speech**2)) / np.sqrt(np.mean(normal**2))
    assert abs(ratio - 0.5) < 0.01, ratio  # volume.high 0.5


@pytest.mark.slow
@pytest.mark.parametrize("action", ["hold", "drop"])
def test_quiet_hours_hold_or_drop_low_priorities_while_alerts_pass(
        action: str, broker: Mosquitto, state_dir: Path, inproc_daemon: Callable, probe_factory: Callable,
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = {"now": datetime.datetime(2026, 12, 2, 23, 0)}
    monkeypatch.setattr(announce, "now", lambda: clock["now"])
    settings = daemon_settings(state_dir, broker, announcements={
        "quiet_hours": {"start": "22:00", "end": "07:00", "priorities": ["low", "normal"], "action": action}})
    inproc_daemon(settings)
    probe = probe_factory(broker, [f"{PREFIX}/#"])
    probe.publish(f"{PREFIX}/say", json.dumps({"id": "night", "text": "The dishwasher is done."}))
    probe.publish(f"{PREFIX}/say", json.dumps({"id": "smoke", "text": "Smoke in the kitchen!", "priority": "alert"}))
    assert probe.final("smoke").state == "done"  # alerts pass
    if action == "drop":
        final = probe.final("night")
        assert final.state == "dropped" and final.reason == "quiet hours (22:00-07:00)"
        assert not probe.audio("night") and probe.audio("smoke")
        return
    queued = next(s for s in probe.statuses("night") if s.state == "queued")
    assert queued.held == "quiet hours (22:00-07:00): spoken when they end"
    time.sleep(2.0)
    assert probe.states("night") == ["queued"], "held during quiet hours"
    assert not probe.audio("night"), "no audio during quiet hours"
    clock["now"] = datetime.datetime(2026, 12, 3, 7, 0)  # the window ends
    assert probe.final("night", timeout=30).state == "done"
    assert len(b"".join(probe.audio("night"))) > 22050  # spoken in full once the window ended
