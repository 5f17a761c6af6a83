"""Responses as the API sees them: create (plain, streamed, in the background), retrieve, delete, cancel,
their input items and input token counts (contract §1, §3, §6, §8).

A response is a run of the engine (api = responses): create inserts the run, its echo row, its input
items and its first events (`response.created`, `response.queued`) in one unit of work and hands it to a
worker after commit, whatever the mode. A plain create waits for the end and answers the final object;
a streamed one relays the run's events; a background one answers at once. A client that goes away loses
nothing: the worker carries on.

`store: false` keeps the response while it runs (it is durable like any other), then nothing: it is not
retrievable once it ended (a background one for `UNSTORED_KEEP_SECONDS`, to be polled), and the sweep
deletes it.
"""

from __future__ import annotations

import queue
from typing import Any

from orchestrator.context import Context
from orchestrator.db import conversations, models, rows
from orchestrator.db import responses as store
from orchestrator.db.response_models import Response, Side
from orchestrator.db.runs import ANYONE, UNLEASED
from orchestrator.db.uow import UnitOfWork
from orchestrator.domain import strict_schema
from orchestrator.domain.clock import monotonic_us
from orchestrator.domain.errors import InvalidRequest, not_found
from orchestrator.domain.lifecycle import CANCELLABLE, Api, RunStatus
from orchestrator.domain.response_items import normalize
from orchestrator.engine import dispatch, lifecycle
from orchestrator.engine.responses import prompt, wire
from orchestrator.files import containers, vector_stores
from orchestrator.schemas.responses import CountInputTokens, CreateResponse
from orchestrator.schemas.runs import as_json
from orchestrator.services import idempotency, streams
from orchestrator.services.runs import Accepted, Watch

# How long a cancel waits for the worker holding the response to stop and end it.
CANCEL_WAIT_SECONDS = 5.0


def create(ctx: Context, tenant_id: str, body: CreateResponse, *, watch: Watch | None = None) -> Accepted:
    with ctx.uow() as uow:
        session = uow.session
        carried = _carried(session, tenant_id, body)
        _check_tools(session, tenant_id, body)
        given = _given(session, tenant_id, body.input)
        run = _new_run(ctx, tenant_id, body)
        echo = _echo(tenant_id, run.id, body)
        echo.container_id = _container(uow, ctx, tenant_id, run.id, body, carried)
        prompt.check_fits(ctx.settings, run, carried + given)
        shown = wire.response(run, echo, [])
        for name in ("response.created", "response.queued"):
            uow.events.record(run.id, tenant_id, name, {"type": name, "response": shown})
        uow.events.numbered_new(run, 2)
        if dispatch.insert_new(ctx, uow, run):
            uow.after_commit(lambda: ctx.queue.enqueue(run.id))
        rows.add(session, echo, *store.item_rows(tenant_id, run.id, Side.INPUT, given))
        _answer(uow, body, shown)
        if watch is not None:
            watch(run.id)  # before commit: every later event reaches the stream live
        uow.commit()
    return Accepted(shown, 0, tuple(uow.events.committed_of(run.id)))


def _answer(uow, body: CreateResponse, shown: dict[str, Any]) -> None:
    """What a retry with the same Idempotency-Key gets, declared before commit: the queued response (in
    the background), its stream from the start, or its final object once it ends."""
    if body.stream:
        idempotency.follow(uow, {"response_id": shown["id"], "cursor": 0})
    elif body.background:
        idempotency.answer(uow, shown)
    else:
        idempotency.follow(uow, {"response_id": shown["id"], "wait": True})


def wait(ctx: Context, response_id: str, *, inbox=None, first: tuple = ()) -> None:
    """Until the response ends: its events relayed to nobody (a plain create answers the final object)."""
    for _item in streams.relay(
        ctx, ctx.hub, response_id, 0, inbox=inbox, first=first, rules=streams.RESPONSE
    ):
        pass


def _carried(session, tenant_id: str, body: CreateResponse) -> list[dict[str, Any]]:
    """The items before this input: the previous responses' or the conversation's. Checks both exist."""
    if body.previous_response_id is not None:
        return store.history(session, tenant_id, body.previous_response_id)
    if body.conversation_id is not None:
        return conversations.items_of(session, tenant_id, body.conversation_id)
    return []


def _given(session, tenant_id: str, given: str | list | None) -> list[dict[str, Any]]:
    """The request's input as whole items; `item_reference`s made into copies of the items they name."""
    items = normalize(given if given is not None else [])
    return conversations.resolve_references(session, tenant_id, items, "input")


