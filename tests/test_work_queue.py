"""The priority queue: ordering, bounds, TTL, cut-off of a low message by an alert."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from jetvox.device.daemon.spool import Spool
from jetvox.device.daemon.work_queue import Job, WorkQueue


@pytest.fixture
def make_queue(tmp_path: Path):  # type: ignore[no-untyped-def]
    made: list[Spool] = []

    def make(capacity: int, **kw: object) -> WorkQueue:
        spool = Spool(tmp_path / f"spool{len(made)}.sqlite", capacity, 100)
        made.append(spool)
        return WorkQueue(spool, **kw)  # type: ignore[arg-type]

    yield make
    for s in made:
        s.close()


def job(msg_id: str, priority: str = "normal", **kw: object) -> Job:
    return Job(id=msg_id, text=msg_id, priority=priority, **kw)  # type: ignore[arg-type]


def drain(q: WorkQueue) -> list[str]:
    out = []
    while (j := q.get(timeout=0)) is not None:
        out.append(j.id)
    return out


def test_priority_then_fifo(make_queue) -> None:  # type: ignore[no-untyped-def]
    q = make_queue(10)
    for msg_id, prio in [("l1", "low"), ("n1", "normal"), ("h1", "high"), ("n2", "normal"), ("a1", "alert"),
                         ("l2", "low"), ("a2", "alert")]:
        assert q.put(job(msg_id, prio))
    assert drain(q) == ["a1", "a2", "h1", "n1", "n2", "l1", "l2"]


def test_bounded_by_the_spool_until_completed(make_queue) -> None:  # type: ignore[no-untyped-def]
    q = make_queue(2)
    assert q.put(job("a")) and q.put(job("b"))
    assert not q.put(job("c"))
    taken = q.get(timeout=0)
    q.start(taken)
    assert len(q) == 1  # waiting: the one being spoken does not count, but it holds its place in the spool
    assert not q.put(job("c"))
    q.finish(taken)
    q.complete(taken)
    assert q.put(job("c"))
    assert drain(q) == ["b", "c"]


def test_get_times_out_and_wakes_on_put(make_queue) -> None:  # type: ignore[no-untyped-def]
    q = make_queue(2)
    t0 = time.monotonic()
    assert q.get(timeout=0.1) is None
    assert time.monotonic() - t0 >= 0.09
    threading.Timer(0.05, lambda: q.put(job("late"))).start()
    got = q.get(timeout=5)
    assert got is not None and got.id == "late"


def test_alert_cuts_off_a_low_message_being_spoken(make_queue) -> None:  # type: ignore[no-untyped-def]
    q = make_queue(10, alert_cuts_off=("low",))
    q.put(job("l", "low"))
    low = q.get(timeout=0)
    q.start(low)
    q.put(job("h", "high"))
    assert not low.cancel.is_set()
    q.put(job("a", "alert"))
    assert low.cancel.is_set() and "cut off by alert a" in low.cancel_reason
    q.finish(low)
    assert drain(q) == ["a", "h"]


def test_alert_does_not_cut_off_normal_by_default(make_queue) -> None:  # type: ignore[no-untyped-def]
    q = make_queue(10)
    q.put(job("n"))
    normal = q.get(timeout=0)
    q.start(normal)
    q.put(job("a", "alert"))
    assert not normal.cancel.is_set()


def test_ttl(make_queue) -> None:  # type: ignore[no-untyped-def]
    old = job("old", ttl_s=1.0, received=time.monotonic() - 2)
    fresh = job("fresh", ttl_s=1.0)
    forever = job("forever", ttl_s=0.0, received=time.monotonic() - 1e6)
    assert old.expired() and not fresh.expired() and not forever.expired()


def test_find_and_close(make_queue) -> None:  # type: ignore[no-untyped-def]
    q = make_queue(10)
    a, b = job("a"), job("b", "high")
    q.put(a, acked=False)  # a fleet member's: kept in memory to acknowledge when finished
    q.put(b, acked=False)
    q.put(job("spooled"))
    current = q.get(timeout=0)
    q.start(current)
    assert current is b
    assert q.find("a") is a and q.find("b") is b and q.find("zzz") is None
    assert q.find("spooled") is None and q.waiting("spooled")
    assert [j.id for j in q.close()] == ["a"]
    assert q.get(timeout=1) is None and not q.put(job("c"))


def test_replay_after_a_restart_keeps_order_fields_and_age(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite"
    spool = Spool(path, 10, 10)
    q = WorkQueue(spool)
    q.put(job("old", ttl_s=5.0, received=time.monotonic() - 3, volume=0.5, length_scale=1.5, output="both"))
    q.put(job("urgent", "alert"))
    q.put(job("unacked"), acked=False)
    spool.close()  # as after kill -9: nothing else was written

    spool = Spool(path, 10, 10)
    assert spool.drop_unacked() == 1  # a fleet member's: the broker resends it
    q = WorkQueue(spool)
    assert [j.id for j in [q.get(timeout=0), q.get(timeout=0)] if j] == ["urgent", "old"]
    spool.close()
    spool = Spool(path, 10, 10)
    urgent = spool.next()
    assert urgent is not None and urgent.id == "urgent"
    old = spool.next(skip=frozenset({urgent.seq}))
    assert old is not None and old.id == "old"
    replayed = Job.from_row(old)
    assert (replayed.volume, replayed.length_scale, replayed.output, replayed.ttl_s) == (0.5, 1.5, "both", 5.0)
    assert 2.9 < replayed.age() < 10  # its wait counts from when it was first accepted
    spool.close()


def test_a_recorded_final_status_survives_and_complete_journals_the_id(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite"
    spool = Spool(path, 10, 2)
    q = WorkQueue(spool)
    q.put(job("x", remember=True))
    x = q.get(timeout=0)
    q.record_final(x, {"id": "x", "state": "done"})
    spool.close()
    spool = Spool(path, 10, 2)
    q = WorkQueue(spool)
    again = q.get(timeout=0)
    assert again is not None and again.final == {"id": "x", "state": "done"}
    q.complete(again)
    assert spool.is_done("x") and len(spool) == 0
    for i in range(3):  # the journal keeps the newest done_capacity ids
        spool.remember_done([f"later{i}"])
    assert not spool.is_done("x") and spool.done_count() == 2
    spool.close()
