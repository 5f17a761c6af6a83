"""The embedded mode's adapters: in-process bus and hub, thread-pool run queue, serialized SQLite."""

from __future__ import annotations

import queue
import threading
import time

import gevent.queue
import pytest
from sqlalchemy import Integer, select, text, update
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from orchestrator.adapters import ports
from orchestrator.adapters.local_bus import LocalBus
from orchestrator.adapters.local_queue import LocalQueue
from orchestrator.adapters.ports import RESYNC, Live
from orchestrator.db.connection import make_engine, make_sessionmaker
from orchestrator.settings import Settings

LIFECYCLE = {"seq": 3, "prev": 2, "event": "thread.run.in_progress", "data": {"id": "run_1"}}
DELTA = {"seq": 10, "event": "thread.message.delta", "data": {"id": "msg_1"}}


def test_a_watcher_gets_what_is_published_after_it_watches_as_live_items():
    bus = LocalBus(replay_seconds=60)
    bus.publish("run_1", [LIFECYCLE])  # nobody watching yet: not delivered, not kept
    inbox = bus.watch("run_1")
    bus.publish("run_1", [LIFECYCLE])
    bus.publish_delta("run_1", DELTA)
    bus.publish("run_2", [LIFECYCLE])
    received = [inbox.get_nowait() for _ in range(inbox.qsize())]
    assert all(isinstance(item, Live) for item in received)
    assert [(i.seq, i.prev, i.event, i.data) for i in received] == [
        (3, 2, "thread.run.in_progress", {"id": "run_1"}),
        (10, None, "thread.message.delta", {"id": "msg_1"}),
    ]


def test_every_watcher_of_a_run_gets_the_same_item_so_its_frame_is_encoded_once():
    bus = LocalBus(replay_seconds=60)
    first, second = bus.watch("run_1"), bus.watch("run_1")
    bus.publish("run_1", [LIFECYCLE])
    assert first.get_nowait() is second.get_nowait()


def test_an_unwatched_inbox_gets_nothing_more():
    bus = LocalBus(replay_seconds=60)
    inbox, other = bus.watch("run_1"), bus.watch("run_1")
    assert bus.watcher_count() == 2
    bus.unwatch("run_1", inbox)
    bus.publish("run_1", [LIFECYCLE])
    assert inbox.empty() and other.qsize() == 1
    bus.unwatch("run_1", other)
    assert bus.watcher_count() == 0


def test_deltas_are_kept_for_replay_until_they_lapse():
    kept, lapsed = LocalBus(replay_seconds=60), LocalBus(replay_seconds=0)
    for bus in (kept, lapsed):
        bus.publish_delta("run_1", DELTA)
        bus.publish("run_1", [LIFECYCLE])
    assert kept.deltas("run_1") == [DELTA] and kept.deltas("run_2") == []
    assert lapsed.deltas("run_1") == []


def test_the_queue_works_each_waiting_id_once_and_survives_a_failing_one():
    done: list[str] = []
    finished = threading.Event()

    def work(run_id: str) -> None:
        if run_id == "bad":
            raise RuntimeError("boom")
        done.append(run_id)
        if run_id == "last":
            finished.set()

    queue = LocalQueue(workers=1)
    for run_id in ("a", "a", "bad", "b", "a", "last"):
        queue.enqueue(run_id)
    queue.start(work)
    assert finished.wait(5)
    assert done == ["a", "b", "last"]
    assert queue.stop(timeout=5)


def test_stopping_the_queue_drops_waiting_ids_and_waits_for_the_one_in_progress():
    started, release = threading.Event(), threading.Event()
    done: list[str] = []

    def work(run_id: str) -> None:
        started.set()
        release.wait(5)
        done.append(run_id)

    queue = LocalQueue(workers=1)
    queue.start(work)
    queue.enqueue("busy")
    assert started.wait(5)
    queue.enqueue("waiting")
    threading.Timer(0.2, release.set).start()
    assert queue.stop(timeout=5)
    assert done == ["busy"]


class _Base(DeclarativeBase):
    pass


class _Counter(_Base):
    __tablename__ = "counter"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(Integer)


