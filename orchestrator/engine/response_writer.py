"""The writes of one model call of a Response: output items opened as the model starts them, every event
of its stream stored (deltas too: the stream's sequence numbers are dense, and the same on every replay
and after any worker restart), the server-side calls' items, and the end.

    Open(message)       ─▶ output_item.added, content_part.added          item row + events, one txn
    text                ─▶ output_text.delta                              stored in batches (FLUSH_SECONDS)
    a function call     ─▶ output_item.added, function_call_arguments.delta
    a server-side call  ─▶ output_item.added, *_call.in_progress (and the code as it is written)
    before running them ─▶ *_call.searching / interpreting
    their results       ─▶ *_call.completed, output_item.done                the response goes on
    end                 ─▶ *.done events, output_item.done, the run's move (response.completed, …)

Every write is fenced by the lease, whose statement numbers the events: a worker that lost the response
writes nothing more. A worker that takes a response over redoes the model call in the items it finds
open (same ids, same output indexes), and resumes their deltas where the stored ones end.
"""

from __future__ import annotations

import time
from typing import Any

from orchestrator.context import Context
from orchestrator.db import models, runs
from orchestrator.db import responses as store
from orchestrator.db.response_models import Response, Side
from orchestrator.db.runs import Writer
from orchestrator.domain import hosted_tools
from orchestrator.domain.errors import StaleWrite
from orchestrator.domain.hosted_tools import HostedCall
from orchestrator.domain.ids import new_id
from orchestrator.domain.lifecycle import Api, RunEvent, RunStatus, StepType
from orchestrator.domain.model_call import Delta, Ending, ModelCall, Open, add_usage
from orchestrator.domain.response_items import latest_user_text
from orchestrator.engine import hosted, lifecycle
from orchestrator.engine.responses import code_output, output, wire
from orchestrator.files import containers

# Stored deltas go in batches: at most one write per interval; a delta after a quiet interval goes at once,
# and one held back goes when its interval ends, even if the model is silent then (model_reader).
FLUSH_SECONDS = 0.2


