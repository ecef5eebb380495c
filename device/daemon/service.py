"""`jetvox serve`: the resident daemon's lifecycle: load, connect, READY, serve, stop cleanly on a signal."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import NoReturn, Optional

from jetvox.device.config import Config, ConfigError
from jetvox.device.daemon.announce import Announcements
from jetvox.device.daemon.cache import AudioCache
from jetvox.device.daemon.controls import Controls
from jetvox.device.daemon.homeassistant import HomeAssistant
from jetvox.device.daemon.intake import MqttIntake
from jetvox.device.daemon.jobs import JobBook
from jetvox.device.daemon.logs import setup_logging
from jetvox.device.daemon.messages import Topics
from jetvox.device.daemon.notify import Notifier
from jetvox.device.daemon.rules import RuleEngine
from jetvox.device.daemon.spool import Spool, import_journal
from jetvox.device.daemon.work_queue import WorkQueue
from jetvox.device.daemon.worker import SynthesisWorker
from jetvox.device.daemon.wyoming_server import WyomingServer
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
            run_dir: where the spool (accepted messages, finished ids) lives; default ``<state_dir>/daemon/<device_id>``.
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
        self.queue: Optional[WorkQueue] = None
        self.spool: Optional[Spool] = None
        self.home_assistant: Optional[HomeAssistant] = None
        self.wyoming: Optional[WyomingServer] = None
        self.controls: Optional[Controls] = None
        self.loading = False
        """True while the voice loads (a signal then interrupts the load)."""

    @property
    def client_id(self) -> str:
        return self.cfg.mqtt.client_id or f"jetvox-{self.device_id}"

    def open_spool(self) -> Spool:
        """Open the spool in the run directory (a clear error if it is not writable); replayed by the worker."""
        cfg = self.cfg
        _check_writable(self.run_dir)
        spool = Spool(self.run_dir / "spool.sqlite", cfg.queue.max_queued, cfg.queue.dedupe_ids)
        import_journal(spool, self.run_dir / "done-ids.jsonl")
        if cfg.mqtt.shared_group:  # a fleet member's unfinished messages are still the broker's: it resends them
            left = spool.drop_unacked()
            if left:
                log.info("%d unfinished fleet message(s) come back from the broker", left)
        if len(spool):
            log.info("replaying %d spooled message(s) from %s", len(spool), spool.path)
        return spool

    def start(self, connect_timeout: float | None = None) -> bool:
        """Open the spool, load the voice, connect, start the worker, then send READY=1.

        Args:
            connect_timeout: give up waiting for the broker after this many seconds (None: wait, retrying).

        Returns False if stopped (or timed out) before the broker connected.
        """
        cfg = self.cfg
        self.spool = self.open_spool()
        self.queue = WorkQueue(self.spool, cfg.queue.alert_cuts_off)
        self.notifier.status("loading voice")
        t0 = time.monotonic()
        self.loading = True
        try:
            self.voice = load_voice(cfg)
        finally:
            self.loading = False
        if self.stop_event.is_set():
            return False
        self.synth = synthesizer_for(self.voice, cfg)
        log.info("voice %s ready in %.1f s", self.voice.name, time.monotonic() - t0)
        self._wire()
        assert self.worker is not None and self.intake is not None
        self.worker.start()
        while not self.worker.warmed_up.wait(0.5):  # the first message then finds warm engines
            if self.stop_event.is_set():
                return False
        if cfg.wyoming.enabled:
            self.wyoming = WyomingServer(cfg, self.queue, self.device_id)
            try:
                self.wyoming.start()
            except OSError as exc:
                raise ConfigError(str(exc)) from None
        self.notifier.status(f"connecting to {cfg.mqtt.broker}")
        self.intake.start()
        if not self._wait_for_broker(connect_timeout):
            return False
        self.notifier.ready(status=f"ready: voice {self.voice.name}, broker {cfg.mqtt.broker}, prefix {self.topics.prefix}"
                            + (f", Wyoming {cfg.wyoming.uri}" if self.wyoming is not None else ""))
        return True

    def _wait_for_broker(self, connect_timeout: float | None) -> bool:
        """Wait for the broker; True once connected, or (serving Wyoming) after WYOMING_READY_S without it.

        A device that serves Home Assistant over Wyoming is useful before (and without) its broker: it reports
        READY and keeps connecting in the background.
        """
        cfg = self.cfg
        assert self.intake is not None
        deadline = None if connect_timeout is None else time.monotonic() + connect_timeout
        started = extended = time.monotonic()
        while not self.intake.wait_connected(1.0):
            if self.stop_event.is_set() or (deadline is not None and time.monotonic() > deadline):
                return False
            if self.wyoming is not None and time.monotonic() - started >= WYOMING_READY_S:
                log.warning("serving Wyoming without the broker %s (%s); still connecting", cfg.mqtt.broker,
                            self.intake.last_error or "no answer")
                return True
            if time.monotonic() - extended >= 10.0:  # waiting for the broker is not a hung start-up
                extended = time.monotonic()
                self.notifier.send(extend_timeout_usec="30000000",
                                   status=f"waiting for the broker {cfg.mqtt.broker}: {self.intake.last_error or ''}")
        log.info("serving %s/say as %s (output %s)", self.topics.prefix, self.client_id, cfg.output)
        return True

    def _wire(self) -> None:
        """Build the intake, the job book, Home Assistant's side and the worker around the loaded voice."""
        cfg = self.cfg
        assert self.queue is not None and self.synth is not None and self.voice is not None
        cache = None
        if cfg.cache.enabled and cfg.cache.max_mb > 0:
            cache = AudioCache(cfg.state_dir / "cache" / "audio", cfg.cache.max_mb * 1024 * 1024)
        rules = RuleEngine(cfg.rules)
        announcements = Announcements(cfg.announcements)
        self.controls = Controls(cfg.audio.volume, self.run_dir / "controls.json")
        book = JobBook(cfg, self.topics, self.queue, rules, announcements)
        ha = HomeAssistant(cfg, self.device_id, self.topics, self.controls, self.voice.name,
                           publish=lambda *a, **k: self.intake.publish(*a, **k) if self.intake else -1,
                           stop_current=self.queue.cancel_current, speak_test=lambda text: book.submit(text, "test"))
        self.home_assistant = ha
        subscriptions = [self.topics.say_filter, *([Topics.HERMES_SAY] if cfg.mqtt.hermes else []), *rules.filters,
                         *ha.subscriptions]
        # A fleet member holds only a few unacknowledged; a single device acks as soon as a message is spooled.
        receive_maximum = cfg.mqtt.fleet_prefetch if cfg.mqtt.shared_group else 100
        self.intake = MqttIntake(cfg.mqtt, self.client_id, self.topics.availability, subscriptions, book.accept,
                                 receive_maximum=receive_maximum, on_ready=ha.on_ready)
        book.attach(self.intake, commands=ha.handle)
        # The worker runs (and pings the watchdog) from its start; systemd arms the watchdog after READY.
        self.worker = SynthesisWorker(cfg, self.synth, self.queue, book, self.topics, self.notifier, cache,
                                      self.stop_event, announcements, self.controls)

    def stop(self, timeout: float = 8.0) -> None:
        """Stop: the message being spoken and those queued stay spooled (or, in a fleet, at the broker)."""
        self.stop_event.set()
        self.notifier.stopping()
        if self.wyoming is not None:
            self.wyoming.stop()
        if self.home_assistant is not None:
            self.home_assistant.close()
        if self.queue is not None:
            self.queue.close()
            if len(self.queue):
                log.info("%d queued message(s) wait for the next start", len(self.queue))
        if self.worker is not None and self.worker.is_alive():
            self.worker.join(timeout)
            if self.worker.is_alive():
                log.warning("the synthesis worker did not stop within %.0f s", timeout)
        if self.intake is not None:
            self.intake.stop()
        if self.worker is not None and not self.worker.is_alive():
            self.worker.voices.close()  # voices loaded for messages (the configured one follows)
        if self.synth is not None:
            self.synth.close()
        if self.voice is not None:
            self.voice.close()
        if self.spool is not None and not (self.worker is not None and self.worker.is_alive()):
            self.spool.close()
        log.info("stopped")

    @property
    def failed(self) -> bool:
        """True if the synthesis worker crashed."""
        return self.worker is not None and self.worker.crashed is not None


