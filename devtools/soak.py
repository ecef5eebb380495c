"""`make soak`: an hour of mixed traffic against `jetvox serve`, with broker and daemon kills; what was lost or doubled."""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devtools.mosquitto import Mosquitto
from jetvox.device.config import default_state_dir

PREFIX = "jetvox/soak"
BAD = [b"\xff\xfe not utf-8", b'{"text": "broken', b'{"text": 42}', b'{"text": "x", "volume": ' + b"9" * 400 + b"}",
       b"[" * 100000, b'{"text": ""}', b'{"text": "hi", "priority": "urgent"}']
SENTENCES = ["The front door is open.", "Kitchen temperature is {n} degrees.", "Washing machine finished.",
             "Battery of sensor {n} is low.", "Motion in the garage.", "Humidity is {n} percent."]


@dataclass
class Tally:
    """What the soak sent and saw."""

    sent: list[str] = field(default_factory=list)
    """Ids of valid messages published (each must be spoken exactly once)."""
    bad: int = 0
    """Invalid payloads published (each must get an error status)."""
    errors: set[str] = field(default_factory=set)
    """Ids that received an ``error`` status."""
    broker_kills: int = 0
    daemon_kills: int = 0
    rss: list[tuple[float, int, int]] = field(default_factory=list)
    """(minutes since start, daemon incarnation, resident KiB)."""


class Listener:
    """Persistent-session subscriber of every status."""

    def __init__(self, port: int, tally: Tally) -> None:
        self.tally = tally
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="soak-listener", protocol=mqtt.MQTTv5)
        self.online = threading.Event()
        """Set once the daemon said ``online`` (before that, nothing published to it would reach it)."""
        self.client.on_connect = lambda c, *a: c.subscribe([(f"{PREFIX}/status/#", 1), (f"{PREFIX}/availability", 1)])
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 2)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 7200
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith("/availability"):
            if msg.payload == b"online":
                self.online.set()
            return
        try:
            status = json.loads(msg.payload)
        except ValueError:
            return
        if status.get("state") == "error":
            with self.lock:
                self.tally.errors.add(status.get("id", ""))


class DaemonRun:
    """`jetvox serve` as a subprocess that can be killed and restarted; its log accumulates."""

    def __init__(self, work: Path, config: Path) -> None:
        self.config = config
        self.log_path = work / "daemon.log"
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.incarnation = 0

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "jetvox.device.cli", "serve", "--config",
                                          str(self.config)], stdout=log, stderr=log)
        self.incarnation += 1

    def kill9(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int:
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return -9

    def rss_kib(self) -> int:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():  # type: ignore[union-attr]
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0


def _publisher(port: int) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="soak-sender", protocol=mqtt.MQTTv5)
    client.reconnect_delay_set(1, 2)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 7200
    client.connect("127.0.0.1", port, clean_start=False, properties=props)
    client.loop_start()
    return client


def _crash(kill: Callable[[], object], start: Callable[[], object], down_s: float) -> None:
    kill()
    time.sleep(down_s)
    start()


