"""The priority queue of speech jobs over the durable spool: alerts first, FIFO within a priority, cut-offs."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol

from jetvox.device.daemon.messages import PRIORITIES
from jetvox.device.daemon.spool import Row, Spool
from jetvox.device.text.ssml import Document as SsmlDocument

log = logging.getLogger(__name__)

_RANK = {p: i for i, p in enumerate(PRIORITIES)}
_RECORDED = ("id", "text", "priority", "output", "ttl_s", "volume", "length_scale", "sentence_silence", "voice",
             "ssml", "source", "remember", "hermes")


class StreamSink(Protocol):
    """Where the worker streams a connection-bound job's audio (called from the worker thread)."""

    def start(self, sample_rate: int) -> None:
        """The audio's format is known; chunks follow."""

    def audio(self, pcm: bytes) -> None:
        """One s16le mono chunk, in order."""

    def end(self, state: str, reason: Optional[str] = None) -> None:
        """No more chunks: ``done``, ``dropped`` (cut off, quiet hours) or ``error`` with the reason."""


@dataclass(eq=False)
class Job:
    """One message to speak, from intake to its final status."""

    id: str
    """Message id (status and audio topics)."""
    text: str
    """What to speak."""
    priority: str = "normal"
    """``low``, ``normal``, ``high`` or ``alert``."""
    output: str = "speaker"
    """``speaker``, ``mqtt`` or ``both`` (resolved from the message and the config)."""
    ttl_s: float = 0.0
    """Seconds the job may wait before its turn; 0 never expires."""
    volume: Optional[float] = None
    """Per-message gain override."""
    length_scale: Optional[float] = None
    """Per-message speaking-rate override."""
    sentence_silence: Optional[float] = None
    """Per-message silence between sentences (seconds)."""
    voice: Optional[str] = None
    """Per-message voice (a provisioned one); None is the configured voice."""
    ssml: bool = False
    """The text is SSML."""
    source: str = "say"
    """Where it came from: ``say``, ``hermes`` or ``rule``."""
    remember: bool = False
    """Persist the id once finished so a redelivery is recognised after a restart (sender-given ids)."""
    hermes: Any = None
    """The HermesSay request as its JSON text, for ``sayFinished`` and ``playBytes``."""
    ignored: tuple[str, ...] = ()
    """SSML elements and attributes not applied (named in the ``queued`` status; not spooled)."""
    document: Optional[SsmlDocument] = None
    """The SSML as parsed on intake (not spooled: a job read back from the spool is parsed again)."""
    sink: Any = None
    """Where a connection-bound job's audio goes (a Wyoming client's ``StreamSink``); such a job is never
    spooled: it lives as long as the connection that asked for it."""
    deliveries: list[Any] = field(default_factory=list)
    """MQTT deliveries to acknowledge once the job is finished."""
    received: float = field(default_factory=time.monotonic)
    """When the message arrived (monotonic seconds)."""
    cancel: threading.Event = field(default_factory=threading.Event)
    """Set when an alert cuts this job off while it is spoken."""
    cancel_reason: str = ""
    """Why the job was cut off."""
    finished: bool = False
    """Set once its final status is out and its deliveries are acknowledged."""
    final: Optional[dict[str, Any]] = None
    """Its final status, once spoken or dropped and before the broker confirmed it (a replay only re-sends it)."""
    seq: int = -1
    """Its row in the spool (-1 before it is spooled)."""

    @property
    def rank(self) -> int:
        return _RANK[self.priority]

    def age(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.received

    def expired(self, now: float | None = None) -> bool:
        """True if the job waited longer than its TTL."""
        return self.ttl_s > 0 and self.age(now) > self.ttl_s

    def to_record(self) -> dict[str, Any]:
        """What the spool keeps of the job."""
        return {name: getattr(self, name) for name in _RECORDED}

    @classmethod
    def from_row(cls, row: Row) -> "Job":
        """The job a spool row holds; its age counts from when it was accepted, across restarts."""
        fields = {name: row.job[name] for name in _RECORDED if name in row.job}
        received = time.monotonic() - max(0.0, time.time() - row.received)
        return cls(**fields, received=received, final=row.final, seq=row.seq)


class WorkQueue:
    """Thread-safe priority queue whose contents live in the spool; the worker marks the job it speaks.

    Only jobs whose MQTT deliveries are still to be acknowledged (a fleet member's) are held in memory too;
    everything else is read back from the spool when its turn comes.
    """

    def __init__(self, spool: Spool, alert_cuts_off: tuple[str, ...] = ("low",)) -> None:
        """Create the queue over ``spool`` (which may hold messages from before a restart).

        Args:
            spool: the durable store of accepted messages.
            alert_cuts_off: priorities of a job being spoken that an arriving alert cancels.
        """
        self._spool = spool
        self._cuts = frozenset(alert_cuts_off)
        self._live: dict[str, Job] = {}
        self._transient: list[Job] = []
        self._taken: set[int] = set()
        self._cond = threading.Condition()
        self._current: Optional[Job] = None
        self._closed = False

    def __len__(self) -> int:
        """Jobs waiting (the one being spoken is not counted)."""
        with self._cond:
            return max(0, self._spool_len() - len(self._taken)) + len(self._transient)

    def _spool_len(self) -> int:
        return len(self._spool)

    @property
    def spool(self) -> Spool:
        return self._spool

    @property
    def current(self) -> Optional[Job]:
        """The job being spoken, if any."""
        with self._cond:
            return self._current

    def put(self, job: Job, acked: bool = True, delivery: Optional[str] = None,
            announce: Optional[Callable[[int], None]] = None) -> bool:
        """Spool ``job`` durably; False (nothing stored) when the spool is full or the queue closed.

        Args:
            job: the job.
            acked: its delivery is acknowledged now (False: a fleet member's, acknowledged when finished).
            delivery: key of the MQTT delivery it came in, to recognise a resend after a restart.
            announce: called with the number waiting once it is stored and before the worker can take it
                (the ``queued`` status goes out before ``started``).
        """
        with self._cond:
            if self._closed:
                return False
            if not self._spool.add(job.id, job.rank, time.time() - job.age(), job.to_record(), acked, delivery):
                return False
            if not acked:
                self._live[job.id] = job
            if announce is not None:
                announce(max(0, self._spool_len() - len(self._taken)))
            self._cut_off_for(job)
            self._cond.notify()
            return True

    def put_transient(self, job: Job) -> bool:
        """Queue a connection-bound job (``job.sink`` set) in memory beside the spooled ones; False when closed."""
        with self._cond:
            if self._closed:
                return False
            self._transient.append(job)
            self._cut_off_for(job)
            self._cond.notify()
            return True

    def _cut_off_for(self, job: Job) -> None:
        current = self._current
        if job.priority == "alert" and current is not None and current.priority in self._cuts:
            log.info("alert %s cuts off %s message %s", job.id, current.priority, current.id)
            self._cancel_current(f"cut off by alert {job.id}")

    def _cancel_current(self, reason: str) -> Optional[Job]:
        current = self._current
        if current is not None:
            current.cancel_reason = reason
            current.cancel.set()
        return current

    def get(self, timeout: float | None = None, hold: frozenset[str] = frozenset()) -> Optional[Job]:
        """The most urgent, oldest job whose priority is not in ``hold``; None after ``timeout`` s or when closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        held_ranks = frozenset(_RANK[p] for p in hold)
        with self._cond:
            while True:
                if self._closed:
                    return None
                row = self._spool.next(frozenset(self._taken), held_ranks)
                transient = self._best_transient(held_ranks)
                if transient is not None and (row is None or _before(transient, row)):
                    self._transient.remove(transient)
                    return transient
                if row is not None:
                    break
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(left)
            self._taken.add(row.seq)
            job = self._live.get(row.id)
            if job is None:
                return Job.from_row(row)
            job.seq, job.final = row.seq, row.final
            return job

    def _best_transient(self, held_ranks: frozenset[int]) -> Optional[Job]:
        eligible = [job for job in self._transient if job.rank not in held_ranks]
        return min(eligible, key=lambda job: (-job.rank, job.received), default=None)

    def drop_transient(self, job: Job) -> bool:
        """Take a connection-bound job out before it started (its client left); False if it was taken already."""
        with self._cond:
            if job in self._transient:
                self._transient.remove(job)
                return True
            return False

    def cancel_current(self, reason: str) -> Optional[Job]:
        """Cut off the job being spoken (a stop command); the job, or None when nothing is spoken."""
        with self._cond:
            return self._cancel_current(reason)

    def start(self, job: Job) -> None:
        """Mark ``job`` as the one being spoken (alerts may now cut it off)."""
        with self._cond:
            self._current = job

    def finish(self, job: Job) -> None:
        """The job being spoken is no longer spoken (its final status follows with ``complete``)."""
        with self._cond:
            if self._current is job:
                self._current = None

    def record_final(self, job: Job, status: dict[str, Any]) -> None:
        """Spool the job's final status before it is sent: a crash from here on re-sends it, never re-speaks."""
        job.final = status
        self._spool.set_final(job.id, status)

    def complete(self, job: Job) -> None:
        """The job's final status reached the broker: remove it from the spool, journalling its id."""
        self._spool.finish(job.id, job.remember)
        with self._cond:
            self._taken.discard(job.seq)
            self._live.pop(job.id, None)

    def release(self, job: Job) -> None:
        """Give a taken job back unfinished (the daemon stops): it waits in the spool for the next start."""
        with self._cond:
            self._taken.discard(job.seq)

    def find(self, msg_id: str) -> Optional[Job]:
        """The waiting or current job with this id that still has deliveries to acknowledge."""
        with self._cond:
            if self._current is not None and self._current.id == msg_id:
                return self._current
            return self._live.get(msg_id)

    def waiting(self, msg_id: str) -> bool:
        """True if a job with this id is spooled and not finished."""
        return self._spool.has(msg_id)

    def close(self) -> list[Job]:
        """Stop handing out jobs; returns the in-memory ones left (they stay unacknowledged at the broker)."""
        with self._cond:
            self._closed = True
            left = [job for job in self._live.values() if job is not self._current]
            for job in self._transient:
                job.sink.end("error", "the server is stopping")
            self._transient.clear()
            self._cond.notify_all()
            return left

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed


def _before(job: Job, row: Row) -> bool:
    """True if an in-memory job goes before a spooled row: more urgent, or as urgent and older."""
    if job.rank != row.rank:
        return job.rank > row.rank
    return time.time() - job.age() < row.received
