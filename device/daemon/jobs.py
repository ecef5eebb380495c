"""From MQTT deliveries to queued jobs, and from finished jobs to statuses and broker acknowledgements."""

from __future__ import annotations

import hashlib
import logging
import threading
from typing import Callable, Iterable, Optional, Protocol

from jetvox.device.config import Config
from jetvox.device.daemon.announce import Announcements
from jetvox.device.daemon.dedupe import FINISHED, Redeliveries
from jetvox.device.daemon.intake import Delivery
from jetvox.device.daemon.messages import (
    PRIORITIES,
    HermesSay,
    HermesSayFinished,
    PayloadError,
    SayRequest,
    Status,
    Topics,
    new_id,
)
from jetvox.device.daemon.rules import RuleEngine
from jetvox.device.daemon.spool import SpoolError
from jetvox.device.daemon.voices import provisioned
from jetvox.device.daemon.work_queue import Job, WorkQueue

log = logging.getLogger(__name__)


class Broker(Protocol):
    """What the job book needs from the MQTT connection (MqttIntake)."""

    def publish(self, topic: str, payload: bytes | str, retain: bool = False, track: bool = True) -> int: ...

    def ack(self, delivery: Delivery) -> bool: ...

    def wait_published(self, mids: Iterable[int], timeout: float | None = None,
                       tick: Callable[[], None] | None = None, stop: threading.Event | None = None) -> bool: ...