class ResponseWriter:
    def __init__(self, ctx: Context, run: models.Run, owner: str, *, resumed: bool):
        self.ctx, self.run, self.owner = ctx, run, owner
        self.turn = 0
        self._events: list[tuple[str, dict]] = []  # recorded, not yet stored
        self._pending_items: list[tuple[int, dict]] = []  # changed, not yet stored
        self._new: set[int] = set()  # positions of items not stored yet at all
        self._values: dict[str, Any] = {}  # run fields the next write fences in
        self._flushed = 0.0
        self._message: _Open | None = None
        self._calls: dict[int, _Open] = {}  # the model's index → the item open for it
        self._echo: Response | None = None  # read when first needed (a plain reply never needs it)
        self._ending: tuple[int, int] | None = None  # where the reply's ending events and items begin
        self._left: list[_Open] = []  # items a dead worker left open, in order: this call redoes them
        self._next = 0
        if resumed or run.turn:  # a first call of a fresh response has nothing to find
            with ctx.uow() as uow:
                stored = store.items(uow.session, run.id, Side.OUTPUT)
                self._left = [
                    _Open(position, item, output.streamed_text(uow.session, run.id, item["id"]))
                    for position, item in enumerate(stored)
                    if resumed and item.get("status") == "in_progress"
                ]
            self._next = len(stored)

    @property
    def _included(self) -> frozenset[str]:
        """The request's `include`, for an item whose results it may show."""
        return frozenset(self._request().echo.get("include") or ())

    @property
    def _container_id(self) -> str | None:
        """The container the response's code runs in (made or named at create)."""
        return self._request().container_id

    def _request(self) -> Response:
        """Read in a unit of work of its own: never call it inside another (SQLite would wait on itself)."""
        if self._echo is None:
            with self.ctx.uow() as uow:
                self._echo = store.echo_of(uow.session, self.run.id)
        return self._echo

    # --- the model call, as it streams ----------------------------------------------------------------

    def apply(self, effect: Open | Delta, call: ModelCall) -> None:
        if isinstance(effect, Open):
            self._open_call(effect.kind, call)
        elif effect.event is RunEvent.MESSAGE_DELTA:
            for part in effect.delta["content"]:
                if part.get("type") == "text":  # a Response's images are its code runs' outputs instead
                    self._text(part["text"]["value"])
        else:
            for entry in effect.delta["step_details"]["tool_calls"]:
                self._tool_call(entry)

    def _open_call(self, kind: StepType, call: ModelCall) -> None:
        self.turn = self.run.turn + 1
        if kind is StepType.MESSAGE_CREATION:
            left = self._adopt("message")
            if left is not None:
                self._message, call.streamed = left, left.sent
            else:
                self._message = self._add(wire.message(new_id("msg"), "in_progress"))
                at = self._message.at()
                part = wire.output_text()
                self._record("response.content_part.added", {**at, "content_index": 0, "part": part})
        # Stored with the first delta (one transaction for the item, its opening and its first words).
        self._values["turn"] = self.turn

    def _text(self, text: str) -> None:
        message = self._message
        message.sent += text
        at = message.at()
        self._record("response.output_text.delta", {**at, "content_index": 0, "delta": text, "logprobs": []})
        self._maybe_flush()

    def _tool_call(self, entry: dict[str, Any]) -> None:
        index = entry["index"]
        opened = self._calls.get(index)
        if opened is None:
            opened = self._calls[index] = self._open_tool_call(entry)
        fragment = _fragment(entry)
        if not fragment:
            return
        if opened.skip:  # a redone call: what the stream carried already is not sent again
            taken = min(len(fragment), opened.skip)
            fragment, opened.skip = fragment[taken:], opened.skip - taken
            if not fragment:
                return
        opened.sent += fragment
        kind = opened.item["type"]
        if kind == "function_call":
            self._record("response.function_call_arguments.delta", {**opened.at(), "delta": fragment})
        elif kind == "code_interpreter_call":
            self._record("response.code_interpreter_call_code.delta", {**opened.at(), "delta": fragment})
        self._maybe_flush()

    def _open_tool_call(self, entry: dict[str, Any]) -> _Open:
        kind = entry["type"]
        if kind == "function":
            left = self._adopt("function_call")
            if left is not None:
                left.redo()
                return left
            function = entry["function"]
            item = wire.function_call(new_id("fc"), entry["id"], function.get("name", ""), "", "in_progress")
            return self._add(item)
        item_type = "file_search_call" if kind == "file_search" else "code_interpreter_call"
        left = self._adopt(item_type)
        if left is not None:
            left.redo()
            return left
        if item_type == "file_search_call":
            item = {
                "id": new_id("fs"),
                "type": item_type,
                "status": "in_progress",
                "queries": [],
                "results": None,
            }
        else:
            container = self._container_id
            item = {"id": new_id("ci"), "type": item_type, "status": "in_progress", "container_id": container}
            item |= {"code": "", "outputs": None}
        opened = self._add(item)
        self._record(f"response.{item_type}.in_progress", opened.at())
        self._maybe_flush()  # a server-side call's start shows at once
        return opened

    # --- server-side calls ------------------------------------------------------------------------------

    def sources(self) -> hosted.Sources:
        """Before the model's server-side calls run: their items say so, and what they draw on."""
        for opened in self._calls.values():
            kind = opened.item["type"]
            if kind == "file_search_call":
                self._record("response.file_search_call.searching", opened.at())
            elif kind == "code_interpreter_call":
                code = opened.prefix + opened.sent
                self._record("response.code_interpreter_call_code.done", {**opened.at(), "code": code})
                self._record("response.code_interpreter_call.interpreting", opened.at())
        self._flush()
        return response_sources(self.ctx, self.run)

    def executed(self, done: hosted.Executed) -> None:
        """Nothing: a server-side call's results go out with its item's end, in `complete_hosted`."""

    def complete_hosted(self, call: ModelCall, done: dict[int, dict], failure: dict | None = None) -> None:
        """The server-side calls' items, done and stored: nobody runs them again. The response goes on (a
        call that could not run at all ends `failed`, and the model reads that it did not run)."""
        for index, opened in sorted(self._calls.items()):
            stored = done.get(index)
            if stored is not None and opened.item["type"] != "function_call":
                self._end_hosted(opened, call.hosted_calls[index], stored, failed=failure is not None)
        self._write(usage=add_usage(self.run.usage, call.usage()))

    def _end_hosted(
        self, opened: _Open, made: HostedCall, stored: dict[str, Any], *, failed: bool = False
    ) -> None:
        item = dict(opened.item)
        if item["type"] == "file_search_call":
            from orchestrator.files import search  # loaded by the first search (hosted.py)

            found = stored["file_search"]["results"]
            stores = next(
                (t["vector_store_ids"] for t in self.run.tools if t.get("type") == "file_search"), []
            )
            attributes = search.attributes(self.ctx, stores, [r["file_id"] for r in found])
            item["queries"] = [q for q in made.queries("") if q]
            item["results"] = [
                {
                    "file_id": r["file_id"],
                    "filename": r["file_name"],
                    "score": r["score"],
                    "text": r["content"][0]["text"] if r.get("content") else "",
                    "attributes": attributes.get(r["file_id"], {}),
                }
                for r in found
            ]
        else:
            item["code"] = stored["code_interpreter"]["input"]
            item["outputs"] = code_output.kept(self.ctx, self.run.tenant_id, self._container_id, stored)
        item["status"] = "failed" if failed else "completed"
        item["_model"] = stored["_model"]["output"]  # what the model read back, citation markers and all
        item["_turn"] = self.turn
        opened.item = item
        if not failed:
            self._record(f"response.{item['type']}.completed", opened.at())
        self._done(opened)

    # --- the end ------------------------------------------------------------------------------------------

    def end_leg(self, call: ModelCall, ending: Ending, done: dict[int, dict] | None = None) -> None:
        """End the items this call wrote and move the response as `ending` says, in one transaction (a
        worker that dies before it redoes the call; none after it can). A cancel that landed while the
        model was finishing wins: what was written is kept, and the open items end incomplete."""
        target, values = _target(ending)
        usage = add_usage(self.run.usage, call.usage())
        replied = target in (RunStatus.COMPLETED, RunStatus.INCOMPLETE)
        if replied:
            self._end_items(call, "completed" if target is RunStatus.COMPLETED else "incomplete")
        try:
            self._end(target, {**values, "usage": usage}, settled=replied)
        except StaleWrite:
            with self.ctx.uow() as uow:
                cancelling = runs.holder_status(uow.session, self.run.id, self.owner) is RunStatus.CANCELLING
            if not cancelling:
                raise
            self._drop_unstored_endings()
            self._end(RunStatus.CANCELLED, {"usage": usage}, settled=False)

    def _end(self, target: RunStatus, values: dict[str, Any], *, settled: bool) -> None:
        """What is still to be stored, and the move: one transaction."""
        with self.ctx.uow() as uow:
            self._store(uow)
            lifecycle.end(
                self.ctx,
                uow,
                self.run.id,
                target,
                Writer.holder(self.owner),
                api=Api.RESPONSES,
                output_settled=settled,
                **self._values,
                **values,
            )
            uow.commit()
        self._stored()

    def _end_items(self, call: ModelCall, status: str) -> None:
        """The reply's message and function calls, done: their rows and the events that end them."""
        self._ending = len(self._events), len(self._pending_items)
        if self._message is not None:
            message = self._message
            text = call.text or message.sent
            notes = self._annotations(text) if _has_hosted(self.run) else []
            whole = {**message.item, "content": [wire.output_text(text, notes)]}
            ended, closing = output.close(whole, message.position, text, status)
            for number, note in enumerate(notes):
                data = {**message.at(), "content_index": 0, "annotation_index": number, "annotation": note}
                self._events.append(
                    ("response.output_text.annotation.added", _typed("annotation.added", data))
                )
            self._events += closing
            self._pending_items.append((message.position, ended))
        for opened in self._calls.values():
            if opened.item["type"] == "function_call" and opened.item["status"] == "in_progress":
                arguments = opened.prefix + opened.sent
                ended, closing = output.close(opened.item, opened.position, arguments, "completed")
                self._events += closing
                self._pending_items.append((opened.position, ended))

    def _drop_unstored_endings(self) -> None:
        """A cancel won over the reply's end: its items are closed incomplete by the lifecycle instead."""
        if self._ending is not None:
            events, items = self._ending
            del self._events[events:], self._pending_items[items:]

    def _annotations(self, text: str) -> list[dict[str, Any]]:
        """Citations of this response's searches, and of its container's files, found in the reply."""
        citations: dict[tuple[int, int], str] = {}
        names: dict[str, str] = {}
        container = self._container_id  # read first: one unit of work at a time (SQLite has one writer)
        with self.ctx.uow() as uow:
            produced = store.items(uow.session, self.run.id, Side.OUTPUT)
            held = containers.named(uow.session, container) if container else {}
        for turn, item in enumerate(produced, start=1):
            if item["type"] == "file_search_call":
                for index, result in enumerate(item.get("results") or []):
                    citations[(item.get("_turn", turn), index)] = result["file_id"]
                    names[result["file_id"]] = result["filename"]
        notes = []
        for note in hosted_tools.annotations(text, citations, held):
            if note["type"] == "file_citation":
                file_id = note["file_citation"]["file_id"]
                notes.append(
                    {
                        "type": "file_citation",
                        "file_id": file_id,
                        "filename": names.get(file_id, ""),
                        # Where the marker stands: the place in the text a hosted reply cites at.
                        "index": note["start_index"],
                    }
                )
            elif note["type"] == "file_path":
                notes.append(
                    {
                        "type": "container_file_citation",
                        "container_id": self._container_id,
                        "file_id": note["file_path"]["file_id"],
                        "filename": note["text"].rsplit("/", 1)[-1],
                        "start_index": note["start_index"],
                        "end_index": note["end_index"],
                    }
                )
        return notes

    # --- writing --------------------------------------------------------------------------------------------

    def _add(self, item: dict[str, Any]) -> _Open:
        opened = _Open(self._next, item)
        self._next += 1
        self._new.add(opened.position)
        self._pending_items.append((opened.position, item))
        shown = wire.public(item)  # an item just added has no results or outputs to hide yet
        self._record("response.output_item.added", {"output_index": opened.position, "item": shown})
        return opened

    def _done(self, opened: _Open) -> None:
        self._pending_items.append((opened.position, opened.item))
        shown = wire.shown_item(opened.item, self._included)
        self._record("response.output_item.done", {"output_index": opened.position, "item": shown})

    def _adopt(self, item_type: str) -> _Open | None:
        for index, left in enumerate(self._left):
            if left.item["type"] == item_type:
                return self._left.pop(index)
        return None

    def _record(self, name: str, data: dict[str, Any]) -> None:
        self._events.append((name, {"type": name, **data}))

    def _maybe_flush(self) -> None:
        if time.monotonic() - self._flushed >= FLUSH_SECONDS:
            self._flush()

    def due(self) -> float | None:
        if not (self._events or self._pending_items):
            return None
        return max(0.0, self._flushed + FLUSH_SECONDS - time.monotonic())

    def flush(self) -> None:
        self._flush()

    def _flush(self) -> None:
        if self._events or self._pending_items or self._values:
            self._write()

    def _write(self, **values: Any) -> None:
        """The items changed and the events recorded so far, stored in one transaction fenced by the
        lease; published once it commits."""
        run, tenant_id = self.run, self.run.tenant_id
        with self.ctx.uow() as uow:
            self._store(uow)
            count = uow.events.pending(run.id)
            fenced = runs.fence(uow.session, run.id, self.owner, events=count, **self._values, **values)
            if count:
                uow.events.numbered(run.id, tenant_id, fenced, count)
            uow.commit()
        self._stored()

    def _store(self, uow) -> None:
        run, tenant_id = self.run, self.run.tenant_id
        for position, item in self._pending_items:
            new = position in self._new
            store.put_output(uow.session, tenant_id, run.id, position, item, new=new)
            self._new.discard(position)
        for name, data in self._events:
            uow.events.record(run.id, tenant_id, name, data)

    def _stored(self) -> None:
        self._events, self._pending_items, self._values = [], [], {}
        self._flushed = time.monotonic()


