"""Recognising redelivered messages in flight: the same delivery resent on a new connection (by packet id)."""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from typing import Protocol

log = logging.getLogger(__name__)


class DeliveryLike(Protocol):
    """What redelivery matching reads from a delivery (device.intake.Delivery)."""

    @property
    def topic(self) -> str: ...

    @property
    def payload(self) -> bytes: ...

    @property
    def mid(self) -> int: ...

    @property
    def generation(self) -> int: ...


FINISHED = object()
"""Marks a held delivery whose job is finished but could not be acknowledged (the connection had changed)."""


class Redeliveries:
    """In-memory map of unacknowledged deliveries, so a QoS 1 message resent after a reconnect is recognised.

    A broker resends an unacknowledged message on a resumed session with its original packet id; a delivery
    from a newer connection with the same topic, packet id and payload is that message again, with or without
    a sender-given id.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self._held: OrderedDict[tuple[str, int, bytes], tuple[int, object]] = OrderedDict()
        self._capacity = capacity

    @staticmethod
    def _key(d: DeliveryLike) -> tuple[str, int, bytes]:
        return d.topic, d.mid, hashlib.sha1(d.payload).digest()

    def hold(self, d: DeliveryLike, job: object) -> None:
        """``d`` is being worked on as ``job``."""
        self._held[self._key(d)] = (d.generation, job)
        self._held.move_to_end(self._key(d))
        while len(self._held) > self._capacity:
            self._held.popitem(last=False)

    def match(self, d: DeliveryLike) -> object | None:
        """The job (or FINISHED) that ``d`` is a redelivery of, else None."""
        entry = self._held.get(self._key(d))
        if entry is None or entry[0] >= d.generation:
            return None
        return entry[1]

    def finished_unacked(self, d: DeliveryLike) -> None:
        """``d``'s job is finished but its ack could not be sent: ack its redelivery at once."""
        self._held[self._key(d)] = (d.generation, FINISHED)

    def forget(self, d: DeliveryLike) -> None:
        self._held.pop(self._key(d), None)

    def __len__(self) -> int:
        return len(self._held)
