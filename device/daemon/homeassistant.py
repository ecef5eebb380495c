"""Home Assistant over MQTT: discovery configs, the state topic, and the volume, mute, stop and test commands."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from jetvox.device import __version__
from jetvox.device.config import Config
from jetvox.device.daemon.controls import Controls, State
from jetvox.device.daemon.intake import Delivery
from jetvox.device.daemon.messages import Topics

log = logging.getLogger(__name__)

SUPPORT_URL = "https://github.com/jetvox/jetvox"
STATE_INTERVAL_S = 0.25
"""State updates are coalesced to at most one per this many seconds (the last change always goes out)."""


@dataclass(frozen=True)
class Entity:
    """One Home Assistant entity of the device."""

    component: str
    """``notify``, ``sensor``, ``number``, ``switch`` or ``button``."""
    object_id: str
    """Its id within the device (the discovery topic's last level before ``config``)."""
    name: str
    """Its name in Home Assistant (shown after the device name)."""
    fields: dict[str, Any]
    """The component's own options (topics, templates, units)."""


class ControlTopics:
    """The device's command and state topics beside ``say`` (part of the MQTT contract with or without HA).

    A fleet shares one prefix (and say topic); each member's controls live under ``<prefix>/members/<device_id>``.
    """

    def __init__(self, topics: Topics, device_id: str) -> None:
        prefix = f"{topics.prefix}/members/{device_id}" if topics.shared_group else topics.prefix
        self.state = f"{prefix}/state"
        self.volume = f"{prefix}/volume/set"
        self.mute = f"{prefix}/mute/set"
        self.stop = f"{prefix}/stop"
        self.test = f"{prefix}/test"


def entities(topics: Topics, controls: ControlTopics) -> list[Entity]:
    """Every entity jetvox offers Home Assistant."""
    state = {"state_topic": controls.state}
    return [
        Entity("notify", "say", "Say", {"command_topic": topics.say, "icon": "mdi:account-voice"}),
        Entity("sensor", "state", "State", {**state, "value_template": "{{ value_json.state }}",
                                            "device_class": "enum", "options": ["idle", "speaking"]}),
        Entity("sensor", "queue_length", "Queue length", {
            **state, "value_template": "{{ value_json.queue_length }}", "unit_of_measurement": "messages",
            "state_class": "measurement", "icon": "mdi:tray-full"}),
        Entity("sensor", "first_audio", "First audio", {
            **state, "value_template": "{{ value_json.first_audio_ms }}", "unit_of_measurement": "ms",
            "device_class": "duration", "state_class": "measurement", "entity_category": "diagnostic"}),
        Entity("number", "volume", "Volume", {
            **state, "command_topic": controls.volume, "value_template": "{{ value_json.volume }}",
            "min": 0, "max": 4, "step": 0.05, "mode": "slider", "icon": "mdi:volume-high"}),
        Entity("switch", "mute", "Mute", {
            **state, "command_topic": controls.mute, "value_template": "{{ 'ON' if value_json.muted else 'OFF' }}",
            "payload_on": "ON", "payload_off": "OFF", "state_on": "ON", "state_off": "OFF", "icon": "mdi:volume-off"}),
        Entity("button", "stop", "Stop speaking", {"command_topic": controls.stop, "payload_press": "PRESS",
                                                   "icon": "mdi:stop"}),
        Entity("button", "test", "Test phrase", {"command_topic": controls.test, "payload_press": "PRESS",
                                                 "icon": "mdi:play"}),
    ]


def node_id(device_id: str) -> str:
    """The discovery node id: letters, digits, ``_`` and ``-`` only."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"jetvox_{device_id}")


class HomeAssistant:
    """Publishes discovery and state, and handles the command topics (on paho's thread; never blocks)."""

    def __init__(self, cfg: Config, device_id: str, topics: Topics, controls: Controls, voice_name: str,
                 publish: Callable[..., int], stop_current: Callable[[str], object],
                 speak_test: Callable[[str], object]) -> None:
        """Wire up (nothing is published before ``on_ready``).

        Args:
            cfg: the ``homeassistant`` section and the device's defaults.
            device_id: this device's id (unique ids, node id).
            topics: the device's topic names.
            controls: volume, mute and activity.
            voice_name: the configured voice (the device's model field).
            publish: the intake's ``publish(topic, payload, retain=..., track=...)``.
            stop_current: cuts off the message being spoken, with a reason.
            speak_test: queues the test phrase.
        """
        self._cfg = cfg.homeassistant
        self._device_id = device_id
        self._topics = topics
        self._controls = controls
        self._publish = publish
        self._stop_current = stop_current
        self._speak_test = speak_test
        self.control_topics = ControlTopics(topics, device_id)
        self.birth_topic = f"{self._cfg.prefix.rstrip('/')}/status"
        self._node = node_id(device_id)
        self._device = {
            "identifiers": [self._node],
            "name": self._cfg.name or f"jetvox {device_id}",
            "manufacturer": "jetvox",
            "model": f"jetvox text-to-speech ({voice_name})",
            "sw_version": __version__,
        }
        self._ready = False
        self._lock = threading.Lock()
        self._last_state = 0.0
        self._timer: Optional[threading.Timer] = None
        controls.listen(self._state_changed)

    @property
    def subscriptions(self) -> list[str]:
        c = self.control_topics
        return [c.volume, c.mute, c.stop, c.test, self.birth_topic]

    def config_topic(self, entity: Entity) -> str:
        return f"{self._cfg.prefix.rstrip('/')}/{entity.component}/{self._node}/{entity.object_id}/config"

    def configs(self) -> dict[str, dict[str, Any]]:
        """Discovery topic → config payload of every entity."""
        out = {}
        for entity in entities(self._topics, self.control_topics):
            out[self.config_topic(entity)] = {
                "name": entity.name,
                "unique_id": f"{self._node}_{entity.object_id}",
                "device": self._device,
                "origin": {"name": "jetvox", "sw_version": __version__, "support_url": SUPPORT_URL},
                "availability_topic": self._topics.availability,
                "payload_available": "online",
                "payload_not_available": "offline",
                "qos": 1,
                **entity.fields,
            }
        return out

    # -- on paho's thread ------------------------------------------------------------------------

    def on_ready(self) -> None:
        """Connected and subscribed: publish discovery (or remove it) and the current state."""
        self._ready = True
        self.publish_discovery()
        self._publish_state(self._controls.state)

    def publish_discovery(self) -> None:
        configs = self.configs()
        if self._cfg.discovery:
            for topic, payload in configs.items():
                self._publish(topic, json.dumps(payload), retain=True, track=False)
            log.info("Home Assistant discovery: %d entities under %s/…/%s", len(configs), self._cfg.prefix, self._node)
        else:  # an empty retained config removes the entity (and, with the last one, the device)
            for topic in configs:
                self._publish(topic, b"", retain=True, track=False)
            log.debug("Home Assistant discovery off: removed this device's configs")

    def handle(self, d: Delivery) -> bool:
        """Handle a command or birth message; False if ``d`` is not one of them."""
        c = self.control_topics
        text = d.payload.decode("utf-8", "replace").strip()
        if d.topic == self.birth_topic:
            if text == "online" and self._ready:
                log.info("Home Assistant came online; publishing discovery again")
                self.publish_discovery()
                self._publish_state(self._controls.state)
            return True
        if d.topic not in (c.volume, c.mute, c.stop, c.test):
            return False
        if d.retain:  # a stale command is not replayed at start-up
            log.info("ignoring a retained command on %s", d.topic)
            return True
        if d.topic == c.volume:
            self._set_volume(text)
        elif d.topic == c.mute:
            self._set_mute(text)
        elif d.topic == c.stop:
            job = self._stop_current("stopped by a stop command")
            log.info("stop command: %s", f"message {getattr(job, 'id', '?')} cut off" if job else "nothing spoken")
        else:
            log.info("test command: speaking the test phrase")
            self._speak_test(self._cfg.test_phrase)
        return True

    def _set_volume(self, text: str) -> None:
        try:
            self._controls.set_volume(float(text))
            log.info("speaker volume set to %s", text)
        except ValueError as exc:
            log.warning("volume command on %s refused: expected a number between 0 and 4, got %r (%s)",
                        self.control_topics.volume, text[:40], exc)
            self._publish_state(self._controls.state)  # the slider goes back to the real value

    def _set_mute(self, text: str) -> None:
        value = text.upper()
        if value not in ("ON", "OFF"):
            log.warning("mute command on %s refused: expected ON or OFF, got %r", self.control_topics.mute, text[:40])
            self._publish_state(self._controls.state)
            return
        self._controls.set_muted(value == "ON")
        log.info("speaker %s", "muted (alerts still play)" if value == "ON" else "unmuted")

    # -- state (any thread) ----------------------------------------------------------------------

    def _state_changed(self, state: State) -> None:
        """Coalesce: at most one state message per STATE_INTERVAL_S, the latest always sent."""
        if not self._ready:
            return
        with self._lock:
            if self._timer is not None:
                return  # a send is scheduled; it reads the state then
            wait = self._last_state + STATE_INTERVAL_S - time.monotonic()
            if wait > 0:
                self._timer = threading.Timer(wait, self._flush)
                self._timer.daemon = True
                self._timer.start()
                return
            self._last_state = time.monotonic()
        self._publish_state(state)

    def _flush(self) -> None:
        with self._lock:
            self._timer = None
            self._last_state = time.monotonic()
        self._publish_state(self._controls.state)

    def _publish_state(self, state: State) -> None:
        try:
            self._publish(self.control_topics.state, state.to_json(), retain=True, track=False)
        except RuntimeError as exc:  # paho's queue is full: the next change carries the state
            log.debug("state not published: %s", exc)

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