class _Interrupted(BaseException):
    """A stop signal arrived while the voice was loading."""


WYOMING_READY_S = 10.0
"""A daemon that serves Wyoming reports READY after this long even while its broker is unreachable."""

HARD_EXIT_S = 9.0
"""After a stop signal the process exits within this many seconds, even if a native call does not return."""


def _check_writable(directory: Path) -> None:
    """ConfigError (exit 2) naming ``state_dir`` when the daemon cannot write its run directory."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"state_dir: cannot write {directory}: {exc.strerror or exc}") from None


def _arm_hard_exit(stop: threading.Event) -> None:
    """Exit within ``HARD_EXIT_S`` of a stop signal, even while the main thread is stuck in native code.

    Python runs signal handlers only between bytecodes; the C-level handler writes the signal number to the
    wakeup fd at once, and this thread (which does not need the main thread) starts the clock from there.
    """
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)

    def watch() -> None:
        while True:
            try:
                signums = os.read(read_fd, 64)
            except OSError:  # pragma: no cover
                return
            if any(n in (signal.SIGTERM, signal.SIGINT) for n in signums):
                stop.set()
                _exit_after(HARD_EXIT_S)

    threading.Thread(target=watch, name="jetvox-hard-exit", daemon=True).start()


def _exit_after(seconds: float) -> NoReturn:
    """Sleep, then end the process: the clean stop did not finish in time (a clean exit comes first)."""
    time.sleep(seconds)
    log.error("still stopping %.0f s after the signal (a native call did not return); exiting now", seconds)
    logging.shutdown()
    os._exit(1)


def run_daemon(cfg: Config) -> int:
    """Run until SIGTERM or SIGINT; the process exit code (non-zero makes systemd restart it)."""
    setup_logging(cfg.logging)
    daemon = Daemon(cfg)

    def on_signal(signum: int, frame: object) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        daemon.stop_event.set()
        if daemon.loading:
            raise _Interrupted()

    _arm_hard_exit(daemon.stop_event)
    def on_hangup(signum: int, frame: object) -> None:
        if daemon.worker is not None:
            log.info("received SIGHUP; reloading the pronunciation lexicon")
            daemon.worker.voices.reload_lexicons()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_hangup)
    try:
        daemon.start()
        while not daemon.stop_event.wait(1.0):
            pass
    except _Interrupted:
        log.info("stopped while loading the voice")
    finally:
        daemon.stop()
        daemon.notifier.close()
    return 1 if daemon.failed else 0