class JobBook:
    """Accepts deliveries (paho's network thread) and finishes jobs (the synthesis worker), under one lock.

    A single device spools an accepted message durably, then acknowledges it to the broker at once: a burst
    waits on disk, not at the broker. A fleet member (``mqtt.shared_group``) acknowledges a message only when
    it is finished, so what it has not spoken stays with the broker. Every payload gets a status: ``queued``,
    an ``error`` with the reason, ``dropped`` when the spool is full, or ``done``/``queued`` with
    ``duplicate`` for an id already finished or waiting.
    """

    def __init__(self, cfg: Config, topics: Topics, queue: WorkQueue, rules: RuleEngine,
                 announcements: Optional[Announcements] = None) -> None:
        """Wire up; ``attach`` the broker before the first delivery.

        Args:
            cfg: limits, default output and TTL, Hermes switch, fleet mode.
            topics: the device's topic names.
            queue: where accepted jobs go (over the spool, which also journals finished ids).
            rules: sensor rules.
            announcements: quiet hours, named in the ``queued`` status of a held message.
        """
        self._cfg = cfg
        self._topics = topics
        self._queue = queue
        self._spool = queue.spool
        self._rules = rules
        self._ack_early = not cfg.mqtt.shared_group
        self._redeliveries = Redeliveries()
        self._finishing: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._broker: Optional[Broker] = None
        self._announce = announcements or Announcements(cfg.announcements)
        self._commands: Optional[Callable[[Delivery], bool]] = None

    def attach(self, broker: Broker, commands: Optional[Callable[[Delivery], bool]] = None) -> None:
        """Connect the broker, and the handler of command topics (True: it handled the delivery)."""
        self._broker = broker
        self._commands = commands

    @property
    def broker(self) -> Broker:
        assert self._broker is not None, "attach() the broker first"
        return self._broker

    def publish_status(self, status: Status, track: bool = False) -> int:
        """Publish a status event; its mid (``track`` only when it will be waited for)."""
        log.debug("status %s: %s %s", status.id, status.state, status.reason or "")
        return self.broker.publish(self._topics.status(status.id), status.to_json(), track=track)

    def submit(self, text: str, source: str, priority: str = "normal") -> Optional[str]:
        """Queue a message the device makes itself (the test button); its id, or None if it was not queued.

        Takes no lock of the book's: it is called from a command handler inside ``accept``.
        """
        job = Job(id=new_id(f"{source}-"), text=text, priority=priority, output=self._cfg.output,
                  ttl_s=self._cfg.queue.default_ttl_s, source=source)

        def announce(waiting: int) -> None:
            self.publish_status(Status(id=job.id, state="queued", priority=job.priority, queue_length=waiting))

        if not self._queue.put(job, announce=announce):
            log.error("%s message not queued: the spool is full or the daemon is stopping", source)
            return None
        return job.id

    # -- intake (network thread) -------------------------------------------------------------------

    def accept(self, d: Delivery) -> None:
        """Handle one delivery: spool a job, attach a redelivery, or answer with a status and ack.

        Never raises: a payload that trips anything unforeseen gets an ``error`` status and one log line.
        """
        with self._lock:
            try:
                self._accept(d)
            except SpoolError as exc:  # not the sender's fault: leave it with the broker, which resends it
                log.error("message on %s left with the broker: %s", d.topic, exc)
            except Exception as exc:
                msg_id = new_id("invalid-")
                log.error("message on %s could not be handled (%s: %s); answered as %s", d.topic,
                          type(exc).__name__, str(exc)[:200], msg_id)
                log.debug("details of %s", msg_id, exc_info=True)
                self.publish_status(Status(id=msg_id, state="error",
                                           reason=f"internal error: {type(exc).__name__}"))
                self._ack([d])

    def _accept(self, d: Delivery) -> None:
        if self._commands is not None and self._commands(d):
            self._ack([d])
            return
        if d.retain:
            log.info("ignoring a retained message on %s (stale at start-up)", d.topic)
            self.broker.ack(d)
            return
        prior = self._redeliveries.match(d)
        if prior is FINISHED:
            log.info("redelivery of a finished message on %s; acknowledging it", d.topic)
            self._ack([d])
            return
        if isinstance(prior, Job) and not prior.finished:
            log.info("redelivery of message %s, already queued", prior.id)
            self._attach(prior, d)
            return
        key = _delivery_key(d)
        if d.dup and self._ack_early and self._spool.has_delivery(key):
            log.info("redelivery of a spooled message on %s (packet %d); acknowledging it", d.topic, d.mid)
            self._ack([d])
            return
        try:
            job = self._job_for(d)
        except PayloadError as exc:
            msg_id = exc.msg_id or new_id("invalid-")
            log.warning("rejected message %s on %s: %s", msg_id, d.topic, exc.reason)
            self.publish_status(Status(id=msg_id, state="error", reason=exc.reason))
            self._ack([d])
            return
        if job is None:
            self._ack([d])
            return
        if job.remember and self._repeated(job, d):
            return
        ignored = job.ignored
        if ignored:
            log.warning("message %s: SSML not applied (its text is spoken): %s", job.id, ", ".join(ignored))

        held = None
        if job.priority in self._announce.holding():
            held = f"{self._announce.quiet_reason()}: spoken when they end"

        def announce(waiting: int) -> None:
            self.publish_status(Status(id=job.id, state="queued", priority=job.priority, queue_length=waiting,
                                       ignored=ignored or None, held=held))

        if not self._queue.put(job, acked=self._ack_early, delivery=key, announce=announce):
            if self._queue.closed:  # shutting down: leave it at the broker
                return
            reason = f"spool is full ({self._cfg.queue.max_queued} messages waiting, queue.max_queued)"
            log.error("dropped message %s: %s", job.id, reason)
            self.publish_status(Status(id=job.id, state="dropped", reason=reason))
            self._ack([d])
            return
        if self._ack_early:
            self._ack([d])
        else:
            self._attach(job, d)

    def _repeated(self, job: Job, d: Delivery) -> bool:
        """Answer a sender-given id that is finished or waiting already (True: handled, not queued again)."""
        if self._spool.is_done(job.id):
            log.info("message %s was already spoken; answering the repeat with a duplicate status", job.id)
            self.publish_status(Status(id=job.id, state="done", duplicate=True,
                                       reason="already spoken: this id was finished before"))
            self._ack([d])
            return True
        existing = self._queue.find(job.id) or self._finishing.get(job.id)
        if existing is not None and not existing.finished:
            log.info("message %s is already queued; the repeat joins it", job.id)
            self._attach(existing, d)
        elif self._queue.waiting(job.id):
            log.info("message %s is already queued; acknowledging the repeat", job.id)
            self._ack([d])
        else:
            return False
        self.publish_status(Status(id=job.id, state="queued", duplicate=True, priority=existing.priority
                                   if existing is not None else None, reason="already queued: spoken once"))
        return True

    def _attach(self, job: Job, d: Delivery) -> None:
        job.deliveries.append(d)
        self._redeliveries.hold(d, job)

    def _ack(self, deliveries: Iterable[Delivery]) -> None:
        for d in deliveries:
            if self.broker.ack(d):
                self._redeliveries.forget(d)
            else:
                self._redeliveries.finished_unacked(d)

    def _job_for(self, d: Delivery) -> Optional[Job]:
        """The job a delivery asks for; None when there is nothing to speak; PayloadError when invalid."""
        cfg = self._cfg
        limits = {"max_bytes": cfg.queue.max_payload_bytes, "max_chars": cfg.synthesis.max_text_chars}
        if d.topic == self._topics.say:
            req = SayRequest.from_payload(d.payload, **limits)
            for name in ([req.voice] if req.voice else []) + (req.document.voices if req.document else []):
                if (problem := provisioned(cfg, name)) is not None:
                    raise PayloadError(f"voice: {problem}", req.id)
            return Job(
                id=req.id or new_id(),
                text=req.text,
                priority=req.priority,
                output=req.output or cfg.output,
                ttl_s=cfg.queue.default_ttl_s if req.ttl_s is None else req.ttl_s,
                volume=req.volume,
                length_scale=req.length_scale,
                sentence_silence=req.sentence_silence,
                voice=req.voice,
                ssml=req.ssml,
                ignored=tuple(req.document.ignored) if req.document else (),
                document=req.document,
                remember=req.id is not None,
                received=d.received,
            )
        if cfg.mqtt.hermes and d.topic == Topics.HERMES_SAY:
            hermes = HermesSay.from_payload(d.payload, **limits)
            if hermes.site_id != cfg.mqtt.site_id:
                log.debug("hermes say for site %s, not ours (%s)", hermes.site_id, cfg.mqtt.site_id)
                return None
            return Job(
                id=hermes.id or new_id("hermes-"),
                text=hermes.text,
                output=cfg.output,
                ttl_s=cfg.queue.default_ttl_s,
                volume=hermes.volume,
                source="hermes",
                remember=hermes.id is not None,
                hermes=hermes.to_json(),
                received=d.received,
            )
        if self._rules.matches(d.topic):
            if len(d.payload) > cfg.queue.max_payload_bytes:
                log.warning("sensor reading on %s is %d bytes; ignored", d.topic, len(d.payload))
                return None
            hits = self._rules.evaluate(d.topic, d.payload)
            if not hits:
                return None
            priority = max((h.priority for h in hits), key=PRIORITIES.index)
            text = " ".join(h.text.strip() for h in hits)
            if len(text) > cfg.synthesis.max_text_chars:
                log.warning("sensor rule text for %s is %d characters; ignored", d.topic, len(text))
                return None
            log.info("sensor rule(s) %s fired on %s: %s", [h.rule for h in hits], d.topic, text)
            return Job(id=new_id("rule-"), text=text, priority=priority, output=cfg.output,
                       ttl_s=cfg.queue.default_ttl_s, source="rule", received=d.received)
        log.debug("message on %s matches no route", d.topic)
        return None

    # -- completion (worker thread) ----------------------------------------------------------------

    def finish(
        self,
        job: Job,
        status: Status,
        mids: Iterable[int] = (),
        tick: Callable[[], None] | None = None,
        stop: threading.Event | None = None,
    ) -> bool:
        """Spool the final status, publish it, wait until it and ``mids`` reached the broker, then complete.

        Completing removes the job from the spool and journals its id in one transaction, then acknowledges
        a fleet member's deliveries. Returns False (the job stays spooled with its final status; a fleet
        member's stays with the broker) when ``stop`` was set while waiting.
        """
        with self._lock:  # a redelivery arriving while we wait for the broker joins this job
            self._finishing[job.id] = job
        self._queue.record_final(job, status.to_dict())
        wait_for = list(mids)
        wait_for.append(self.publish_status(status, track=True))
        if job.hermes is not None:
            hermes = HermesSay.from_json(job.hermes)
            finished = HermesSayFinished(id=hermes.id, site_id=hermes.site_id, session_id=hermes.session_id)
            wait_for.append(self.broker.publish(Topics.HERMES_SAY_FINISHED, finished.to_json()))
        if not self.broker.wait_published(wait_for, tick=tick, stop=stop):
            log.info("stopping before message %s was confirmed by the broker; it stays for the next start", job.id)
            with self._lock:
                self._finishing.pop(job.id, None)
            self._queue.release(job)
            return False
        with self._lock:
            self._queue.complete(job)
            job.finished = True
            self._ack(job.deliveries)
            self._finishing.pop(job.id, None)
        level = logging.WARNING if status.state == "dropped" else logging.INFO
        log.log(level, "message %s %s%s", job.id, status.state, f" ({status.reason})" if status.reason else "")
        return True


def _delivery_key(d: Delivery) -> str:
    """Topic, packet id and payload hash: how a broker's resend of the same delivery is recognised."""
    digest = hashlib.sha1(d.topic.encode("utf-8") + bytes(1) + d.payload).hexdigest()
    return f"{d.mid}:{digest}"
