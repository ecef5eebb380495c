"""From MQTT deliveries to queued jobs, and from finished jobs to statuses and broker acknowledgements."""

from __future__ import annotations

import logging
import threading
from typing import Callable, Iterable, Optional, Protocol

from jetvox.device.config import Config
from jetvox.device.daemon.dedupe import FINISHED, DoneIds, Redeliveries
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

    A delivery is acknowledged only when its job is finished: spoken or published (or dropped, or failed,
    which is final too). Redeliveries are recognised by sender-given id (journalled across restarts) and by
    packet id (within a run), and are attached to the job already under way instead of becoming a new one.
    """

    def __init__(self, cfg: Config, topics: Topics, queue: WorkQueue, done: DoneIds, rules: RuleEngine) -> None:
        """Wire up; ``attach`` the broker before the first delivery.

        Args:
            cfg: limits, default output and TTL, Hermes switch.
            topics: the device's topic names.
            queue: where accepted jobs go.
            done: finished ids journal.
            rules: sensor rules.
        """
        self._cfg = cfg
        self._topics = topics
        self._queue = queue
        self._done = done
        self._rules = rules
        self._redeliveries = Redeliveries()
        self._finishing: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._broker: Optional[Broker] = None

    def attach(self, broker: Broker) -> None:
        self._broker = broker

    @property
    def broker(self) -> Broker:
        assert self._broker is not None, "attach() the broker first"
        return self._broker

    def publish_status(self, status: Status, track: bool = False) -> int:
        """Publish a status event; its mid (``track`` only when it will be waited for)."""
        log.debug("status %s: %s %s", status.id, status.state, status.reason or "")
        return self.broker.publish(self._topics.status(status.id), status.to_json(), track=track)

    # -- intake (network thread) -------------------------------------------------------------------

    def accept(self, d: Delivery) -> None:
        """Handle one delivery: queue a job, attach a redelivery, or answer with a status and ack."""
        with self._lock:
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
            if job.remember:
                if job.id in self._done:
                    log.info("message %s was already finished; acknowledging the redelivery", job.id)
                    self._ack([d])
                    return
                existing = self._queue.find(job.id) or self._finishing.get(job.id)
                if existing is not None and not existing.finished:
                    log.info("message %s is already queued; attaching the redelivery", job.id)
                    self._attach(existing, d)
                    return
            job.deliveries.append(d)
            if not self._queue.put(job):
                reason = "queue is closing" if self._queue.closed else f"queue is full ({self._cfg.queue.max_queued})"
                if self._queue.closed:  # shutting down: leave it at the broker
                    return
                self.publish_status(Status(id=job.id, state="dropped", reason=reason))
                self._ack([d])
                return
            self._redeliveries.hold(d, job)
            self.publish_status(Status(id=job.id, state="queued", priority=job.priority, queue_length=len(self._queue)))

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
            return Job(
                id=req.id or new_id(),
                text=req.text,
                priority=req.priority,
                output=req.output or cfg.output,
                ttl_s=cfg.queue.default_ttl_s if req.ttl_s is None else req.ttl_s,
                volume=req.volume,
                length_scale=req.length_scale,
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
                hermes=hermes,
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
        """Publish the final status, wait until it and ``mids`` reached the broker, journal the id, then ack.

        Returns False (nothing acknowledged: the broker will redeliver) when ``stop`` was set while waiting.
        """
        with self._lock:  # a redelivery arriving while we wait for the broker joins this job
            self._finishing[job.id] = job
        wait_for = list(mids)
        wait_for.append(self.publish_status(status, track=True))
        if job.hermes is not None:
            finished = HermesSayFinished(id=job.hermes.id, site_id=job.hermes.site_id, session_id=job.hermes.session_id)
            wait_for.append(self.broker.publish(Topics.HERMES_SAY_FINISHED, finished.to_json()))
        if not self.broker.wait_published(wait_for, tick=tick, stop=stop):
            log.info("stopping before message %s was confirmed by the broker; it stays unacknowledged", job.id)
            with self._lock:
                self._finishing.pop(job.id, None)
            return False
        if job.remember:
            self._done.add(job.id)
        with self._lock:
            job.finished = True
            self._ack(job.deliveries)
            self._finishing.pop(job.id, None)
        log.info("message %s %s%s", job.id, status.state, f" ({status.reason})" if status.reason else "")
        return True
