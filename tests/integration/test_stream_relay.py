"""The relay's ordering rules against a real event log, with the live feed scripted by the test."""

from __future__ import annotations

import dataclasses
import queue

from orchestrator.adapters import ports
from orchestrator.adapters.local_bus import LocalBus
from orchestrator.adapters.ports import RESYNC, InMemoryBus, Live
from orchestrator.api import sse
from orchestrator.db.events import events_after
from orchestrator.engine import advance as engine
from orchestrator.schemas.assistants import CreateAssistant
from orchestrator.schemas.runs import CreateThreadAndRun
from orchestrator.services import assistants, backlog, runs, streams


def relay(*args, **kwargs):
    """The relay's events as the stream sends them (api/sse.py)."""
    return sse.writes(streams.relay(*args, **kwargs))


class ScriptedHub:
    healthy = True

    def __init__(self, items):
        self.inbox = queue.Queue()
        for item in items:
            self.inbox.put(item)

    def watch(self, run_id):
        return self.inbox

    def unwatch(self, run_id, inbox):
        pass


def delta(seq, prev):
    return {"seq": seq, "prev": prev, "event": "thread.message.delta", "data": {"n": seq}}


def ids(chunks):
    """Event ids in order; one chunk can carry several frames (a watcher that fell behind)."""
    text = "".join(c.decode() if isinstance(c, bytes) else c for c in chunks)
    return [int(f.split("\n")[0][4:]) for f in text.split("\n\n") if f.startswith("id: ")]


def new_run(ctx, tenant):
    assistant = assistants.create(ctx, tenant, CreateAssistant(model="local"))
    body = CreateThreadAndRun.model_validate(
        {"assistant_id": assistant["id"], "thread": {"messages": [{"role": "user", "content": "x"}]}}
    )
    return runs.create_thread_and_run(ctx, tenant, body).run["id"]  # events 1..3 are stored


def test_buffered_deltas_never_overtake_lifecycle_events_not_yet_in_the_log(ctx, tenant):
    run_id = new_run(ctx, tenant)
    # The worker committed events 4..8 just after our log read, then streamed deltas 10..12 (block after 8),
    # which the replay buffer already holds when we read it.
    for d in (delta(10, 8), delta(11, 8), delta(12, 8)):
        ctx.bus.publish_delta(run_id, d)
    lifecycle = [Live(seq, seq - 1, f"thread.step.{seq}", {}) for seq in range(4, 9)]
    live = [
        *lifecycle,
        *(Live(d, 8, "thread.message.delta", {}) for d in (10, 11, 12)),
        Live(10013, 8, "thread.run.completed", {}),
    ]
    frames = list(relay(ctx, ScriptedHub(live), run_id, 0))
    assert ids(frames) == [1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 10013]
    assert frames[-1].endswith(b"event: done\ndata: [DONE]\n\n")


def test_a_live_event_whose_predecessor_is_missing_makes_the_watcher_read_the_log(ctx, tenant):
    run_id = new_run(ctx, tenant)
    # Event 3 (run.queued) is in the log but never arrives live; event 4 arrives claiming 3 precedes it.
    frames = list(relay(ctx, ScriptedHub([Live(4, 3, "thread.run.cancelled", {})]), run_id, 2))
    assert ids(frames) == [3, 4]


def test_a_resumed_watcher_starts_after_its_cursor_including_buffered_deltas(ctx, tenant):
    run_id = new_run(ctx, tenant)
    for d in (delta(4, 3), delta(5, 3)):
        ctx.bus.publish_delta(run_id, d)
    frames = list(relay(ctx, ScriptedHub([Live(6, 3, "thread.run.failed", {})]), run_id, 4))
    assert ids(frames) == [5, 6]


def test_a_watcher_that_fell_behind_sends_what_is_waiting_in_one_write(ctx, tenant):
    run_id = new_run(ctx, tenant)
    waiting = [Live(seq, 3, "thread.message.delta", {"n": seq}) for seq in (4, 5, 6)]
    chunks = list(relay(ctx, ScriptedHub([*waiting, Live(7, 3, "thread.run.completed", {})]), run_id, 3))
    assert ids(chunks) == [4, 5, 6, 7]
    assert len(chunks) == 1  # the four waiting events and `done` in one write
    assert chunks[0].count(b"\n\n") == 5 and chunks[0].endswith(b"data: [DONE]\n\n")


