"""sd_notify over a real unix datagram socket, and the journald/stderr logging choice."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import pytest

from jetvox.device.config import LoggingConfig
from jetvox.device.daemon.logs import setup_logging, under_systemd
from jetvox.device.daemon.notify import Notifier


def bound_socket(tmp_path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(2)
    return sock


def test_ready_status_watchdog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("systemd.daemon")
    sock = bound_socket(tmp_path)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    n = Notifier()
    assert n.enabled and n.watchdog_s == 2.0 and n.ping_interval_s == 1.0
    n.ready("serving")
    assert sock.recv(4096) == b"READY=1\nSTATUS=serving"
    n.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    n.watchdog()  # rate-limited: a quarter of the ping interval
    n.status("x")
    assert sock.recv(4096) == b"STATUS=x"
    n.stopping()
    assert sock.recv(4096).startswith(b"STOPPING=1")
    n.close()
    sock.close()


def test_abstract_socket_address(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("systemd.daemon")
    name = f"jetvox-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    Notifier().ready()
    assert sock.recv(100) == b"READY=1"
    sock.close()


def test_noop_without_systemd_and_watchdog_for_another_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(var, raising=False)
    n = Notifier()
    assert not n.enabled and n.watchdog_s is None and not n.send(ready="1")
    n.watchdog()
    monkeypatch.setenv("WATCHDOG_USEC", "1000")
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert Notifier().watchdog_s is None


@pytest.fixture
def restore_root_logger():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def test_journald_under_systemd_else_stderr(restore_root_logger: None) -> None:
    assert under_systemd({"INVOCATION_ID": "abc"}) and under_systemd({"JOURNAL_STREAM": "8:1"})
    assert not under_systemd({})
    h = setup_logging(LoggingConfig(level="WARNING"), env={})
    assert type(h) is logging.StreamHandler and logging.getLogger().level == logging.WARNING
    journal = pytest.importorskip("systemd.journal")
    h = setup_logging(LoggingConfig(), env={"INVOCATION_ID": "abc"})
    assert isinstance(h, journal.JournalHandler)
    h = setup_logging(LoggingConfig(journald=False), env={"INVOCATION_ID": "abc"})
    assert type(h) is logging.StreamHandler
