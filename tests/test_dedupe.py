"""Redelivery recognition: the finished-ids journal and the in-flight packet-id map."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jetvox.device.daemon.dedupe import FINISHED, Redeliveries
from jetvox.device.daemon.spool import Spool, import_journal


def test_an_older_journal_is_imported_into_the_spool(tmp_path: Path) -> None:
    journal = tmp_path / "done-ids.jsonl"
    journal.write_bytes(b'"a"\n"b"\n"c')  # a torn last line from a crash
    spool = Spool(tmp_path / "spool.sqlite", 10, 10)
    assert import_journal(spool, journal) == 2
    assert spool.is_done("a") and spool.is_done("b") and not spool.is_done("c")
    assert not journal.exists() and import_journal(spool, journal) == 0
    spool.close()


@dataclass
class D:
    topic: str
    payload: bytes
    mid: int
    generation: int


def test_redelivery_on_a_new_connection_is_recognised() -> None:
    r = Redeliveries()
    job = object()
    r.hold(D("t", b"hi", 5, generation=1), job)
    assert r.match(D("t", b"hi", 5, generation=1)) is None  # same connection: a new message
    assert r.match(D("t", b"hi", 5, generation=3)) is job
    assert r.match(D("t", b"other", 5, generation=3)) is None
    assert r.match(D("t", b"hi", 6, generation=3)) is None
    r.finished_unacked(D("t", b"hi", 5, generation=1))
    assert r.match(D("t", b"hi", 5, generation=3)) is FINISHED
    r.forget(D("t", b"hi", 5, generation=1))
    assert r.match(D("t", b"hi", 5, generation=3)) is None and len(r) == 0