def test_a_long_backlog_goes_out_in_writes_of_bounded_size(ctx, tenant):
    run_id = new_run(ctx, tenant)
    text = "x" * 1000
    for seq in range(4, 504):  # about 500 KB of deltas waiting in the replay buffer
        ctx.bus.publish_delta(run_id, {**delta(seq, 3), "data": {"text": text}})
    chunks = list(relay(ctx, ScriptedHub([Live(504, 3, "thread.run.completed", {})]), run_id, 0))
    assert ids(chunks) == list(range(1, 505))
    assert 8 <= len(chunks) <= 20  # neither one write per frame nor one write for everything
    assert max(len(c) for c in chunks) < sse.WRITE_LIMIT + 2000


def test_a_watcher_that_stalled_past_its_inbox_limit_still_gets_every_event_once(ctx, tenant, monkeypatch):
    monkeypatch.setattr(ports, "INBOX_LIMIT", 4)
    bus = LocalBus(replay_seconds=60)
    ctx = dataclasses.replace(ctx, bus=bus, hub=bus)
    run_id = new_run(ctx, tenant)
    stream = relay(ctx, bus, run_id, 0)
    first = next(stream)  # watching; then the client stops reading while 15 deltas go out
    for seq in range(10, 25):
        bus.publish_delta(run_id, delta(seq, 3))
    (inbox,) = bus._watchers[run_id]
    assert inbox.qsize() <= 4 and RESYNC in inbox.queue  # dropped, to be re-read from the replay buffer
    bus.publish(run_id, [{"seq": 100, "prev": 3, "event": "thread.run.completed", "data": {}}])
    assert ids([first, *stream]) == [1, 2, 3, *range(10, 25), 100]


def finished_run(ctx, tenant, message="x"):
    assistant = assistants.create(
        ctx,
        tenant,
        CreateAssistant.model_validate(
            {"model": "local", "tools": [{"type": "function", "function": {"name": "lookup"}}]}
        ),
    )
    body = CreateThreadAndRun.model_validate(
        {"assistant_id": assistant["id"], "thread": {"messages": [{"role": "user", "content": message}]}}
    )
    run_id = runs.create_thread_and_run(ctx, tenant, body).run["id"]
    engine.advance(ctx, run_id)
    return run_id


def last_seq(ctx, run_id):
    with ctx.uow() as uow:
        return events_after(uow.session, run_id, 0)[-1]["seq"]


def test_a_stream_resumed_at_or_past_the_final_event_of_a_finished_run_ends_at_once(ctx, tenant):
    run_id = finished_run(ctx, tenant)
    final = last_seq(ctx, run_id)
    for cursor in (final, final + 1, 2**31 - 1):
        frames = list(relay(ctx, ScriptedHub([]), run_id, cursor))  # an empty live feed: nothing else ends it
        assert ids(frames) == [] and b"".join(frames) == sse.DONE


def test_a_stream_resumed_at_a_leg_that_ended_at_requires_action_ends_at_once(ctx, tenant):
    run_id = finished_run(ctx, tenant, "please lookup")
    with ctx.uow() as uow:
        last = events_after(uow.session, run_id, 0)[-1]
    assert last["event"] == "thread.run.requires_action"
    assert b"".join(relay(ctx, ScriptedHub([]), run_id, last["seq"])) == sse.DONE
    # One event earlier, the stream still delivers the leg's last event and then ends.
    assert ids(relay(ctx, ScriptedHub([]), run_id, last["seq"] - 1)) == [last["seq"]]


class CountingBus(InMemoryBus):
    """Records the size of every page the relay asks of the replay buffer."""

    def __init__(self):
        super().__init__()
        self.pages: list[int] = []

    def deltas(self, run_id, start=0, stop=-1):
        page = super().deltas(run_id, start, stop)
        self.pages.append(len(page))
        return page

    def delta_count(self, run_id):
        return len(super().deltas(run_id))


