"""The durable spool: accepted messages and finished ids in one SQLite database (WAL), crash-safe and bounded."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from jetvox.engines.errors import JetvoxError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    rank INTEGER NOT NULL,
    received REAL NOT NULL,
    job TEXT NOT NULL,
    acked INTEGER NOT NULL,
    delivery TEXT,
    final TEXT
);
CREATE INDEX IF NOT EXISTS messages_order ON messages (rank DESC, seq);
CREATE INDEX IF NOT EXISTS messages_delivery ON messages (delivery);
CREATE TABLE IF NOT EXISTS done (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE
);
"""


class SpoolError(JetvoxError, OSError):
    """The spool database cannot be opened or written (disk full, unwritable state directory)."""


@dataclass(frozen=True)
class Row:
    """One spooled message as stored."""

    seq: int
    """Arrival order (also the row's key)."""
    id: str
    """Message id."""
    rank: int
    """Priority rank: higher goes first."""
    received: float
    """Unix time it was accepted (TTL counts from here, across restarts)."""
    job: dict[str, Any]
    """The job's fields (``work_queue.Job.to_record``)."""
    acked: bool
    """True once the broker was told the message is ours; False rows are the broker's to resend."""
    final: Optional[dict[str, Any]]
    """The final status once the message was spoken (or dropped) and before it was confirmed: never spoken twice."""


class Spool:
    """Thread-safe; every change is one transaction, fsynced (``synchronous=FULL``) before it returns.

    ``messages`` holds what was accepted and is not finished; ``done`` the newest ``done_capacity`` finished
    sender-given ids. A message moves from one to the other in a single transaction.
    """

    def __init__(self, path: Path, capacity: int, done_capacity: int) -> None:
        """Open (or create) the database.

        Args:
            path: the database file, e.g. ``<state_dir>/daemon/<device_id>/spool.sqlite``.
            capacity: most unfinished messages held (queue.max_queued).
            done_capacity: finished ids remembered (queue.dedupe_ids).
        """
        self.path = path
        self.capacity = capacity
        self.done_capacity = done_capacity
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._count = int(self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])
        except (OSError, sqlite3.Error) as exc:
            raise SpoolError(f"cannot open the spool {path}: {exc}") from None

    def _write(self, sql: str, *params: Any) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, params)
        except sqlite3.Error as exc:
            raise SpoolError(f"spool {self.path}: {exc}") from None

    # -- accepted messages -------------------------------------------------------------------------

    def __len__(self) -> int:
        with self._lock:
            return self._count

    def add(self, msg_id: str, rank: int, received: float, job: dict[str, Any], acked: bool,
            delivery: Optional[str] = None) -> bool:
        """Store a message; False when the spool is full (nothing stored). Durable when it returns."""
        with self._lock:
            if self._count >= self.capacity:
                return False
            self._write("INSERT INTO messages (id, rank, received, job, acked, delivery) VALUES (?, ?, ?, ?, ?, ?)",
                        msg_id, rank, received, json.dumps(job, ensure_ascii=False), int(acked), delivery)
            self._count += 1
            return True

    def mark_acked(self, msg_id: str) -> None:
        with self._lock:
            self._write("UPDATE messages SET acked = 1 WHERE id = ?", msg_id)

    def has(self, msg_id: str) -> bool:
        """True if ``msg_id`` is accepted and not finished."""
        with self._lock:
            return self._db.execute("SELECT 1 FROM messages WHERE id = ?", (msg_id,)).fetchone() is not None

    def has_delivery(self, key: str) -> bool:
        """True if an unfinished message came in the delivery ``key`` (topic, packet id, payload hash)."""
        with self._lock:
            return self._db.execute("SELECT 1 FROM messages WHERE delivery = ?", (key,)).fetchone() is not None

    def next(self, skip: frozenset[int] = frozenset(), exclude_ranks: frozenset[int] = frozenset()) -> Optional[Row]:
        """The most urgent, oldest unfinished message whose seq is not in ``skip`` nor its rank in ``exclude_ranks``."""
        where: list[str] = []
        params: list[int] = []
        if skip:
            where.append(f"seq NOT IN ({','.join('?' * len(skip))})")
            params.extend(skip)
        if exclude_ranks:
            where.append(f"rank NOT IN ({','.join('?' * len(exclude_ranks))})")
            params.extend(exclude_ranks)
        sql = "SELECT * FROM messages" + (" WHERE " + " AND ".join(where) if where else "")
        with self._lock:
            raw = self._db.execute(sql + " ORDER BY rank DESC, seq LIMIT 1", tuple(params)).fetchone()
        return None if raw is None else _row(raw)

    def set_final(self, msg_id: str, status: dict[str, Any]) -> None:
        """The message is spoken (or dropped); its final status is being confirmed. A replay only re-sends it."""
        with self._lock:
            self._write("UPDATE messages SET final = ? WHERE id = ?", json.dumps(status, ensure_ascii=False), msg_id)

    def finish(self, msg_id: str, remember: bool) -> None:
        """Remove a finished message and, if ``remember``, journal its id: one transaction."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                removed = self._db.execute("DELETE FROM messages WHERE id = ?", (msg_id,)).rowcount
                if remember:
                    self._db.execute("INSERT OR REPLACE INTO done (id) VALUES (?)", (msg_id,))
                    self._trim_done()
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise SpoolError(f"spool {self.path}: {exc}") from None
            self._count -= removed

    def forget(self, msg_id: str) -> None:
        """Remove a message that stays with the broker (a fleet member stopping): it will come back."""
        with self._lock:
            self._count -= self._write("DELETE FROM messages WHERE id = ?", msg_id).rowcount

    def drop_unacked(self) -> int:
        """At start-up: remove messages the broker still holds for us (it resends them); how many."""
        with self._lock:
            n = self._write("DELETE FROM messages WHERE acked = 0").rowcount
            self._count -= n
            return n

    # -- finished ids ------------------------------------------------------------------------------

    def is_done(self, msg_id: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM done WHERE id = ?", (msg_id,)).fetchone() is not None

    def remember_done(self, ids: list[str]) -> None:
        """Journal finished ids (e.g. migrated from an older journal)."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("INSERT OR REPLACE INTO done (id) VALUES (?)", [(i,) for i in ids])
                self._trim_done()
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise SpoolError(f"spool {self.path}: {exc}") from None

    def done_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM done").fetchone()[0])

    def _trim_done(self) -> None:
        self._db.execute("DELETE FROM done WHERE seq <= (SELECT MAX(seq) FROM done) - ?", (self.done_capacity,))

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def close(self) -> None:
        with self._lock:
            try:
                self._db.close()
            except sqlite3.Error:  # pragma: no cover
                pass


def _row(raw: tuple[Any, ...]) -> Row:
    seq, msg_id, rank, received, job, acked, _delivery, final = raw
    return Row(seq=seq, id=msg_id, rank=rank, received=received, job=json.loads(job), acked=bool(acked),
               final=None if final is None else json.loads(final))




def import_journal(spool: Spool, path: Path) -> int:
    """Move the finished ids of an older daemon's journal (``done-ids.jsonl``) into the spool; how many."""
    if not path.exists():
        return 0
    ids = []
    with open(path, "rb") as f:
        for raw in f:
            try:
                msg_id = json.loads(raw)
            except ValueError:  # a torn last line
                continue
            if isinstance(msg_id, str):
                ids.append(msg_id)
    spool.remember_done(ids[-spool.done_capacity:] if spool.done_capacity else [])
    os.replace(path, path.with_name(path.name + ".imported"))
    log.info("imported %d finished id(s) from %s into the spool", len(ids), path)
    return len(ids)
