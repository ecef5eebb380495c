"""The priority queue: ordering, bounds, TTL, cut-off of a low message by an alert."""

from __future__ import annotations

import threading
import time

from jetvox.device.daemon.work_queue import Job, WorkQueue


def job(msg_id: str, priority: str = "normal", **kw: object) -> Job:
    return Job(id=msg_id, text=msg_id, priority=priority, **kw)  # type: ignore[arg-type]


def drain(q: WorkQueue) -> list[str]:
    out = []
    while (j := q.get(timeout=0)) is not None:
        out.append(j.id)
    return out


def test_priority_then_fifo() -> None:
    q = WorkQueue(10)
    for msg_id, prio in [("l1", "low"), ("n1", "normal"), ("h1", "high"), ("n2", "normal"), ("a1", "alert"),
                         ("l2", "low"), ("a2", "alert")]:
        assert q.put(job(msg_id, prio))
    assert drain(q) == ["a1", "a2", "h1", "n1", "n2", "l1", "l2"]


def test_bounded() -> None:
    q = WorkQueue(2)
    assert q.put(job("a")) and q.put(job("b"))
    assert not q.put(job("c"))
    assert len(q) == 2
    q.start(q.get(timeout=0))  # the one being spoken does not count
    assert q.put(job("c"))


def test_get_times_out_and_wakes_on_put() -> None:
    q = WorkQueue(2)
    t0 = time.monotonic()
    assert q.get(timeout=0.1) is None
    assert time.monotonic() - t0 >= 0.09
    threading.Timer(0.05, lambda: q.put(job("late"))).start()
    got = q.get(timeout=5)
    assert got is not None and got.id == "late"


def test_alert_cuts_off_a_low_message_being_spoken() -> None:
    q = WorkQueue(10, alert_cuts_off=("low",))
    low = job("l", "low")
    q.put(low)
    q.start(q.get(timeout=0))
    q.put(job("h", "high"))
    assert not low.cancel.is_set()
    q.put(job("a", "alert"))
    assert low.cancel.is_set() and "cut off by alert a" in low.cancel_reason
    q.finish(low)
    assert drain(q) == ["a", "h"]


def test_alert_does_not_cut_off_normal_by_default() -> None:
    q = WorkQueue(10)
    normal = job("n")
    q.put(normal)
    q.start(q.get(timeout=0))
    q.put(job("a", "alert"))
    assert not normal.cancel.is_set()


def test_ttl() -> None:
    old = job("old", ttl_s=1.0, received=time.monotonic() - 2)
    fresh = job("fresh", ttl_s=1.0)
    forever = job("forever", ttl_s=0.0, received=time.monotonic() - 1e6)
    assert old.expired() and not fresh.expired() and not forever.expired()


def test_find_and_close() -> None:
    q = WorkQueue(10)
    a, b = job("a"), job("b", "high")
    q.put(a)
    q.put(b)
    current = q.get(timeout=0)
    q.start(current)
    assert current is b
    assert q.find("a") is a and q.find("b") is b and q.find("zzz") is None
    assert [j.id for j in q.close()] == ["a"]
    assert q.get(timeout=1) is None and not q.put(job("c"))
