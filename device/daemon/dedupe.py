"""Recognising redelivered messages: finished ids journalled on disk, in-flight deliveries by packet id."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Optional, Protocol

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


class DoneIds:
    """Ids of finished messages, the newest ``capacity`` of them, in an fsynced append-only journal.

    A line is written (and fsynced) before the message is acknowledged to the broker, so after a crash or
    kill -9 a redelivered message is recognised. The journal is compacted by an atomic rewrite when it grows
    to twice the capacity; a torn last line from a crash is ignored on load.
    """

    def __init__(self, path: Path, capacity: int) -> None:
        """Open (or create) the journal.

        Args:
            path: journal file, e.g. ``<state_dir>/daemon/<device_id>/done-ids.jsonl``.
            capacity: how many ids are remembered (queue.dedupe_ids); 0 disables the journal.
        """
        self._path = path
        self._capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lines = 0
        self._lock = threading.Lock()
        self._file: Optional[Any] = None
        if capacity <= 0:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and self._load():
            self._rewrite()  # drop a torn line, so the next append starts on a line of its own
        self._file = open(path, "ab")

    def _load(self) -> bool:
        """Read the journal; True if it needs a rewrite (a torn or unreadable line)."""
        bad = 0
        torn = False
        with open(self._path, "rb") as f:
            for raw in f:
                torn = not raw.endswith(b"\n")
                try:
                    msg_id = json.loads(raw)
                except ValueError:
                    bad += 1
                    continue
                if isinstance(msg_id, str):
                    self._remember(msg_id)
                    self._lines += 1
        if bad:
            log.warning("ignored %d unreadable line(s) in %s (an interrupted write)", bad, self._path)
        log.info("remembering %d finished message id(s) from %s", len(self._ids), self._path)
        return bool(bad) or torn

    def _remember(self, msg_id: str) -> None:
        self._ids[msg_id] = None
        self._ids.move_to_end(msg_id)
        while len(self._ids) > self._capacity:
            self._ids.popitem(last=False)

    def __contains__(self, msg_id: object) -> bool:
        with self._lock:
            return msg_id in self._ids

    def __len__(self) -> int:
        with self._lock:
            return len(self._ids)

    def add(self, msg_id: str) -> None:
        """Remember ``msg_id`` durably (returns after fsync)."""
        if self._file is None:
            return
        with self._lock:
            self._remember(msg_id)
            self._file.write(json.dumps(msg_id).encode("utf-8") + b"\n")
            self._file.flush()
            os.fsync(self._file.fileno())
            self._lines += 1
            if self._lines >= 2 * self._capacity:
                self._file.close()
                self._rewrite()
                self._file = open(self._path, "ab")

    def _rewrite(self) -> None:
        """Atomically replace the journal with the ids remembered now."""
        tmp = self._path.with_name(self._path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(b"".join(json.dumps(i).encode("utf-8") + b"\n" for i in self._ids))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path)
        dir_fd = os.open(self._path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._lines = len(self._ids)
        log.debug("rewrote %s with %d ids", self._path, self._lines)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


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