class _Open:
    """An output item this call writes: where it stands, and what its stream carried of its text."""

    def __init__(self, position: int, item: dict[str, Any], sent: str = ""):
        self.position, self.item, self.sent = position, item, sent
        self.prefix = ""  # a redone item's text that its stream carried before
        self.skip = 0  # characters of that the redo must not send again

    def redo(self) -> None:
        """A call redone in this item: what its stream carried stays, and is not sent again."""
        self.prefix, self.skip, self.sent = self.sent, len(self.sent), ""

    def at(self) -> dict[str, Any]:
        return {"item_id": self.item["id"], "output_index": self.position}


def response_sources(ctx: Context, run: models.Run) -> hosted.Sources:
    """A Response's server-side calls: its file_search tool's stores and options, its latest user message,
    and its container (the sandbox session, and the files put in it)."""
    searching = next((t for t in run.tools if t.get("type") == "file_search"), {})
    ranking = searching.get("ranking_options") or {}
    with ctx.uow() as uow:
        query = latest_user_text(store.items(uow.session, run.id, Side.INPUT))
        container_id = store.echo_of(uow.session, run.id).container_id or ""
    return hosted.Sources(
        stores=list(searching.get("vector_store_ids") or []),
        query=query,
        max_results=int(searching.get("max_num_results") or hosted_tools.DEFAULT_MAX_RESULTS),
        threshold=float(ranking.get("score_threshold") or 0.0),
        session_id=container_id,
        files=lambda: code_output.container_files(ctx, run.tenant_id, container_id),
        filters=searching.get("filters"),
        ranker=ranking.get("ranker"),
    )


def _has_hosted(run: models.Run) -> bool:
    return any(tool.get("type") in ("file_search", "code_interpreter") for tool in run.tools)


def _target(ending: Ending) -> tuple[RunStatus, dict[str, Any]]:
    """A run's ending as a Response's: function calls complete it (nothing waits for tool outputs here)."""
    if ending.target is RunStatus.REQUIRES_ACTION:
        return RunStatus.COMPLETED, {}
    return ending.target, dict(ending.values)


def _fragment(entry: dict[str, Any]) -> str:
    if entry["type"] == "function":
        return entry["function"].get("arguments") or ""
    if entry["type"] == "code_interpreter":
        return (entry.get("code_interpreter") or {}).get("input") or ""
    return ""


def _typed(short: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": f"response.output_text.{short}", **data}
