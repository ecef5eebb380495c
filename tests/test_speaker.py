"""Speaker output through sounddevice into an ALSA ``file`` PCM (no sound card needed)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from devtools.mosquitto import Mosquitto
from tests.mqttfix import daemon_settings

pytestmark = pytest.mark.slow
PREFIX = "jetvox/spk"


def fake_home(tmp_path: Path) -> tuple[Path, Path]:
    """A HOME whose ~/.asoundrc makes the default ALSA device write raw samples to a file."""
    home = tmp_path / "home"
    home.mkdir()
    raw = tmp_path / "speaker.raw"
    (home / ".asoundrc").write_text(
        "pcm.!default {\n"
        "  type file\n"
        '  slave.pcm "null"\n'
        f'  file "{raw}"\n'
        '  format "raw"\n'
        "}\n"
    )
    return home, raw


@pytest.mark.parametrize("device", [None, "default"])
def test_daemon_plays_on_the_speaker(broker: Mosquitto, state_dir: Path, daemon_process: Callable,
                                     probe_factory: Callable, tmp_path: Path, device: str | None) -> None:
    home, raw = fake_home(tmp_path)
    probe = probe_factory(broker, [f"{PREFIX}/#"])
    settings = daemon_settings(state_dir, broker, device_id="spk", output="speaker",
                               audio={"device": device, "volume": 0.5})
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "XDG_RUNTIME_DIR": str(home)}
    proc = daemon_process("speaker", settings, env=env)
    probe.wait_online(PREFIX)
    probe.publish(f"{PREFIX}/say", '{"text": "The speaker works.", "id": "s1"}')
    done = probe.final("s1")
    assert done.state == "done", (done, proc.log())
    assert done.outputs == ("speaker",) and not probe.audio("s1")  # speaker only: no PCM on MQTT
    expected = round((done.audio_s - 0.0005) * 22050) * 2  # audio_s is rounded to milliseconds
    deadline = time.monotonic() + 10
    while (not raw.exists() or raw.stat().st_size < expected) and time.monotonic() < deadline:
        time.sleep(0.1)
    data = raw.read_bytes()
    # whole periods are written: the file may hold a little padding after the utterance
    assert expected <= len(data) <= expected + 2 * 22050, (len(data), expected)
    samples = np.frombuffer(data[: expected], dtype="<i2").astype(np.float32) / 32767.0
    rms = float(np.sqrt(np.mean(samples**2)))
    assert rms > 0.01, f"speaker output is silent (rms {rms:.4f})"
    assert np.abs(samples).max() <= 0.5 + 1e-3  # audio.volume 0.5 applies to the speaker
    assert proc.terminate() == 0, proc.log()
    assert os.path.getsize(raw) == len(data)
