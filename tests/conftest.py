"""Shared fixtures: a real mosquitto on a free port (restartable), MQTT probes, daemons in-process and as processes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest

# Provisioning in tests stops after the FP32 split unless a test asks for INT8 itself (test_int8 and
# test_calibration do, with their own settings): the full INT8 chain with its gate takes ~5 minutes.
os.environ.setdefault("JETVOX_INT8", "off")

from devtools.mosquitto import BrokerError, Mosquitto
from jetvox.device import config
from tests.mqttfix import DaemonProcess, Probe


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A private mosquitto (127.0.0.1, persistence on) for one test; ``broker.restart()`` keeps the port."""
    try:
        b = Mosquitto(tmp_path / "broker").start()
    except BrokerError as exc:
        pytest.skip(f"no mosquitto: {exc}")
    try:
        yield b
    finally:
        b.kill()


@pytest.fixture(scope="session")
def voice_state() -> Path:
    """A state dir with the provisioned default voice (shared by the whole test process)."""
    from tests.voicefix import provisioned_state_dir

    return provisioned_state_dir()


@pytest.fixture
def state_dir(voice_state: Path, tmp_path: Path) -> Path:
    """A state dir of this test's own (audio cache, finished-ids journal) sharing the provisioned voice."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "voices").symlink_to(voice_state / "voices", target_is_directory=True)
    return state


@pytest.fixture
def probe_factory() -> Iterator[Callable[..., Probe]]:
    """Make probes: ``probe_factory(broker, ["jetvox/t/#"], persistent=False)``; closed after the test."""
    made: list[Probe] = []

    def make(broker: Mosquitto, topics: list[str], **kwargs: Any) -> Probe:
        p = Probe(broker, topics, **kwargs)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


@pytest.fixture
def inproc_daemon(tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], Any]]:
    """Start a Daemon in this process from a settings mapping; stopped after the test."""
    from jetvox.device.daemon.service import Daemon

    started: list[Daemon] = []

    def start(settings: dict[str, Any]) -> Daemon:
        cfg = config.from_mapping(settings)
        d = Daemon(cfg)
        started.append(d)
        assert d.start(connect_timeout=30), "daemon did not connect to the broker"
        return d

    yield start
    for d in started:
        d.stop()


@pytest.fixture
def daemon_process(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """Start ``jetvox serve`` subprocesses: ``daemon_process(name, settings, env=None)``; killed after the test."""
    made: list[DaemonProcess] = []

    def start(name: str, settings: dict[str, Any], env: Optional[dict[str, str]] = None,
              args: tuple[str, ...] = ()) -> DaemonProcess:
        d = DaemonProcess(tmp_path / name, settings, env, args).start()
        made.append(d)
        return d

    yield start
    for d in made:
        d.stop()
