"""Redelivery recognition: the finished-ids journal and the in-flight packet-id map."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jetvox.device.daemon.dedupe import FINISHED, DoneIds, Redeliveries


def test_journal_survives_reopen_and_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "run" / "done-ids.jsonl"
    done = DoneIds(path, capacity=5)
    for i in range(23):
        done.add(f"m{i}")
    assert len(done) == 5 and "m22" in done and "m17" not in done
    assert len(path.read_text().splitlines()) < 10  # compacted
    done.close()
    again = DoneIds(path, capacity=5)
    assert [f"m{i}" in again for i in range(16, 23)] == [False, False, True, True, True, True, True]


def test_torn_last_line_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "done.jsonl"
    path.write_bytes(b'"a"\n"b"\n"c')  # a crash in the middle of the last write
    done = DoneIds(path, capacity=10)
    assert "a" in done and "b" in done and "c" not in done
    done.add("d")
    done.close()
    assert "d" in DoneIds(path, capacity=10)


def test_disabled_journal(tmp_path: Path) -> None:
    done = DoneIds(tmp_path / "x.jsonl", capacity=0)
    done.add("a")
    assert "a" not in done and not (tmp_path / "x.jsonl").exists()


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
