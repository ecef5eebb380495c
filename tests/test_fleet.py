"""Two daemons share the say topic (MQTT 5 shared subscription); one is killed mid-burst and nothing is lost."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Callable

import pytest

from devtools.mosquitto import Mosquitto
from tests.mqttfix import DaemonProcess, Probe, daemon_settings

pytestmark = pytest.mark.slow

PREFIX = "jetvox/fleet"
N = 150


def spoken(*daemons: DaemonProcess) -> Counter[str]:
    return Counter(m for d in daemons for m in re.findall(r"message (\S+) done", d.log(whole=True)))


def member(state_dir: Path, broker: Mosquitto, name: str) -> dict:  # type: ignore[type-arg]
    return daemon_settings(state_dir, broker, device_id=name,
                           mqtt={"prefix": PREFIX, "shared_group": "fleet", "fleet_prefetch": 2},
                           logging={"level": "INFO", "journald": False})


def test_a_killed_member_loses_nothing_and_speaks_what_it_stranded_on_return(
        broker: Mosquitto, state_dir: Path, daemon_process: Callable, probe_factory: Callable) -> None:
    probe: Probe = probe_factory(broker, [f"{PREFIX}/status/#", f"{PREFIX}/availability"])
    a = daemon_process("a", member(state_dir, broker, "a"))
    probe.wait_online(PREFIX)
    b = daemon_process("b", member(state_dir, broker, "b"))
    deadline = time.monotonic() + 60
    while "serving" not in b.log() and time.monotonic() < deadline:
        time.sleep(0.2)
    ids = [f"m{i}" for i in range(N)]
    probe.publish_many(f"{PREFIX}/say", [json.dumps({"text": f"Fleet message {i}.", "id": m})
                                         for i, m in enumerate(ids)])
    probe.wait_for(lambda: sum(spoken(a).values()) >= 10, 120, "member a speaking")
    a.kill9()
    killed_at = time.monotonic()
    # the survivor works through everything the broker gives it; then nothing moves
    last, still = -1, 0.0
    while time.monotonic() - killed_at < 240:
        now = sum(spoken(a, b).values())
        if now == last:
            still += 1.0
            if still >= 8:
                break
        else:
            last, still = now, 0.0
        time.sleep(1.0)
    stranded = [m for m in ids if not spoken(a, b)[m]]
    print(f"fleet: member a killed after {sum(spoken(a).values())} spoken; {len(stranded)} stranded with it; "
          f"b spoke {sum(spoken(b).values())}")
    # mosquitto 2.0.11 hands each member its share of a burst at publish time and queues it in the member's
    # session (Receive Maximum only bounds what is in flight), so a dead member strands its queued share;
    # the figure goes to the operator's guide. Nothing may be lost and the survivor must have worked.
    assert stranded and sum(spoken(b).values()) >= N // 2 - 5, (len(stranded), sum(spoken(b).values()))
    restarted = time.monotonic()
    daemon_process("a", member(state_dir, broker, "a"))  # same client id: its broker session comes back
    deadline = time.monotonic() + 180
    while not all(spoken(a, b)[m] for m in ids) and time.monotonic() < deadline:
        time.sleep(0.2)
    counts = spoken(a, b)
    assert all(counts[m] == 1 for m in ids), {m: counts[m] for m in ids if counts[m] != 1}
    print(f"fleet: the stranded {len(stranded)} spoken {time.monotonic() - restarted:.1f} s after member a restarted")