def run(minutes: float, state_dir: Path, seed: int) -> int:
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="jetvox-soak-"))
    # autosave on every change: a broker killed with -9 loses nothing it had acknowledged, so what is lost is ours
    broker = Mosquitto(work / "broker", options=("allow_anonymous true", "autosave_on_changes true")).start()
    settings = {
        "state_dir": str(state_dir), "output": "mqtt",
        "mqtt": {"broker": broker.url, "device_id": "soak", "reconnect_min_s": 0.5, "reconnect_max_s": 2.0},
        "cache": {"enabled": True}, "logging": {"level": "INFO", "journald": False},
        "queue": {"default_ttl_s": 0},
    }
    config = work / "jetvox.yaml"
    config.write_text(yaml.safe_dump(settings))
    tally = Tally()
    listener = Listener(broker.port, tally)
    daemon = DaemonRun(work, config)
    daemon.start()
    if not listener.online.wait(120):
        raise SystemExit(f"soak: the daemon did not come online; see {daemon.log_path}")
    sender = _publisher(broker.port)
    start = time.monotonic()
    end = start + minutes * 60
    next_broker_kill = start + 240
    next_daemon_kill = start + 150
    next_rss = start
    n = 0
    print(f"soak: {minutes:g} min, work dir {work}", flush=True)
    while time.monotonic() < end:
        now = time.monotonic()
        burst = rng.random() < 0.02
        for _ in range(rng.randint(20, 80) if burst else 1):
            n += 1
            if rng.random() < 0.05:
                sender.publish(f"{PREFIX}/say", rng.choice(BAD), qos=1)
                tally.bad += 1
                continue
            msg_id = f"s{n}"
            text = rng.choice(SENTENCES).format(n=rng.randint(0, 100))
            prio = rng.choices(["low", "normal", "high", "alert"], [2, 6, 2, 1])[0]
            sender.publish(f"{PREFIX}/say", json.dumps({"text": text, "id": msg_id, "priority": prio}), qos=1)
            tally.sent.append(msg_id)
        if now >= next_broker_kill:  # kill -9, down 1 to 5 s
            _crash(broker.kill, broker.start, rng.uniform(1, 5))
            tally.broker_kills += 1
            next_broker_kill = now + rng.uniform(180, 300)
        if now >= next_daemon_kill:
            _crash(daemon.kill9, daemon.start, rng.uniform(0.5, 3))
            tally.daemon_kills += 1
            next_daemon_kill = now + rng.uniform(180, 300)
        if now >= next_rss:
            tally.rss.append(((now - start) / 60, daemon.incarnation, daemon.rss_kib()))
            next_rss = now + 60
        elapsed = (now - start) / 60
        if n % 200 == 0:
            print(f"soak: {elapsed:5.1f} min, {len(tally.sent)} sent, {tally.broker_kills} broker kills, "
                  f"{tally.daemon_kills} daemon kills", flush=True)
        time.sleep(rng.expovariate(1 / 0.6))
    print("soak: traffic over; waiting for the daemon to finish what it holds", flush=True)
    drain_deadline = time.monotonic() + 300
    spoken: Counter[str] = Counter()
    while time.monotonic() < drain_deadline:
        spoken = Counter(re.findall(r"message (\S+) done", daemon.log_path.read_text(errors="replace")))
        if all(spoken[m] for m in tally.sent):
            break
        time.sleep(2)
    tally.rss.append(((time.monotonic() - start) / 60, daemon.incarnation, daemon.rss_kib()))
    rc = daemon.stop()
    sender.loop_stop()
    listener.client.loop_stop()
    broker.stop()
    return report(tally, spoken, daemon.log_path, rc)


def report(tally: Tally, spoken: Counter[str], log_path: Path, rc: int) -> int:
    log = log_path.read_text(errors="replace")
    dropped = dict(re.findall(r"message (\S+) dropped \((.*)\)", log))
    lost = [m for m in tally.sent if spoken[m] == 0 and m not in dropped]
    doubled = [m for m in tally.sent if spoken[m] > 1]
    tracebacks = log.count("Traceback")
    print("\n| figure | value |\n|---|---|")
    rows = [
        ("valid messages sent", len(tally.sent)),
        ("spoken (done)", sum(1 for m in tally.sent if spoken[m])),
        ("dropped with a status, by design (a low message cut off by an alert)",
         sum(1 for m in tally.sent if m in dropped and "cut off by alert" in dropped[m])),
        ("dropped with a status, other reasons", sum(1 for m in tally.sent if m in dropped
                                                     and "cut off by alert" not in dropped[m])),
        ("spoken twice or more", len(doubled)),
        ("lost", len(lost)),
        ("hostile payloads sent / answered with error", f"{tally.bad} / {len(tally.errors)}"),
        ("broker kill -9", tally.broker_kills),
        ("daemon kill -9", tally.daemon_kills),
        ("tracebacks in the daemon log", tracebacks),
        ("daemon exit code on SIGTERM", rc),
    ]
    for name, value in rows:
        print(f"| {name} | {value} |")
    print("\nresident memory (minute, daemon run, MiB): "
          + ", ".join(f"{m:.0f}/{i}/{kib / 1024:.0f}" for m, i, kib in tally.rss))
    if lost:
        print(f"lost ids (first 20): {lost[:20]}")
    if doubled:
        print(f"doubled ids (first 20): {doubled[:20]}")
    return 1 if lost or tracebacks else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", "60")))
    ap.add_argument("--state-dir", type=Path, default=default_state_dir(), help="where the voice is provisioned")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    return run(args.minutes, args.state_dir, args.seed)


if __name__ == "__main__":
    sys.exit(main())
