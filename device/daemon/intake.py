"""The paho-mqtt 2.x connection: persistent QoS 1 session, manual acknowledgements, availability, publishing."""

from __future__ import annotations

import logging
import socket
import ssl
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from jetvox.device.config import MqttConfig, broker_address

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    """One received MQTT message, with what is needed to acknowledge it later."""

    topic: str
    """The topic it was published to."""
    payload: bytes
    """The raw payload."""
    mid: int
    """Packet id on the connection it arrived on."""
    qos: int
    """Delivery QoS (0 needs no ack)."""
    retain: bool
    """True for a retained message replayed on subscription."""
    dup: bool
    """True when the broker marks it as a resend."""
    generation: int
    """Which connection it arrived on; an ack is only sent on that same connection."""
    received: float
    """Monotonic arrival time."""


def _quiet_paho(record: logging.LogRecord) -> bool:
    """Drop paho's "Client is not connected" ERROR after each failed attempt: ``_on_connect_fail`` names the cause."""
    return not str(record.msg).startswith("Client is not connected")


def _paho_client(cfg: MqttConfig, client_id: str, availability_topic: str, v5: bool, tls: bool) -> mqtt.Client:
    """A paho client with manual acks, a persistent session, the last will, credentials and TLS from ``cfg``."""
    kwargs: dict[str, object] = {
        "callback_api_version": mqtt.CallbackAPIVersion.VERSION2,
        "client_id": client_id,
        "protocol": mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        "manual_ack": True,
    }
    if not v5:
        kwargs["clean_session"] = False
    client = mqtt.Client(**kwargs)  # type: ignore[arg-type]
    paho_log = logging.getLogger(__name__ + ".paho")
    paho_log.addFilter(_quiet_paho)
    client.enable_logger(paho_log)
    client.reconnect_delay_set(cfg.reconnect_min_s, cfg.reconnect_max_s)  # type: ignore[arg-type]
    client.will_set(availability_topic, b"offline", qos=1, retain=True)
    if cfg.username is not None:
        password = cfg.password
        if cfg.password_file is not None:
            password = cfg.password_file.read_text(encoding="utf-8").rstrip("\r\n")
        client.username_pw_set(cfg.username, password)
    if tls:
        client.tls_set(
            ca_certs=str(cfg.ca_certs) if cfg.ca_certs else None,
            certfile=str(cfg.certfile) if cfg.certfile else None,
            keyfile=str(cfg.keyfile) if cfg.keyfile else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
        if cfg.tls_insecure:
            client.tls_insecure_set(True)
    return client


def no_delay(client: mqtt.Client) -> None:
    """Turn Nagle's algorithm off on the client's TCP socket: the daemon writes a status and then audio chunks in
    quick succession, and Nagle held each chunk back until the broker's delayed ACK of the write before it (about
    40 ms a time). Websocket transports (no ``setsockopt``) are left as they are."""
    sock = client.socket()
    setsockopt = getattr(sock, "setsockopt", None)
    if setsockopt is None:
        return
    try:
        setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError as exc:  # not a TCP socket after all
        log.debug("TCP_NODELAY not set: %s", exc)


class MqttIntake:
    """One broker connection; ``on_delivery`` runs on paho's network thread and must not block."""

    def __init__(
        self,
        cfg: MqttConfig,
        client_id: str,
        availability_topic: str,
        subscriptions: Iterable[str],
        on_delivery: Callable[[Delivery], None],
        receive_maximum: int = 100,
        on_ready: Optional[Callable[[], None]] = None,
    ) -> None:
        """Prepare the client; nothing connects before ``start``.

        Args:
            cfg: broker address, protocol, credentials, TLS, session and backoff settings.
            client_id: stable client id (the broker keeps the session, and unacked messages, under it).
            availability_topic: gets a retained ``online`` on connect and ``offline`` as the last will.
            subscriptions: topic filters subscribed with QoS 1 on every connect.
            on_delivery: called for every message; it must return quickly and ack later with ``ack``.
            receive_maximum: MQTT 5 limit on unacknowledged messages the broker sends us at once.
            on_ready: called on paho's thread after every successful subscription (``online`` is out).
        """
        self._cfg = cfg
        self._availability = availability_topic
        self._subscriptions = tuple(dict.fromkeys(subscriptions))
        self._on_delivery = on_delivery
        self._on_ready = on_ready
        self._v5 = cfg.protocol == "5"
        self._tls, self._host, self._port = broker_address(cfg.broker)
        self._generation = 0
        self._ack_lock = threading.Lock()
        self._pub_cond = threading.Condition()
        self._pending: set[int] = set()
        self._acked: set[int] = set()
        self._early: OrderedDict[int, None] = OrderedDict()
        self._untracked: set[int] = set()
        self._stopping = False
        self._sub_mid = -1
        self._up = False
        self.connected = threading.Event()
        """Set while a connection is up and subscribed (after the SUBACK)."""
        self.ever_connected = threading.Event()
        """Set after the first successful connection."""
        self.last_error: Optional[str] = None
        """Why the last connection attempt or connection failed."""

        self._client_id = client_id
        self._client = _paho_client(cfg, client_id, availability_topic, self._v5, self._tls)
        self._receive_maximum = max(1, min(receive_maximum, 65535))
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_publish = self._on_publish
        self._client.on_subscribe = self._on_subscribe
        self._client.on_connect_fail = self._on_connect_fail

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background (retrying with backoff) and start paho's network thread."""
        log.info(
            "connecting to %s:%d (MQTT %s%s) as %s",
            self._host, self._port, self._cfg.protocol, ", TLS" if self._tls else "", self._client_id,
        )
        if self._v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self._cfg.session_expiry_s
            props.ReceiveMaximum = self._receive_maximum
            self._client.connect_async(
                self._host, self._port, self._cfg.keepalive_s, clean_start=False, properties=props
            )
        else:
            self._client.connect_async(self._host, self._port, self._cfg.keepalive_s)
        self._client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        return self.connected.wait(timeout)

    def stop(self, timeout: float = 2.0) -> None:
        """Publish ``offline``, disconnect cleanly (the session and unacked messages stay), stop the thread."""
        self._stopping = True
        if self.connected.is_set():
            mid = self.publish(self._availability, b"offline", retain=True)
            self.wait_published([mid], timeout=timeout)
        self._client.disconnect()
        self._client.loop_stop()
        self.connected.clear()

    # -- paho callbacks (network thread) -----------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags,
                    reason_code: mqtt.ReasonCode, properties: Optional[Properties]) -> None:
        if reason_code.is_failure:
            hint = ""
            if str(reason_code) in ("Not authorized", "Bad user name or password"):
                hint = f" (check mqtt.username ({self._cfg.username or 'none given'}) and its password)"
            error = f"broker refused the connection: {reason_code}{hint}"
            level = logging.DEBUG if error == self.last_error else logging.ERROR
            self.last_error = error
            log.log(level, "%s (retrying)", error)
            return
        with self._ack_lock:
            self._generation += 1
        no_delay(client)
        self._up = True
        log.info("connected to %s:%d (session %s)", self._host, self._port,
                 "resumed" if flags.session_present else "new")
        self._subscribe(client)

    def _subscribe(self, client: mqtt.Client) -> None:
        if self._v5:
            # Retained messages are not replayed: a stale say or sensor reading is not spoken at start-up.
            opts = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)
            subs: list[tuple[str, object]] = [(t, opts) for t in self._subscriptions]
        else:
            subs = [(t, 1) for t in self._subscriptions]
        # "online" and ``connected`` wait for the SUBACK: from then on nothing published to us is missed.
        _, mid = client.subscribe(subs)  # type: ignore[arg-type]
        self._sub_mid = -1 if mid is None else mid

    def _on_connect_fail(self, client: mqtt.Client, userdata: object) -> None:
        # paho calls this inside its ``except OSError`` block: the exception it swallows is still current.
        exc = sys.exc_info()[1]
        reason = describe_connect_error(exc) if exc is not None else "unknown error"
        error = f"cannot connect to {self._host}:{self._port}: {reason}"
        level = logging.DEBUG if error == self.last_error else logging.ERROR  # once per cause, not per retry
        self.last_error = error
        log.log(level, "%s (retrying with backoff up to %g s)", error, self._cfg.reconnect_max_s)

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: mqtt.DisconnectFlags,
                       reason_code: mqtt.ReasonCode, properties: Optional[Properties]) -> None:
        with self._ack_lock:
            self._generation += 1  # acks for messages of the old connection must not go out on the next one
        self.connected.clear()
        was_up, self._up = self._up, False
        if self._stopping:
            log.info("disconnected from the broker")
        elif not was_up:  # a refused or failed attempt: its reason was logged already
            log.debug("connection attempt closed: %s", reason_code)
        else:
            self.last_error = f"connection lost: {reason_code}"
            log.warning("%s; reconnecting with backoff (%g to %g s)", self.last_error,
                        self._cfg.reconnect_min_s, self._cfg.reconnect_max_s)

    def _on_subscribe(self, client: mqtt.Client, userdata: object, mid: int,
                      reason_codes: list[mqtt.ReasonCode], properties: Optional[Properties]) -> None:
        if mid != self._sub_mid:
            return
        refused = [f"{topic} ({rc})" for topic, rc in zip(self._subscriptions, reason_codes) if rc.is_failure]
        if refused:  # e.g. an ACL that lets this login connect but not read the say topic
            self.last_error = f"broker refused the subscription to {', '.join(refused)}"
            log.error("%s: not ready; check the broker's ACL for user %s (retrying in %g s)",
                      self.last_error, self._cfg.username or "(anonymous)", self._cfg.reconnect_max_s)
            timer = threading.Timer(self._cfg.reconnect_max_s, self._resubscribe, args=(mid,))
            timer.daemon = True
            timer.start()
            return
        self.publish(self._availability, b"online", retain=True, track=False)
        self.last_error = None
        if self._on_ready is not None:
            try:
                self._on_ready()
            except Exception:  # discovery must not keep the daemon from serving
                log.exception("publishing after the connection failed")
        self.connected.set()
        self.ever_connected.set()

    def _resubscribe(self, mid: int) -> None:
        """Try a refused subscription again (the ACL may have been fixed), on the same connection."""
        if self._stopping or not self._up or mid != self._sub_mid:
            return
        self._subscribe(self._client)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._ack_lock:
            generation = self._generation
        delivery = Delivery(
            topic=msg.topic, payload=bytes(msg.payload), mid=msg.mid, qos=msg.qos,
            retain=bool(msg.retain), dup=bool(msg.dup), generation=generation, received=time.monotonic(),
        )
        try:
            self._on_delivery(delivery)
        except Exception:  # a bug must not wedge the message in flight forever
            log.exception("failed to handle a message on %s; acknowledging it", delivery.topic)
            self.ack(delivery)

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int,
                    reason_code: mqtt.ReasonCode, properties: Optional[Properties]) -> None:
        if reason_code.is_failure:
            log.warning("broker refused publish %d: %s", mid, reason_code)
        with self._pub_cond:
            if mid in self._untracked:
                self._untracked.discard(mid)
            elif mid in self._pending:
                self._pending.discard(mid)
                self._acked.add(mid)
                self._pub_cond.notify_all()
            else:  # PUBACK came before publish() returned the mid
                self._early[mid] = None
                while len(self._early) > 1024:
                    self._early.popitem(last=False)

    # -- used by the worker ------------------------------------------------------------------------

    def ack(self, delivery: Delivery) -> bool:
        """Acknowledge ``delivery`` to the broker; False if its connection is gone (it will be resent)."""
        if delivery.qos == 0:
            return True
        with self._ack_lock:
            if delivery.generation != self._generation:  # bumped on every connect and disconnect
                return False
            rc = self._client.ack(delivery.mid, delivery.qos)
        return rc == mqtt.MQTT_ERR_SUCCESS

    def publish(self, topic: str, payload: bytes | str, retain: bool = False, track: bool = True) -> int:
        """Publish with QoS 1 (queued by paho while disconnected); the mid.

        Args:
            topic: where to.
            payload: what.
            retain: set the retain flag.
            track: remember the broker's PUBACK for ``wait_published``, which must then be called with the mid.
        """
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            raise RuntimeError(f"paho's outgoing queue refused a message for {topic}")
        with self._pub_cond:
            self._acked.discard(info.mid)  # mids wrap around at 65535: nothing stale may answer for this one
            if info.mid in self._early:
                del self._early[info.mid]
                if track:
                    self._acked.add(info.mid)
            elif track:
                self._pending.add(info.mid)
            else:
                self._untracked.add(info.mid)
        return info.mid

    def wait_published(
        self,
        mids: Iterable[int],
        timeout: float | None = None,
        tick: Callable[[], None] | None = None,
        stop: threading.Event | None = None,
    ) -> bool:
        """Wait until the broker acknowledged every mid (they are resent across reconnects).

        Args:
            mids: from ``publish``.
            timeout: give up after this many seconds; None waits as long as it takes.
            tick: called about twice a second while waiting (the watchdog ping).
            stop: give up when set.
        """
        want = set(mids)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._pub_cond:
                done = want & self._acked
                self._acked -= done
                want -= done
                if not want:
                    return True
                if (stop is not None and stop.is_set()) or (deadline is not None and time.monotonic() >= deadline):
                    for mid in want & self._pending:  # nobody waits for these any more
                        self._pending.discard(mid)
                        self._untracked.add(mid)
                    return False
                self._pub_cond.wait(0.5)
            if tick is not None:
                tick()

    @property
    def client_id(self) -> str:
        return self._client_id


def describe_connect_error(exc: BaseException) -> str:
    """Why a connection attempt failed, in words an operator can act on (TLS causes named)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or str(exc)
        if "hostname" in detail.lower() or "ip address mismatch" in detail.lower():
            return f"TLS: host name mismatch: {detail} (the certificate is for another name)"
        if "issuer" in detail.lower() or "self-signed" in detail.lower() or "unknown ca" in detail.lower():
            return f"TLS: certificate verify failed: {detail} (unknown CA: check mqtt.ca_certs)"
        return f"TLS: certificate verify failed: {detail}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name: {exc.strerror or exc}"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} (errno {exc.errno})"
    return f"{type(exc).__name__}: {exc}"