def _check_tools(session, tenant_id: str, body: CreateResponse) -> None:
    """The request's tools and tool_choice can be used: the stores file_search is given are the
    tenant's (another tenant's id is as unknown as a made-up one: 404, as the Assistants face answers for
    tool_resources), a strict function's parameters can be held strictly, and tool_choice names a tool
    the request has (400)."""
    tools = body.tools or []
    for index, tool in enumerate(tools):
        if tool.type == "file_search":
            vector_stores.check_exist(session, tenant_id, tool.vector_store_ids)
        elif tool.type == "function" and tool.strict:
            broken = strict_schema.problem(tool.parameters)
            if broken is not None:
                raise InvalidRequest(
                    f"Invalid schema for function '{tool.name}': {broken}",
                    param=f"tools[{index}].parameters",
                    code="invalid_function_parameters",
                )
    _check_tool_choice(body.tool_choice, tools)


def _check_tool_choice(choice: Any, tools: list) -> None:
    if choice == "required" and not tools:
        raise InvalidRequest(
            "Tool choice 'required' must be specified with 'tools' parameter.", param="tool_choice"
        )
    if choice is None or isinstance(choice, str):
        return
    if choice.type == "function":
        if not any(t.type == "function" and t.name == choice.name for t in tools):
            raise InvalidRequest(
                f"Tool choice 'function' with name '{choice.name}' not found in 'tools' parameter.",
                param="tool_choice",
            )
    elif not any(t.type == choice.type for t in tools):
        raise InvalidRequest(
            f"Tool choice '{choice.type}' not found in 'tools' parameter.", param="tool_choice"
        )


def _container(
    uow: UnitOfWork, ctx: Context, tenant_id: str, response_id: str, body: CreateResponse, carried: list
) -> str | None:
    """The container the response's code runs in: the one its tool names (404 unknown or another
    tenant's, 400 expired); for `{"type": "auto"}`, the one the carried items' latest code ran in while
    it can still take work (as hosted), else a new one; either way with the tool's files in it."""
    tool = next((t for t in body.tools or [] if t.type == "code_interpreter"), None)
    if tool is None:
        return None
    now = ctx.timestamp()
    if isinstance(tool.container, str):
        return containers.usable(uow.session, tenant_id, tool.container, now).id
    file_ids = tool.container.file_ids or []
    ran = [i.get("container_id") for i in carried if i.get("type") == "code_interpreter_call"]
    found = containers.still_usable(uow.session, tenant_id, ran[-1], now) if ran and ran[-1] else None
    if found is not None:
        containers.put_files(uow, ctx, found, file_ids)
        return found.id
    name = f"Container for {response_id}"
    made = containers.create_in(
        uow, ctx, tenant_id, name=name, file_ids=file_ids, memory_limit=tool.container.memory_limit
    )
    made.response_id = response_id
    return made.id


def _new_run(ctx: Context, tenant_id: str, body: CreateResponse) -> models.Run:
    include = body.include or []
    return lifecycle.new_run(
        ctx,
        tenant_id,
        Api.RESPONSES,
        model=body.model,
        instructions=body.instructions or "",
        tools=[as_json(tool) for tool in body.tools or []],
        metadata_=body.metadata or {},
        temperature=body.temperature,
        top_p=body.top_p,
        max_completion_tokens=body.max_output_tokens,
        truncation_strategy={"type": body.truncation or "disabled"},
        tool_choice=as_json(body.tool_choice) or "auto",
        parallel_tool_calls=True if body.parallel_tool_calls is None else body.parallel_tool_calls,
        response_format=prompt.response_format(as_json(body.text)),
        search_content="file_search_call.results" in include,
    )


def _echo(tenant_id: str, response_id: str, body: CreateResponse) -> Response:
    shown = body.model_dump(
        mode="json",
        by_alias=True,
        exclude_none=True,
        include={
            "instructions",
            "text",
            "reasoning",
            "include",
            "truncation",
            "max_tool_calls",
            "user",
            *wire.ECHOED,
        },
    )
    return Response(
        id=response_id,
        tenant_id=tenant_id,
        previous_response_id=body.previous_response_id,
        conversation_id=body.conversation_id,
        store=True if body.store is None else body.store,
        background=bool(body.background),
        echo=shown,
    )


# --- reading ---------------------------------------------------------------------------------------------


def get(ctx: Context, tenant_id: str, response_id: str, include: list[str] | None = None) -> dict[str, Any]:
    """The response; `include` adds to what its create asked to be shown (search results, code outputs)."""
    _expire_if_overdue(ctx, tenant_id, response_id)
    with ctx.uow() as uow:
        run, echo = _visible(ctx, uow.session, tenant_id, response_id)
        return wire.response(run, echo, store.items(uow.session, run.id, Side.OUTPUT), include or ())


def final(ctx: Context, tenant_id: str, response_id: str) -> dict[str, Any]:
    """The response as it ended, for the request that made it (even one not stored); then an unstored one
    is gone."""
    with ctx.uow() as uow:
        run, echo = store.load(uow.session, tenant_id, response_id)
        shown = wire.response(run, echo, store.items(uow.session, run.id, Side.OUTPUT))
        if not echo.store and run.status.is_terminal and not echo.background:
            store.delete_response(uow.session, run.id)
            uow.commit()
        return shown