def test_a_long_backlog_is_read_in_pages_only_as_the_client_takes_it(ctx, tenant):
    bus = CountingBus()
    ctx = dataclasses.replace(ctx, bus=bus)
    run_id = new_run(ctx, tenant)
    for seq in range(4, 4 + 1000):
        bus.publish_delta(run_id, {**delta(seq, 3), "data": {"text": "y" * 1000}})
    stream = relay(ctx, ScriptedHub([Live(10**6, 3, "thread.run.completed", {})]), run_id, 0)
    first = next(stream)  # one write of about 64 KiB, taken from the first page of deltas alone
    assert ids([first])[:4] == [1, 2, 3, 4] and len(first) <= sse.WRITE_LIMIT + 2000
    assert sum(bus.pages) <= 10 * backlog.DELTA_PAGE  # a few pages (a write holds ~60 deltas), not 1,000
    rest = [first, *stream]
    assert ids(rest) == [*range(1, 4 + 1000), 10**6]
    assert max(bus.pages) <= backlog.DELTA_PAGE


def test_a_resumed_watcher_skips_the_buffered_deltas_before_its_cursor_without_reading_them(ctx, tenant):
    bus = CountingBus()
    ctx = dataclasses.replace(ctx, bus=bus)
    run_id = new_run(ctx, tenant)
    for seq in range(4, 4 + 2000):
        bus.publish_delta(run_id, delta(seq, 3))
    cursor = 3 + 2000 - 5
    frames = list(relay(ctx, ScriptedHub([Live(10**6, 3, "thread.run.completed", {})]), run_id, cursor))
    assert ids(frames) == [*range(cursor + 1, 4 + 2000), 10**6]
    assert sum(bus.pages) < 2 * 20  # bisection probes and one short page, not the 2,000 before the cursor


# A stream of the request's own change: subscribed before the run was enqueued, it starts from memory.


def thread_and_run(ctx, tenant, watch=None):
    assistant = assistants.create(ctx, tenant, CreateAssistant(model="local"))
    body = CreateThreadAndRun.model_validate(
        {"assistant_id": assistant["id"], "thread": {"messages": [{"role": "user", "content": "x"}]}}
    )
    return runs.create_thread_and_run(ctx, tenant, body, watch=watch)


def test_a_change_hands_its_stream_its_own_committed_events_after_subscribing_first(ctx, tenant):
    order = []
    ctx.queue.enqueue = lambda run_id, _enqueue=ctx.queue.enqueue: (order.append("enqueue"), _enqueue(run_id))
    accepted = thread_and_run(ctx, tenant, watch=lambda run_id: order.append(("watch", run_id)))
    assert order == [("watch", accepted.run["id"]), "enqueue"]  # nothing can happen before the watch
    with ctx.uow() as uow:
        stored = events_after(uow.session, accepted.run["id"], 0)
    assert [(e["seq"], e["event"], e["data"]) for e in accepted.events] == [
        (e["seq"], e["event"], e["data"]) for e in stored
    ]
    assert [e["prev"] for e in accepted.events] == [0, 1, 2]


def test_a_stream_that_starts_from_the_changes_events_reads_nothing_back(ctx, tenant):
    accepted = thread_and_run(ctx, tenant)
    hub = ScriptedHub([Live(4, 3, "thread.run.completed", {})])
    # Events the log does not hold: had the relay read the log, it would have sent the stored ones.
    first = [{**e, "data": {"from": "memory"}, "data_json": '{"from":"memory"}'} for e in accepted.events]
    frames = b"".join(relay(ctx, hub, accepted.run["id"], 0, inbox=hub.inbox, first=first))
    assert ids([frames]) == [1, 2, 3, 4]
    assert frames.count(b'{"from":"memory"}') == 3


def test_an_event_committed_but_never_published_reaches_the_stream_after_a_keepalive_of_silence(ctx, tenant):
    ctx = dataclasses.replace(ctx, settings=ctx.settings.model_copy(update={"keepalive_seconds": 0.0}))
    accepted = thread_and_run(ctx, tenant)
    run_id = accepted.run["id"]
    # The run ends (cancelled) and the live feed never says so, as when its writer dies between commit
    # and publish: a tick arrives (then, so that the test ends either way, a late event that would make
    # the relay read the log at last).
    runs.cancel(ctx, tenant, accepted.run["thread_id"], run_id)
    hub = ScriptedHub([streams.TICK, Live(99, 98, "thread.run.failed", {})])
    frames = b"".join(relay(ctx, hub, run_id, 0, inbox=hub.inbox, first=accepted.events))
    assert ids([frames]) == [1, 2, 3, 4, 5]
    assert b"event: thread.run.cancelled" in frames and frames.endswith(sse.DONE)
    assert sse.KEEPALIVE not in frames
