"""MQTT test helpers: a recording probe client, daemon settings, ``jetvox serve`` as a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import paho.mqtt.client as mqtt
import yaml

from devtools.mosquitto import Mosquitto
from jetvox.device.daemon.messages import Status

WAIT_S = 60.0
"""Default bound for every wait on the daemon (synthesis on a shared 2-core box is slow)."""


@dataclass
class Received:
    """One message a probe received."""

    topic: str
    payload: bytes
    at: float
    """Monotonic arrival time."""
    retain: bool = False
    """Delivered as a retained message (on subscribing)."""


class Probe:
    """A test MQTT client that records everything on its subscriptions; every wait is bounded."""

    def __init__(self, broker: Mosquitto, topics: list[str], client_id: str = "", persistent: bool = False,
                 tls: Optional[tuple[str, str, str]] = None, login: Optional[tuple[str, str]] = None) -> None:
        self.messages: list[Received] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self._topics = topics
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"probe-{os.getpid()}-{id(self)}",
            protocol=mqtt.MQTTv5,
        )
        self._client.on_message = self._on_message
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *a: self._subscribed.set()
        self._client.reconnect_delay_set(1, 2)
        if tls is not None:  # (ca, certfile, keyfile)
            self._client.tls_set(ca_certs=tls[0], certfile=tls[1], keyfile=tls[2])
        if login is not None:
            self._client.username_pw_set(*login)
        props = None
        if persistent:  # survive a broker restart without missing what was published meanwhile
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
        self._client.connect("127.0.0.1", broker.port, clean_start=not persistent, properties=props)
        self._client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("probe did not subscribe")

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, rc: object, props: object) -> None:
        client.subscribe([(t, 1) for t in self._topics])

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(Received(msg.topic, bytes(msg.payload), time.monotonic(), bool(msg.retain)))
            self._cond.notify_all()

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> None:
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(10)

    def publish_many(self, topic: str, payloads: list[bytes | str], qos: int = 1, timeout: float = 120.0) -> None:
        """Publish every payload at once (paho queues them), then wait until the broker has each."""
        infos = [self._client.publish(topic, p, qos=qos) for p in payloads]
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            if not info.is_published():
                raise AssertionError(f"the broker did not take message {info.mid} within {timeout:.0f} s")

    def wait_for(self, predicate: Callable[[], bool], timeout: float = WAIT_S, what: str = "condition") -> None:
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; got {self.summary()}")

    def statuses(self, msg_id: str | None = None) -> list[Status]:
        with self._cond:  # copy under the lock, parse outside it: paho's thread must never wait on a parse
            raw = [m.payload for m in self.messages if "/status/" in m.topic]
        out = [Status.from_json(p) for p in raw]
        return [s for s in out if msg_id is None or s.id == msg_id]

    def states(self, msg_id: str) -> list[str]:
        return [s.state for s in self.statuses(msg_id)]

    def final(self, msg_id: str, timeout: float = WAIT_S) -> Status:
        """The first done/dropped/error status of ``msg_id``."""
        self.wait_for(lambda: any(s.state in ("done", "dropped", "error") for s in self.statuses(msg_id)),
                      timeout, f"a final status for {msg_id}")
        return next(s for s in self.statuses(msg_id) if s.state in ("done", "dropped", "error"))

    def audio(self, msg_id: str) -> list[bytes]:
        with self._cond:
            return [m.payload for m in self.messages if m.topic.endswith(f"/audio/{msg_id}")]

    def topic_messages(self, topic: str) -> list[Received]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def topic_messages_prefix(self, prefix: str) -> list[Received]:
        with self._cond:
            return [m for m in self.messages if m.topic.startswith(prefix)]

    def summary(self) -> str:
        with self._cond:
            lines = [
                f"{m.topic} {m.payload[:160]!r}" if b"{" in m.payload[:1] or len(m.payload) < 64 else f"{m.topic} <{len(m.payload)} bytes>"
                for m in self.messages
                if "/audio/" not in m.topic
            ]
        return "\n  " + "\n  ".join(lines[-30:])

    def wait_online(self, prefix: str, after: float = 0.0, timeout: float = WAIT_S) -> None:
        """Wait for ``online`` on ``<prefix>/availability`` received after monotonic time ``after``."""
        topic = f"{prefix}/availability"
        self.wait_for(
            lambda: any(m.payload == b"online" and m.at >= after for m in self.topic_messages(topic)),
            timeout, f"{topic} online",
        )

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def daemon_settings(state_dir: Path, broker: Mosquitto, device_id: str = "test", **sections: Any) -> dict[str, Any]:
    """A config mapping for a test daemon: MQTT output, no audio cache, quick reconnects; ``sections`` merge in."""
    data: dict[str, Any] = {
        "state_dir": str(state_dir),
        "output": "mqtt",
        "mqtt": {"broker": broker.url, "device_id": device_id, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0},
        "cache": {"enabled": False},
        "synthesis": {"noise_scale": 0.0, "noise_w": 0.0},
        "logging": {"level": "DEBUG", "journald": False},
    }
    for key, value in sections.items():
        if isinstance(value, dict):
            data.setdefault(key, {}).update(value)
        else:
            data[key] = value
    return data


class DaemonProcess:
    """``jetvox serve`` as a subprocess (stderr to a log file), for kill -9 and sd_notify tests."""

    def __init__(self, workdir: Path, settings: dict[str, Any], env: Optional[dict[str, str]] = None,
                 args: tuple[str, ...] = ()) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "jetvox.yaml"
        self.config_path.write_text(yaml.safe_dump(settings))
        self.log_path = workdir / "daemon.log"
        base = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
                                                                  "INVOCATION_ID", "JOURNAL_STREAM")}
        self.env = {**base, **(env or {})}
        self.args = args
        self.proc: Optional[subprocess.Popen[bytes]] = None

    def start(self) -> "DaemonProcess":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jetvox.device.cli", "serve", "--config", str(self.config_path), *self.args],
            stdout=log, stderr=log, env=self.env, cwd=self.workdir,
        )
        log.close()
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def log(self, whole: bool = False) -> str:
        if not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace")
        return text if whole else text[-6000:]

    def rss_kib(self) -> int:
        """Resident memory of the daemon process, in KiB."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
