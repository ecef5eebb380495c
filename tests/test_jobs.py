"""Every payload answered: 10,000 fuzzed payloads and the committed hostile corpus against a daemon, repeats."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools.mosquitto import Mosquitto
from tests.hostile import SAY, SENSOR
from tests.mqttfix import Probe, daemon_settings

pytestmark = pytest.mark.slow

PREFIX = "jetvox/test"
FIELDS = ("text", "id", "priority", "output", "ttl_s", "volume", "length_scale", "ssml", "other")
DAEMON_FIELDS = tuple(f for f in FIELDS if f != "output")
"""At the daemon, no fuzzed ``output``: a valid ``speaker`` one would rightly wait for a sound device (none here)
until its TTL; the parser itself is fuzzed with every field below."""
N_FUZZ = 10_000

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**300, max_value=10**320),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(["low", "normal", "high", "alert", "speaker", "mqtt", "both", "", " ", "x/y", "#"]),
)
_json = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                     max_leaves=12)
def payloads(fields: tuple[str, ...]) -> st.SearchStrategy[bytes]:
    """Raw bytes, plain text, JSON objects of the say fields with any JSON values, and mutations of them."""
    objects = st.dictionaries(st.sampled_from(fields), _json, max_size=7).map(
        lambda d: json.dumps(d, allow_nan=True).encode())
    texty = st.dictionaries(st.sampled_from(fields), _json, max_size=6).flatmap(
        lambda d: st.text(max_size=24).map(lambda t: json.dumps({**d, "text": t}, allow_nan=True).encode()))
    mutated = st.tuples(objects, st.integers(0, 200), st.binary(min_size=1, max_size=4)).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1]:])
    return st.one_of(st.binary(max_size=64), st.text(max_size=40).map(str.encode), objects, texty, mutated)


PAYLOADS = payloads(DAEMON_FIELDS)


def fuzzed_payloads(n: int) -> list[bytes]:
    """``n`` payloads from the strategies above, the same every run (derandomised)."""
    out: list[bytes] = []

    @settings(max_examples=n, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(PAYLOADS)
    def collect(payload: bytes) -> None:
        out.append(payload)

    collect()
    while len(out) < n:  # hypothesis may stop early once it has seen enough distinct examples
        out.extend(out[: n - len(out)])
    return out[:n]


@settings(max_examples=3000, deadline=None, database=None, derandomize=True)
@given(payloads(FIELDS))
def test_the_parser_raises_nothing_but_payload_errors(payload: bytes) -> None:
    from jetvox.device.daemon.messages import PayloadError, SayRequest

    try:
        req = SayRequest.from_payload(payload)
    except PayloadError as exc:
        assert 0 < len(exc.reason) < 300
    else:
        assert req.text.strip() and req.output in (None, "speaker", "mqtt", "both")


def answers(probe: Probe) -> int:
    """Statuses that close a payload: error, done or dropped after queued, or a duplicate answer."""
    return sum(1 for s in probe.statuses() if s.duplicate or s.state in ("error", "done", "dropped"))


def test_every_fuzzed_and_hostile_payload_is_answered_without_a_traceback(
        broker: Mosquitto, state_dir: Path, daemon_process: Callable, probe_factory: Callable) -> None:
    probe: Probe = probe_factory(broker, [f"{PREFIX}/status/#", f"{PREFIX}/availability"])
    rule = {"topic": "sensors/+/temperature", "template": "It is {value} degrees.", "above": 30, "min_interval_s": 0}
    # A message that waited 1 ms has expired: valid fuzzed messages are answered (dropped) without the
    # synthesis of thousands of random strings; the valid one at the end carries its own ttl.
    settings_ = daemon_settings(state_dir, broker, queue={"default_ttl_s": 0.001},
                                logging={"level": "INFO", "journald": False}, rules=[rule])
    daemon = daemon_process("fuzz", settings_)
    probe.wait_online(PREFIX)
    payloads = fuzzed_payloads(N_FUZZ) + SAY
    t0 = time.monotonic()
    probe.publish_many(f"{PREFIX}/say", payloads, timeout=300)
    for reading in SENSOR:
        probe.publish("sensors/kitchen/temperature", reading)
    deadline = time.monotonic() + 900  # polled: a predicate under the probe's lock would stall its network thread
    while answers(probe) < len(payloads) and time.monotonic() < deadline:
        time.sleep(1.0)
    assert answers(probe) >= len(payloads), f"{answers(probe)} answers to {len(payloads)} payloads"
    elapsed = time.monotonic() - t0
    probe.publish(f"{PREFIX}/say", json.dumps({"text": "Still speaking after the fuzz.", "id": "after", "ttl_s": 0}))
    assert probe.final("after", timeout=120).state == "done"
    assert daemon.proc is not None and daemon.proc.poll() is None, "the daemon died"
    assert answers(probe) == len(payloads) + 1, (answers(probe), len(payloads))
    log = daemon.log(whole=True)
    assert "Traceback" not in log, log[log.index("Traceback") - 500:][:3000]
    corpus_errors = [s for s in probe.statuses() if s.state == "error" and "internal error" in (s.reason or "")]
    assert not corpus_errors, corpus_errors[:5]
    print(f"{len(payloads)} payloads answered in {elapsed:.0f} s")


def test_a_repeated_id_is_answered_as_a_duplicate(broker: Mosquitto, state_dir: Path, inproc_daemon: Callable,
                                                  probe_factory: Callable) -> None:
    probe: Probe = probe_factory(broker, [f"{PREFIX}/#"])
    inproc_daemon(daemon_settings(state_dir, broker))
    long = "The door has been open for five minutes, please close it before the heating runs on. " * 12
    probe.publish(f"{PREFIX}/say", json.dumps({"text": long, "id": "door-open"}))
    probe.wait_for(lambda: "started" in probe.states("door-open"), 60, "door-open started")
    probe.publish(f"{PREFIX}/say", json.dumps({"text": long, "id": "door-open"}))  # while it is spoken
    assert probe.final("door-open").state == "done"
    probe.publish(f"{PREFIX}/say", json.dumps({"text": long, "id": "door-open"}))  # after it was spoken
    probe.wait_for(lambda: len(probe.statuses("door-open")) >= 5, 30, "the answers to both repeats")
    statuses = probe.statuses("door-open")
    assert [s.state for s in statuses if not s.duplicate] == ["queued", "started", "done"], statuses
    repeats = [s for s in statuses if s.duplicate]
    # the first repeat came while it was spoken (queued, or done if the worker was quicker), the second after
    assert len(repeats) == 2 and repeats[0].state in ("queued", "done") and repeats[1].state == "done", repeats
    assert "already spoken" in (repeats[1].reason or "")
    chunks = probe.final("door-open").chunks
    assert len(probe.audio("door-open")) == chunks  # spoken once
