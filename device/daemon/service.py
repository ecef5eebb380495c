"""`jetvox serve`: the resident daemon's lifecycle: load, connect, READY, serve, stop cleanly on a signal."""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Optional

from jetvox.device.config import Config
from jetvox.device.daemon.cache import AudioCache
from jetvox.device.daemon.dedupe import DoneIds
from jetvox.device.daemon.intake import MqttIntake
from jetvox.device.daemon.jobs import JobBook
from jetvox.device.daemon.logs import setup_logging
from jetvox.device.daemon.messages import Topics
from jetvox.device.daemon.notify import Notifier
from jetvox.device.daemon.rules import RuleEngine
from jetvox.device.daemon.work_queue import WorkQueue
from jetvox.device.daemon.worker import SynthesisWorker
from jetvox.device.synthesis.synthesizer import Synthesizer, synthesizer_for
from jetvox.device.voice.loader import Voice, load_voice

log = logging.getLogger(__name__)


def device_id_of(cfg: Config) -> str:
    """The configured device id, else the host name (dots and topic wildcards replaced)."""
    if cfg.mqtt.device_id:
        return cfg.mqtt.device_id
    host = socket.gethostname().split(".")[0] or "jetvox"
    return "".join("-" if c in "/+#" else c for c in host)


def topics_of(cfg: Config) -> Topics:
    """The device's topic names from the configuration."""
    prefix = (cfg.mqtt.prefix or f"jetvox/{device_id_of(cfg)}").rstrip("/")
    return Topics(prefix=prefix, shared_group=cfg.mqtt.shared_group, site_id=cfg.mqtt.site_id)


class Daemon:
    """Everything ``jetvox serve`` runs; also started in-process by the MQTT benchmark and tests."""

    def __init__(self, cfg: Config, notifier: Notifier | None = None, run_dir: Path | None = None) -> None:
        """Prepare (nothing is loaded or connected before ``start``).

        Args:
            cfg: the loaded configuration.
            notifier: sd_notify; default reads $NOTIFY_SOCKET.
            run_dir: where the finished-ids journal lives; default ``<state_dir>/daemon/<device_id>``.
        """
        self.cfg = cfg
        self.device_id = device_id_of(cfg)
        self.topics = topics_of(cfg)
        self.notifier = notifier or Notifier()
        self.run_dir = run_dir or cfg.state_dir / "daemon" / self.device_id
        self.stop_event = threading.Event()
        """Set to stop; the main thread then calls ``stop``."""
        self.voice: Optional[Voice] = None
        self.synth: Optional[Synthesizer] = None
        self.intake: Optional[MqttIntake] = None
        self.worker: Optional[SynthesisWorker] = None
        self.queue = WorkQueue(cfg.queue.max_queued, cfg.queue.alert_cuts_off)
        self._done: Optional[DoneIds] = None

    @property
    def client_id(self) -> str:
        return self.cfg.mqtt.client_id or f"jetvox-{self.device_id}"

    def start(self, connect_timeout: float | None = None) -> bool:
        """Load the voice, connect, start the worker, then send READY=1.

        Args:
            connect_timeout: give up waiting for the broker after this many seconds (None: wait, retrying).

        Returns False if stopped (or timed out) before the broker connected.
        """
        cfg = self.cfg
        self.notifier.status("loading voice")
        t0 = time.monotonic()
        self.voice = load_voice(cfg)
        self.synth = synthesizer_for(self.voice, cfg)
        log.info("voice %s ready in %.1f s", self.voice.name, time.monotonic() - t0)
        cache = None
        if cfg.cache.enabled and cfg.cache.max_mb > 0:
            cache = AudioCache(cfg.state_dir / "cache" / "audio", cfg.cache.max_mb * 1024 * 1024)
        self._done = DoneIds(self.run_dir / "done-ids.jsonl", cfg.queue.dedupe_ids)
        rules = RuleEngine(cfg.rules)
        book = JobBook(cfg, self.topics, self.queue, self._done, rules)
        subscriptions = [self.topics.say_filter, *([Topics.HERMES_SAY] if cfg.mqtt.hermes else []), *rules.filters]
        self.intake = MqttIntake(
            cfg.mqtt, self.client_id, self.topics.availability, subscriptions, book.accept,
            receive_maximum=cfg.queue.max_queued + 1,
        )
        book.attach(self.intake)
        # The worker runs (and pings the watchdog) from here on; systemd arms the watchdog after READY.
        self.worker = SynthesisWorker(cfg, self.synth, self.queue, book, self.topics, self.notifier, cache,
                                      self.stop_event)
        self.worker.start()
        while not self.worker.warmed_up.wait(0.5):  # the first message then finds warm engines
            if self.stop_event.is_set():
                return False
        self.notifier.status(f"connecting to {cfg.mqtt.broker}")
        self.intake.start()
        deadline = None if connect_timeout is None else time.monotonic() + connect_timeout
        extended = 0.0
        while not self.intake.wait_connected(1.0):
            if self.stop_event.is_set() or (deadline is not None and time.monotonic() > deadline):
                return False
            if time.monotonic() - extended >= 10.0:  # waiting for the broker is not a hung start-up
                extended = time.monotonic()
                self.notifier.send(extend_timeout_usec="30000000",
                                   status=f"waiting for the broker {cfg.mqtt.broker}: {self.intake.last_error or ''}")
        log.info("serving %s/say as %s (output %s)", self.topics.prefix, self.client_id, cfg.output)
        self.notifier.ready(status=f"ready: voice {self.voice.name}, broker {cfg.mqtt.broker}, prefix {self.topics.prefix}")
        return True

    def stop(self, timeout: float = 10.0) -> None:
        """Stop: the message being spoken and those queued stay unacknowledged at the broker."""
        self.stop_event.set()
        self.notifier.stopping()
        left = self.queue.close()
        if left:
            log.info("%d queued message(s) stay at the broker for the next start", len(left))
        if self.worker is not None and self.worker.is_alive():
            self.worker.join(timeout)
            if self.worker.is_alive():
                log.warning("the synthesis worker did not stop within %.0f s", timeout)
        if self.intake is not None:
            self.intake.stop()
        if self.synth is not None:
            self.synth.close()
        if self.voice is not None:
            self.voice.close()
        if self._done is not None:
            self._done.close()
        log.info("stopped")

    @property
    def failed(self) -> bool:
        """True if the synthesis worker crashed."""
        return self.worker is not None and self.worker.crashed is not None


def run_daemon(cfg: Config) -> int:
    """Run until SIGTERM or SIGINT; the process exit code (non-zero makes systemd restart it)."""
    setup_logging(cfg.logging)
    daemon = Daemon(cfg)

    def on_signal(signum: int, frame: object) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        daemon.stop_event.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        daemon.start()
        while not daemon.stop_event.wait(1.0):
            pass
    finally:
        daemon.stop()
        daemon.notifier.close()
    return 1 if daemon.failed else 0