def stream_cursor(ctx: Context, tenant_id: str, response_id: str, starting_after: int | None) -> int:
    """The event cursor a `GET ?stream=true` starts after: the stream's sequence numbers are the log's,
    less one (they start at 0)."""
    with ctx.uow() as uow:
        _visible(ctx, uow.session, tenant_id, response_id)
    return 0 if starting_after is None else starting_after + 1


def input_items(
    ctx: Context, tenant_id: str, response_id: str, *, limit: int, order: str, after: str | None
) -> dict[str, Any]:
    with ctx.uow() as uow:
        _visible(ctx, uow.session, tenant_id, response_id)
        given = store.items(uow.session, response_id, Side.INPUT)
    ordered = given if order == "asc" else list(reversed(given))
    if after is not None:
        ids = [item["id"] for item in ordered]
        if after not in ids:
            raise InvalidRequest(f"No item found with id '{after}' in this response.", param="after")
        ordered = ordered[ids.index(after) + 1 :]
    data = ordered[:limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(ordered) > limit,
    }


def count_input_tokens(ctx: Context, tenant_id: str, body: CountInputTokens) -> dict[str, Any]:
    with ctx.uow() as uow:
        carried = _carried(uow.session, tenant_id, body)
        given = _given(uow.session, tenant_id, body.input)
    tools = [as_json(tool) for tool in body.tools or []]
    counted = prompt.count(body.model, body.instructions or "", tools, carried + given)
    return {"object": "response.input_tokens", "input_tokens": counted}


def _visible(ctx: Context, session, tenant_id: str, response_id: str) -> tuple[models.Run, Response]:
    """An unstored response is seen while it runs; once ended, only a background one, for a while."""
    run, echo = store.load(session, tenant_id, response_id)
    if not echo.store and run.status.is_terminal:
        kept = echo.background and (echo.ended_at or 0) + store.UNSTORED_KEEP_SECONDS > ctx.timestamp()
        if not kept:
            raise not_found("response", response_id)
    return run, echo


def _expire_if_overdue(ctx: Context, tenant_id: str, response_id: str) -> None:
    with ctx.uow() as uow:
        run, _echo = store.load(uow.session, tenant_id, response_id)
        overdue = lifecycle.is_overdue(ctx, run)
    if overdue:
        lifecycle.expire(ctx, response_id)


# --- changing --------------------------------------------------------------------------------------------


def delete(ctx: Context, tenant_id: str, response_id: str) -> dict[str, Any]:
    """Delete the response with its items and events; one still running is cancelled first (its worker's
    next fenced write finds the run gone, and it stops)."""
    with ctx.uow() as uow:
        run, _echo = _visible(ctx, uow.session, tenant_id, response_id)
        lifecycle.nudge_holder(ctx, uow, run)
        store.delete_response(uow.session, run.id)
        uow.commit()
    return {"id": response_id, "object": "response", "deleted": True}


def cancel(ctx: Context, tenant_id: str, response_id: str) -> dict[str, Any]:
    """Cancel a background response: 200 with the final object, also when it had ended already (a second
    cancel changes nothing). The worker holding it is nudged and ends it within a second; this waits
    for that (at most CANCEL_WAIT_SECONDS) so the answer shows it cancelled."""
    _expire_if_overdue(ctx, tenant_id, response_id)
    with ctx.uow() as uow:
        run, echo = _visible(ctx, uow.session, tenant_id, response_id)
        if not echo.background:
            raise InvalidRequest("Only responses created with 'background' set to true can be cancelled.")
        if run.status in CANCELLABLE:
            moved = lifecycle.move(uow, run.id, RunStatus.CANCELLING, ANYONE, ctx.clock.now())
            lifecycle.nudge_holder(ctx, uow, moved)
        inbox = ctx.hub.watch(run.id) if ctx.hub is not None and run.status.is_active else None
        uow.commit()
    try:
        if run.status.is_active and not lifecycle.finish_cancel(ctx, response_id, UNLEASED):
            ctx.queue.enqueue(response_id)  # a worker that lost it ends it; this one nudges the sweep
            _wait_for_end(inbox)
    finally:
        if inbox is not None:
            ctx.hub.unwatch(run.id, inbox)
    return get(ctx, tenant_id, response_id)


def _wait_for_end(inbox: queue.Queue | None) -> None:
    if inbox is None:
        return
    deadline = monotonic_us() + int(CANCEL_WAIT_SECONDS * 1e6)
    while (left := deadline - monotonic_us()) > 0:
        try:
            item = inbox.get(timeout=left / 1e6)
        except queue.Empty:
            return
        if getattr(item, "event", None) in wire.TERMINAL_EVENTS:
            return
