"""Home Assistant MQTT discovery against a real mosquitto: every config checked, commands, republish, removal."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import jinja2
import pytest

from devtools.mosquitto import Mosquitto
from tests.mqttfix import Probe, daemon_settings
from tests.test_speaker import fake_home

pytestmark = pytest.mark.slow
PREFIX = "jetvox/test"

# What Home Assistant's MQTT integration requires of each entity type (its platform schemas: required keys,
# and the keys whose values must be MQTT topics), and the common discovery rules (unique_id for a device
# entity, device identifiers or connections, origin name).
REQUIRED = {
    "notify": {"command_topic"},
    "sensor": {"state_topic"},
    "number": {"command_topic"},
    "switch": {"command_topic"},
    "button": {"command_topic"},
}
ALLOWED = {
    "common": {"name", "unique_id", "device", "origin", "availability_topic", "payload_available",
               "payload_not_available", "qos", "icon", "entity_category", "value_template"},
    "notify": {"command_topic", "command_template", "retain"},
    "sensor": {"state_topic", "device_class", "options", "unit_of_measurement", "state_class",
               "suggested_display_precision"},
    "number": {"command_topic", "state_topic", "min", "max", "step", "mode", "unit_of_measurement"},
    "switch": {"command_topic", "state_topic", "payload_on", "payload_off", "state_on", "state_off"},
    "button": {"command_topic", "payload_press"},
}
SENSOR_DEVICE_CLASS_UNITS = {"duration": {"d", "h", "min", "s", "ms"}}


def wait_until(predicate: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def configs(probe: Probe) -> dict[str, dict[str, Any]]:
    """The latest non-empty discovery config per topic."""
    out: dict[str, dict[str, Any]] = {}
    for m in probe.topic_messages_prefix("homeassistant/"):
        if m.topic.endswith("/config"):
            if m.payload:
                out[m.topic] = json.loads(m.payload)
            else:
                out.pop(m.topic, None)
    return out


def latest_state(probe: Probe) -> dict[str, Any]:
    msgs = probe.topic_messages(f"{PREFIX}/state")
    assert msgs, "no state published"
    return json.loads(msgs[-1].payload)


def render(template: str, state: dict[str, Any]) -> str:
    """Render a value_template as Home Assistant does (Jinja2, ``value_json`` = the parsed payload)."""
    return jinja2.Environment().from_string(template).render(value_json=state, value=json.dumps(state)).strip()


@pytest.fixture
def ha_probe(broker: Mosquitto, probe_factory: Callable) -> Probe:
    return probe_factory(broker, ["homeassistant/#", f"{PREFIX}/#"])


def test_every_discovery_config_is_valid_for_its_entity_type(broker: Mosquitto, state_dir: Path,
                                                               inproc_daemon: Callable, ha_probe: Probe) -> None:
    daemon = inproc_daemon(daemon_settings(state_dir, broker))
    wait_until(lambda: len(configs(ha_probe)) == 8, what="8 discovery configs")
    found = configs(ha_probe)
    by_component: dict[str, list[str]] = {}
    subscribed = set(daemon.intake._subscriptions)
    state = latest_state(ha_probe)
    unique_ids = set()
    for topic, cfg in found.items():
        prefix, component, node, object_id, last = topic.split("/")
        assert (prefix, node, last) == ("homeassistant", "jetvox_test", "config"), topic
        by_component.setdefault(component, []).append(object_id)
        missing = REQUIRED[component] - set(cfg)
        assert not missing, f"{topic} lacks {missing}"
        unknown = set(cfg) - ALLOWED["common"] - ALLOWED[component]
        assert not unknown, f"{topic} has keys Home Assistant does not know for {component}: {unknown}"
        assert cfg["unique_id"] not in unique_ids
        unique_ids.add(cfg["unique_id"])
        device = cfg["device"]
        assert device["identifiers"] == ["jetvox_test"] and device["name"] and device["sw_version"]
        assert device["model"].startswith("jetvox") and device["manufacturer"] == "jetvox"
        assert cfg["origin"]["name"] == "jetvox" and cfg["origin"]["sw_version"]
        assert cfg["availability_topic"] == f"{PREFIX}/availability"
        for key in ("command_topic", "state_topic"):
            if key in cfg:
                assert "+" not in cfg[key] and "#" not in cfg[key]
        if "command_topic" in cfg:  # the daemon listens where Home Assistant will command it
            assert cfg["command_topic"] in subscribed, (topic, cfg["command_topic"])
        if "state_topic" in cfg:
            assert cfg["state_topic"] == f"{PREFIX}/state"
            value = render(cfg["value_template"], state)
            if component == "sensor" and cfg.get("device_class") == "enum":
                assert value in cfg["options"], (topic, value)
            elif component == "sensor" and cfg.get("device_class") == "duration":
                assert cfg["unit_of_measurement"] in SENSOR_DEVICE_CLASS_UNITS["duration"]
                assert value == "None" or float(value) >= 0  # "None" is Home Assistant's "unknown"
            elif component == "sensor":
                assert int(value) >= 0
            elif component == "number":
                assert cfg["min"] <= float(value) <= cfg["max"] and cfg["min"] < cfg["max"]
            elif component == "switch":
                assert value in (cfg["state_on"], cfg["state_off"])
    assert {k: sorted(v) for k, v in by_component.items()} == {
        "notify": ["say"], "sensor": ["first_audio", "queue_length", "state"], "number": ["volume"],
        "switch": ["mute"], "button": ["stop", "test"]}

def test_configs_are_retained_for_a_home_assistant_that_starts_later(
        broker: Mosquitto, state_dir: Path, inproc_daemon: Callable, ha_probe: Probe, probe_factory: Callable) -> None:
    inproc_daemon(daemon_settings(state_dir, broker))
    wait_until(lambda: len(configs(ha_probe)) == 8)
    late = probe_factory(broker, ["homeassistant/#", f"{PREFIX}/state"])
    wait_until(lambda: len([m for m in late.topic_messages_prefix("homeassistant/") if m.retain and m.payload]) == 8,
               what="8 retained configs")
    wait_until(lambda: any(m.retain for m in late.topic_messages(f"{PREFIX}/state")), what="a retained state")


def test_notify_speaks_and_sensors_follow(broker: Mosquitto, state_dir: Path, inproc_daemon: Callable,
                                          ha_probe: Probe) -> None:
    inproc_daemon(daemon_settings(state_dir, broker))
    wait_until(lambda: len(configs(ha_probe)) == 8)
    notify = next(c for t, c in configs(ha_probe).items() if "/notify/" in t)
    ha_probe.publish(notify["command_topic"], "The garage door is open.")  # what Home Assistant sends
    wait_until(lambda: any(s.state == "done" for s in ha_probe.statuses()), what="the notify text spoken")
    states = [json.loads(m.payload) for m in ha_probe.topic_messages(f"{PREFIX}/state")]
    assert any(s["state"] == "speaking" for s in states)
    wait_until(lambda: latest_state(ha_probe)["state"] == "idle" and latest_state(ha_probe)["first_audio_ms"])
    assert latest_state(ha_probe)["first_audio_ms"] > 0


def test_republished_when_home_assistant_comes_online(broker: Mosquitto, state_dir: Path, inproc_daemon: Callable,
                                                      ha_probe: Probe, probe_factory: Callable) -> None:
    inproc_daemon(daemon_settings(state_dir, broker))
    wait_until(lambda: len(configs(ha_probe)) == 8)
    fresh = probe_factory(broker, ["homeassistant/+/jetvox_test/#"])
    time.sleep(0.5)
    before = len([m for m in fresh.topic_messages_prefix("homeassistant/") if not m.retain])
    ha_probe.publish("homeassistant/status", "online")
    wait_until(lambda: len([m for m in fresh.topic_messages_prefix("homeassistant/") if not m.retain]) >= before + 8,
               what="configs republished live after the birth message")


def test_discovery_off_removes_the_entities(broker: Mosquitto, state_dir: Path, inproc_daemon: Callable,
                                            ha_probe: Probe, probe_factory: Callable) -> None:
    first = inproc_daemon(daemon_settings(state_dir, broker))
    wait_until(lambda: len(configs(ha_probe)) == 8)
    first.stop()
    inproc_daemon(daemon_settings(state_dir, broker, homeassistant={"discovery": False}))
    wait_until(lambda: len(configs(ha_probe)) == 0, what="empty retained configs")
    late = probe_factory(broker, ["homeassistant/#"])  # a Home Assistant starting now finds nothing
    time.sleep(1.0)
    assert not [m for m in late.topic_messages_prefix("homeassistant/") if m.payload]


def test_volume_mute_stop_and_test_commands(broker: Mosquitto, state_dir: Path, inproc_daemon: Callable,
                                            ha_probe: Probe) -> None:
    daemon = inproc_daemon(daemon_settings(state_dir, broker))
    wait_until(lambda: len(configs(ha_probe)) == 8)
    ha_probe.publish(f"{PREFIX}/volume/set", "0.5")
    wait_until(lambda: latest_state(ha_probe)["volume"] == 0.5, what="volume 0.5 in the state")
    ha_probe.publish(f"{PREFIX}/volume/set", "loud")  # refused: the state goes out again unchanged
    ha_probe.publish(f"{PREFIX}/volume/set", "9")
    ha_probe.publish(f"{PREFIX}/mute/set", "ON")
    wait_until(lambda: latest_state(ha_probe)["muted"] is True)
    assert latest_state(ha_probe)["volume"] == 0.5
    saved = json.loads((daemon.run_dir / "controls.json").read_text())
    assert saved == {"volume": 0.5, "muted": True}  # kept across a restart
    ha_probe.publish(f"{PREFIX}/mute/set", "off")
    wait_until(lambda: latest_state(ha_probe)["muted"] is False)
    ha_probe.publish(f"{PREFIX}/say", json.dumps({"id": "long", "text": "This is a long message. " * 30}))
    wait_until(lambda: "started" in ha_probe.states("long"))
    ha_probe.publish(f"{PREFIX}/stop", "PRESS")
    final = ha_probe.final("long")
    assert final.state == "dropped" and final.reason == "stopped by a stop command"
    ha_probe.publish(f"{PREFIX}/test", "PRESS")
    wait_until(lambda: any(s.id.startswith("test-") and s.state == "done" for s in ha_probe.statuses()),
               what="the test phrase spoken")
    assert daemon.worker.crashed is None


def test_controls_survive_a_restart(broker: Mosquitto, state_dir: Path, inproc_daemon: Callable,
                                    ha_probe: Probe) -> None:
    first = inproc_daemon(daemon_settings(state_dir, broker))
    wait_until(lambda: len(configs(ha_probe)) == 8)
    ha_probe.publish(f"{PREFIX}/volume/set", "1.5")
    wait_until(lambda: latest_state(ha_probe)["volume"] == 1.5)
    first.stop()
    second = inproc_daemon(daemon_settings(state_dir, broker))
    assert second.controls.state.volume == 1.5


def test_speaker_volume_and_mute_in_the_played_pcm(broker: Mosquitto, state_dir: Path, daemon_process: Callable,
                                                    probe_factory: Callable, tmp_path: Path) -> None:
    """Volume and mute set from Home Assistant, measured in what sounddevice wrote to an ALSA file PCM."""
    import numpy as np

    home, raw = fake_home(tmp_path)
    probe = probe_factory(broker, [f"{PREFIX}/#"])
    settings = daemon_settings(state_dir, broker, output="speaker")
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "XDG_RUNTIME_DIR": str(home)}
    proc = daemon_process("speaker", settings, env=env)
    probe.wait_online(PREFIX)

    def played(msg_id: str, priority: str = "normal") -> np.ndarray:
        """The samples of one utterance (the file PCM starts its file anew with each stream it opens)."""
        raw.unlink(missing_ok=True)
        probe.publish(f"{PREFIX}/say", json.dumps({"id": msg_id, "text": "The speaker works.", "priority": priority}))
        done = probe.final(msg_id)
        assert done.state == "done", (done, proc.log())
        n = round((done.audio_s - 0.0005) * 22050) * 2
        wait_until(lambda: raw.exists() and raw.stat().st_size >= n, 10)
        return np.frombuffer(raw.read_bytes()[:n], dtype="<i2").astype(np.float32) / 32767.0

    full = played("v1")
    probe.publish(f"{PREFIX}/volume/set", "0.25")
    wait_until(lambda: json.loads(probe.topic_messages(f"{PREFIX}/state")[-1].payload)["volume"] == 0.25)
    quiet = played("v2")
    ratio = np.sqrt(np.mean(quiet**2)) / np.sqrt(np.mean(full**2))
    assert abs(ratio - 0.25) < 0.01, ratio
    probe.publish(f"{PREFIX}/mute/set", "ON")
    wait_until(lambda: json.loads(probe.topic_messages(f"{PREFIX}/state")[-1].payload)["muted"])
    raw.unlink()
    probe.publish(f"{PREFIX}/say", json.dumps({"id": "m1", "text": "Muted."}))
    muted = probe.final("m1")
    assert muted.state == "dropped" and "muted" in (muted.reason or "")
    time.sleep(0.5)
    assert not raw.exists(), "nothing played while muted"
    alert = played("a1", "alert")  # alerts still play
    assert np.sqrt(np.mean(alert**2)) > 0.005
    assert proc.terminate() == 0, proc.log()