def test_sqlite_transactions_that_read_then_write_neither_lose_updates_nor_hit_a_locked_database(tmp_path):
    engine = make_engine(Settings(database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}"), pool_size=4)
    _Base.metadata.create_all(engine)
    sessions = make_sessionmaker(engine)
    with sessions() as session:
        session.add(_Counter(id=1, value=0))
        session.commit()
    errors: list[Exception] = []

    def increment(times: int) -> None:
        for _ in range(times):
            try:
                with sessions() as session:
                    value = session.scalar(select(_Counter.value).where(_Counter.id == 1))
                    time.sleep(0.001)  # let another thread try to slip in between the read and the write
                    session.execute(update(_Counter).where(_Counter.id == 1).values(value=value + 1))
                    session.commit()
            except Exception as error:
                errors.append(error)

    threads = [threading.Thread(target=increment, args=(25,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with sessions() as session:
        assert session.scalar(select(_Counter.value)) == 200
        assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    engine.dispose()


def test_a_stalled_watchers_inbox_stays_bounded_and_ends_with_resync(monkeypatch):
    monkeypatch.setattr(ports, "INBOX_LIMIT", 3)
    bus = LocalBus(replay_seconds=60)
    inbox = bus.watch("run_1")
    for seq in range(10, 20):  # nobody reads
        bus.publish_delta("run_1", {**DELTA, "seq": seq})
    assert inbox.qsize() <= 3
    received = [inbox.get_nowait() for _ in range(inbox.qsize())]
    assert RESYNC in received  # the watcher re-reads the log and the replay buffer, which hold them all
    assert [d["seq"] for d in bus.deltas("run_1")] == list(range(10, 20))


@pytest.mark.parametrize("kind", ["stdlib", "gevent"])
def test_offering_to_a_full_inbox_empties_it_and_leaves_resync_without_blocking(kind):
    inbox = queue.Queue(3) if kind == "stdlib" else gevent.queue.Queue(3)
    for item in ("a", "b", "c", "d", "e"):
        ports.offer(inbox, item)
    assert [inbox.get_nowait() for _ in range(inbox.qsize())] == [RESYNC, "e"]


def test_a_reader_racing_the_emptying_of_its_full_inbox_never_skips_an_item():
    """Under threads, a watcher must never take a later item after earlier ones were dropped without RESYNC
    ahead of it: it would move its cursor past them and never re-read them."""
    inbox: queue.Queue = queue.Queue(50)
    gaps: list[tuple[int, int]] = []
    done = threading.Event()

    def read() -> None:
        last = -1
        while not done.is_set() or not inbox.empty():
            try:
                item = inbox.get(timeout=0.1)
            except queue.Empty:
                continue
            if item == RESYNC:
                last = None  # the watcher re-reads everything it missed from the log
                continue
            if last is not None and item != last + 1:
                gaps.append((last, item))
            last = item
            time.sleep(0.00002 if item % 7 else 0.0005)

    reader = threading.Thread(target=read)
    reader.start()
    for n in range(20_000):
        ports.offer(inbox, n)
    done.set()
    reader.join(30)
    assert gaps == []


# The events' wire format over Redis (adapters/redis_bus.py): a header line, then the data's JSON as relayed.


def test_an_event_over_redis_keeps_its_data_byte_for_byte_as_the_sse_frame_carries_it():
    import json

    from orchestrator.adapters.ports import Live
    from orchestrator.adapters.redis_bus import decode, decode_head, encode
    from orchestrator.api.sse import frame

    event = {"seq": 7, "prev": 5, "event": "thread.message.delta", "data": {"text": "two\nlines, ünïcode ✓"}}
    payload = encode(event)
    head, data = decode_head(payload.encode())
    assert head == {"seq": 7, "prev": 5, "event": "thread.message.delta"}
    assert decode(payload) == event
    relayed = Live(head["seq"], head["prev"], head["event"], None, raw=data)
    assert frame(7, "thread.message.delta", relayed.data_json) == frame(7, event["event"], event["data"])
    # What an older release publishes during an upgrade: one JSON object.
    older = json.dumps(event)
    assert decode(older) == event and decode_head(older)[1] == relayed.data_json
