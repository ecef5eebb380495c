"""The durable spool against a real mosquitto: bursts, a full spool, the broker killed, memory over many messages."""

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

PREFIX = "jetvox/test"


def spoken_in_log(daemon: DaemonProcess) -> Counter[str]:
    """How often each message id was finished as done, from the daemon's own log (the ground truth)."""
    return Counter(re.findall(r"message (\S+) done", daemon.log(whole=True)))


def assert_clean_log(daemon: DaemonProcess) -> None:
    text = daemon.log(whole=True)
    assert "Traceback" not in text, text[-3000:]


def test_a_burst_of_1000_is_spoken_entirely_and_once(broker: Mosquitto, state_dir: Path, daemon_process: Callable,
                                                       probe_factory: Callable) -> None:
    probe: Probe = probe_factory(broker, [f"{PREFIX}/status/#", f"{PREFIX}/availability"])
    daemon = daemon_process("burst", daemon_settings(state_dir, broker, logging={"level": "INFO", "journald": False}))
    probe.wait_online(PREFIX)
    ids = [f"b{i}" for i in range(1000)]
    t0 = time.monotonic()
    # all at once, QoS 1, as a flood of sensors would
    probe.publish_many(f"{PREFIX}/say", [json.dumps({"text": f"Reading {i}.", "id": m}) for i, m in enumerate(ids)])
    probe.wait_for(lambda: sum(1 for s in probe.statuses() if s.state in ("done", "dropped", "error")) >= 1000,
                   600, "a final status for each of 1000 messages")
    elapsed = time.monotonic() - t0
    finals = {s.id: s for s in probe.statuses() if s.state in ("done", "dropped", "error")}
    assert sorted(finals) == sorted(ids)
    assert {s.state for s in finals.values()} == {"done"}, Counter(s.state for s in finals.values())
    counts = spoken_in_log(daemon)
    assert all(counts[m] == 1 for m in ids), [m for m in ids if counts[m] != 1][:10]
    assert_clean_log(daemon)
    print(f"1000-message burst: all done once in {elapsed:.0f} s")


def test_a_full_spool_refuses_with_a_status_and_an_error_line(broker: Mosquitto, state_dir: Path,
                                                              daemon_process: Callable, probe_factory: Callable) -> None:
    probe: Probe = probe_factory(broker, [f"{PREFIX}/#"])
    daemon = daemon_process("full", daemon_settings(state_dir, broker, queue={"max_queued": 5}))
    probe.wait_online(PREFIX)
    # a low message long enough (tens of seconds of work) to hold the worker while the burst arrives
    long = "This is a long message that keeps the synthesis worker busy for a while. " * 60
    probe.publish(f"{PREFIX}/say", json.dumps({"text": long, "id": "busy", "priority": "low"}))
    probe.wait_for(lambda: "started" in probe.states("busy"), 60, "busy started")
    probe.publish_many(f"{PREFIX}/say", [json.dumps({"text": f"Short {i}.", "id": f"f{i}"}) for i in range(12)])
    probe.wait_for(lambda: all(probe.statuses(f"f{i}") for i in range(12)), 60, "a status for each")
    assert "done" not in probe.states("busy"), "the long message finished before the burst was answered"
    dropped = [f"f{i}" for i in range(12) if probe.states(f"f{i}")[0] == "dropped"]
    assert len(dropped) == 8, [probe.states(f"f{i}") for i in range(12)]  # busy + 4 waiting fill the 5 places
    reason = probe.statuses(dropped[0])[0].reason or ""
    assert "spool is full (5 messages waiting, queue.max_queued)" in reason
    log = daemon.log(whole=True)
    assert all(re.search(rf"ERROR .*dropped message {m}: spool is full", log) for m in dropped), log[-2000:]
    assert probe.final("busy", timeout=300).state == "done"
    for i in range(12):
        if f"f{i}" not in dropped:
            assert probe.final(f"f{i}", timeout=120).state == "done"


def test_broker_killed_with_messages_in_flight_loses_nothing(broker: Mosquitto, state_dir: Path,
                                                            daemon_process: Callable, probe_factory: Callable) -> None:
    probe: Probe = probe_factory(broker, [f"{PREFIX}/status/#", f"{PREFIX}/availability"], client_id="probe-kill",
                                 persistent=True)
    daemon = daemon_process("brokerkill", daemon_settings(state_dir, broker))
    probe.wait_online(PREFIX)
    ids = [f"q{i}" for i in range(30)]
    text = "Message {} of the broker test: the kitchen window is open and the heating is on, close it please."
    probe.publish_many(f"{PREFIX}/say", [json.dumps({"text": text.format(i), "id": m}) for i, m in enumerate(ids)])
    probe.wait_for(lambda: all("queued" in probe.states(m) for m in ids), 60, "all 30 spooled")
    probe.wait_for(lambda: any("done" in probe.states(m) for m in ids), 60, "the first done")
    in_flight = 30 - sum(spoken_in_log(daemon).values())
    broker.kill()  # SIGKILL: no goodbye, no final save
    time.sleep(2.0)
    broker.start()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and sum(spoken_in_log(daemon).values()) < 30:
        time.sleep(0.5)
    counts = spoken_in_log(daemon)
    assert all(counts[m] == 1 for m in ids), {m: counts[m] for m in ids if counts[m] != 1}
    assert_clean_log(daemon)
    print(f"broker killed with {in_flight} of 30 messages not yet spoken; all spoken once")


def test_memory_after_5000_messages_stays_within_5_mb_of_its_size_after_500(
        broker: Mosquitto, state_dir: Path, daemon_process: Callable, probe_factory: Callable) -> None:
    probe: Probe = probe_factory(broker, [f"{PREFIX}/status/#", f"{PREFIX}/availability"])
    daemon = daemon_process("memory", daemon_settings(state_dir, broker, logging={"level": "INFO", "journald": False}))
    probe.wait_online(PREFIX)

    def send(lo: int, hi: int) -> None:
        probe.publish_many(f"{PREFIX}/say", [json.dumps({"text": f"Value {i % 97}.", "id": f"m{i}"})
                                             for i in range(lo, hi)])
        probe.wait_for(lambda: probe.states(f"m{hi - 1}")[-1:] == ["done"], 900, f"m{hi - 1} done")

    send(0, 500)
    after_500 = daemon.rss_kib()
    samples = [after_500]
    for lo in range(500, 5000, 500):
        send(lo, lo + 500)
        samples.append(daemon.rss_kib())
    growth = samples[-1] - after_500
    print(f"RSS after each 500 messages (KiB): {samples}; growth {growth} KiB")
    assert growth <= 5 * 1024, samples
    assert_clean_log(daemon)
