"""The paho connection on its own: manual acks and redelivery, TLS with client certificates and a password."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

from devtools.mosquitto import Mosquitto
from jetvox.device.config import MqttConfig
from jetvox.device.daemon.intake import Delivery, MqttIntake


class Inbox:
    def __init__(self) -> None:
        self.items: list[Delivery] = []
        self.cond = threading.Condition()

    def __call__(self, d: Delivery) -> None:
        with self.cond:
            self.items.append(d)
            self.cond.notify_all()

    def wait(self, n: int, timeout: float = 10) -> list[Delivery]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.items) >= n, timeout), f"got {len(self.items)} of {n}"
            return list(self.items)


def intake(cfg: MqttConfig, inbox: Inbox, client_id: str = "jetvox-t") -> MqttIntake:
    i = MqttIntake(cfg, client_id, "t/availability", ["t/say"], inbox)
    i.start()
    assert i.wait_connected(10), i.last_error
    return i


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_unacked_messages_come_back_acked_ones_do_not(broker: Mosquitto, probe_factory: Callable,
                                                      protocol: str) -> None:
    cfg = MqttConfig(broker=broker.url, protocol=protocol, reconnect_min_s=0.2, reconnect_max_s=1)
    probe = probe_factory(broker, ["t/#"])
    box = Inbox()
    conn = intake(cfg, box)
    probe.wait_for(lambda: any(m.payload == b"online" for m in probe.topic_messages("t/availability")), 10)
    for text in (b"one", b"two", b"three"):
        probe.publish("t/say", text)
    got = box.wait(3)
    assert [d.payload for d in got] == [b"one", b"two", b"three"] and all(d.qos == 1 for d in got)
    assert conn.ack(got[0])
    mid = conn.publish("t/status/x", b"{}")
    assert conn.wait_published([mid], timeout=5)  # the PUBACK for "one" went out before this publish
    broker.restart()  # the session (persisted) hands back what was not acknowledged
    again = box.wait(5)[3:]
    assert sorted(d.payload for d in again) == [b"three", b"two"]
    assert all(d.generation > got[1].generation for d in again)
    assert not conn.ack(got[1])  # a delivery from the old connection is never acked on the new one
    assert all(conn.ack(d) for d in again)
    mid = conn.publish("t/status/x", b"{}")
    assert conn.wait_published([mid], timeout=5)
    conn.stop()
    probe.wait_for(lambda: probe.topic_messages("t/availability")[-1].payload == b"offline", 5, "offline")
    later = Inbox()
    conn = intake(cfg, later)  # same client id, persistent session: nothing is left to deliver
    time.sleep(1.0)
    assert later.items == []
    conn.stop()


def test_the_connection_turns_nagle_off(broker: Mosquitto) -> None:
    """A status then audio chunks in quick succession: with Nagle on, each chunk waited for the broker's delayed
    ACK of the write before it (make bench-mqtt: first chunk 87 ms with it, 17 ms without, on all three sockets)."""
    conn = intake(MqttConfig(broker=broker.url), Inbox())
    try:
        sock = conn._client.socket()
        assert sock is not None and sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        conn.stop()


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture
def tls_broker(tmp_path: Path) -> Mosquitto:
    if subprocess.run(["which", "openssl"], capture_output=True).returncode != 0:
        pytest.skip("openssl is not installed")
    d = tmp_path / "pki"
    d.mkdir()
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=jetvox test CA",
            "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
                "-out", f"{name}.csr", cwd=d)
        (d / f"{name}.ext").write_text(ext + "\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=d)
    passwd = d / "passwd"
    passwd.write_text("")
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), "jetvox", "s3cret"], check=True, timeout=30)
    passwd.chmod(0o600)
    options = (
        f"cafile {d / 'ca.pem'}", f"certfile {d / 'server.pem'}", f"keyfile {d / 'server.key'}",
        "require_certificate true", "allow_anonymous false", f"password_file {passwd}",
    )
    b = Mosquitto(tmp_path / "broker", options=options).start()
    b.pki = d  # type: ignore[attr-defined]
    yield b
    b.kill()


def test_tls_client_certificate_and_password(tls_broker: Mosquitto, probe_factory: Callable, tmp_path: Path) -> None:
    pki: Path = tls_broker.pki  # type: ignore[attr-defined]
    (tmp_path / "password").write_text("s3cret\n")
    cfg = MqttConfig(broker=f"mqtts://127.0.0.1:{tls_broker.port}", ca_certs=pki / "ca.pem",
                     certfile=pki / "client.pem", keyfile=pki / "client.key", username="jetvox",
                     password_file=tmp_path / "password")
    probe = probe_factory(tls_broker, ["t/#"], tls=(str(pki / "ca.pem"), str(pki / "client.pem"),
                                                    str(pki / "client.key")), login=("jetvox", "s3cret"))
    box = Inbox()
    conn = intake(cfg, box)
    probe.publish("t/say", b"over TLS")
    assert box.wait(1)[0].payload == b"over TLS"
    conn.stop()
    wrong = MqttIntake(MqttConfig(broker=cfg.broker, ca_certs=cfg.ca_certs, certfile=cfg.certfile,
                                  keyfile=cfg.keyfile, username="jetvox", password="nope", reconnect_min_s=0.2,
                                  reconnect_max_s=1), "jetvox-wrong", "t/availability", ["t/say"], Inbox())
    wrong.start()
    assert not wrong.wait_connected(2)
    assert "refused" in (wrong.last_error or "")
    wrong.stop()


def failing(cfg: MqttConfig, client_id: str = "jetvox-fail") -> str:
    """Connect with ``cfg``, which must fail: the reason the intake gives."""
    conn = MqttIntake(cfg, client_id, "t/availability", ["t/say"], Inbox())
    conn.start()
    try:
        assert not conn.wait_connected(3)
        deadline = time.monotonic() + 10
        while conn.last_error is None and time.monotonic() < deadline:
            time.sleep(0.1)
        return conn.last_error or ""
    finally:
        conn.stop()


def test_tls_and_login_failures_name_their_cause(tls_broker: Mosquitto, tmp_path: Path) -> None:
    pki: Path = tls_broker.pki  # type: ignore[attr-defined]
    other = tmp_path / "other-ca"
    other.mkdir()
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=some other CA",
            "-keyout", "ca.key", "-out", "ca.pem", cwd=other)
    common = dict(certfile=pki / "client.pem", keyfile=pki / "client.key", username="jetvox", password="s3cret",
                  reconnect_min_s=0.2, reconnect_max_s=1.0)
    wrong_ca = failing(MqttConfig(broker=f"mqtts://127.0.0.1:{tls_broker.port}", ca_certs=other / "ca.pem",
                                  **common))  # type: ignore[arg-type]
    assert f"cannot connect to 127.0.0.1:{tls_broker.port}: TLS: certificate verify failed" in wrong_ca, wrong_ca
    assert "unknown CA" in wrong_ca, wrong_ca
    # the server's certificate names 127.0.0.1 only
    wrong_name = failing(MqttConfig(broker=f"mqtts://localhost:{tls_broker.port}", ca_certs=pki / "ca.pem",
                                    **common))  # type: ignore[arg-type]
    assert "host name mismatch" in wrong_name, wrong_name
    wrong_password = failing(MqttConfig(broker=f"mqtts://127.0.0.1:{tls_broker.port}", ca_certs=pki / "ca.pem",
                                        **{**common, "password": "nope"}))  # type: ignore[arg-type]
    assert "broker refused the connection" in wrong_password and "password" in wrong_password.lower(), wrong_password


def test_unreachable_broker_names_host_port_and_the_socket_error() -> None:
    from devtools.mosquitto import free_port

    port = free_port()  # nothing listens there
    reason = failing(MqttConfig(broker=f"mqtt://127.0.0.1:{port}", reconnect_min_s=0.2, reconnect_max_s=1.0))
    assert reason.startswith(f"cannot connect to 127.0.0.1:{port}: Connection refused (errno 111)"), reason


def test_a_refused_subscription_is_an_error_and_not_ready(broker: Mosquitto,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    # mosquitto 2.0.11 grants every subscription and applies its ACL on delivery, so a real refusal cannot be had
    # from it: the SUBACK is paho's own object with the code brokers that check (0x87, Not authorized) send.
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    cfg = MqttConfig(broker=broker.url, username="reader", reconnect_min_s=0.2, reconnect_max_s=30.0)
    conn = MqttIntake(cfg, "jetvox-acl", "t/availability", ["t/say"], Inbox())
    conn._up, conn._sub_mid = True, 7
    refused = ReasonCode(PacketTypes.SUBACK, identifier=0x87)
    conn._on_subscribe(conn._client, None, 7, [refused], None)
    assert not conn.connected.is_set() and not conn.ever_connected.is_set()
    assert conn.last_error == "broker refused the subscription to t/say (Not authorized)"
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("check the broker's ACL for user reader" in m for m in errors), errors
    granted = ReasonCode(PacketTypes.SUBACK, identifier=1)
    conn._on_subscribe(conn._client, None, 7, [granted], None)
    assert conn.connected.is_set()
    conn._stopping = True
