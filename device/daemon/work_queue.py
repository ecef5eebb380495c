"""The bounded priority queue of speech jobs: alerts first, FIFO within a priority, cut-off of low ones."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from jetvox.device.daemon.messages import PRIORITIES

log = logging.getLogger(__name__)

_RANK = {p: i for i, p in enumerate(PRIORITIES)}


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
    source: str = "say"
    """Where it came from: ``say``, ``hermes`` or ``rule``."""
    remember: bool = False
    """Persist the id once finished so a redelivery is recognised after a restart (sender-given ids)."""
    hermes: Any = None
    """The HermesSay request, for ``sayFinished`` and ``playBytes``."""
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

    @property
    def rank(self) -> int:
        return _RANK[self.priority]

    def age(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.received

    def expired(self, now: float | None = None) -> bool:
        """True if the job waited longer than its TTL."""
        return self.ttl_s > 0 and self.age(now) > self.ttl_s


class WorkQueue:
    """Thread-safe bounded priority queue; the worker marks the job it speaks with ``start``/``finish``."""

    def __init__(self, max_items: int, alert_cuts_off: tuple[str, ...] = ("low",)) -> None:
        """Create an empty queue.

        Args:
            max_items: most jobs waiting at once (the one being spoken is not counted).
            alert_cuts_off: priorities of a job being spoken that an arriving alert cancels.
        """
        self._max = max_items
        self._cuts = frozenset(alert_cuts_off)
        self._heap: list[tuple[int, int, Job]] = []
        self._by_id: dict[str, Job] = {}
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._current: Optional[Job] = None
        self._closed = False

    def __len__(self) -> int:
        with self._cond:
            return len(self._heap)

    @property
    def current(self) -> Optional[Job]:
        """The job being spoken, if any."""
        with self._cond:
            return self._current

    def put(self, job: Job) -> bool:
        """Queue ``job``; False (and nothing queued) when the queue is full or closed."""
        with self._cond:
            if self._closed or len(self._heap) >= self._max:
                return False
            heapq.heappush(self._heap, (-job.rank, next(self._seq), job))
            self._by_id[job.id] = job
            current = self._current
            if job.priority == "alert" and current is not None and current.priority in self._cuts:
                current.cancel_reason = f"cut off by alert {job.id}"
                current.cancel.set()
                log.info("alert %s cuts off %s message %s", job.id, current.priority, current.id)
            self._cond.notify()
            return True

    def get(self, timeout: float | None = None) -> Optional[Job]:
        """The most urgent, oldest job; None after ``timeout`` seconds or when closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._heap and not self._closed:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(left)
            if self._closed:
                return None
            _, _, job = heapq.heappop(self._heap)
            self._by_id.pop(job.id, None)
            return job

    def start(self, job: Job) -> None:
        """Mark ``job`` as the one being spoken (alerts may now cut it off)."""
        with self._cond:
            self._current = job

    def finish(self, job: Job) -> None:
        """The job being spoken is finished."""
        with self._cond:
            if self._current is job:
                self._current = None

    def find(self, msg_id: str) -> Optional[Job]:
        """The waiting or current job with this id."""
        with self._cond:
            if self._current is not None and self._current.id == msg_id:
                return self._current
            return self._by_id.get(msg_id)

    def close(self) -> list[Job]:
        """Stop handing out jobs; returns those still waiting (they stay unacknowledged at the broker)."""
        with self._cond:
            self._closed = True
            left = [job for _, _, job in sorted(self._heap)]
            self._heap.clear()
            self._by_id.clear()
            self._cond.notify_all()
            return left

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed
