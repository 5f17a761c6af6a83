"""Running a model call's server-side tool calls (file_search, code_interpreter) and what a run's reply
draws from them: citations, file paths and images.

    run_calls(ctx, run, turn, calls, hold, sources) -> Executed     each call's stored shape, its deltas
    run_sources(ctx, run) -> Sources                        what a thread's run searches and runs code with
    annotate(session, run, content) -> content             a reply's annotations and image_file parts
    store_ids(session, run)                                 the stores a run searches (assistant's, thread's)

A call is done only once its step is stored (turn_steps.complete_hosted): a worker that dies mid-execution
leaves the step in progress, and the call is made again by whoever takes the run over.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.context import Context
from orchestrator.db import models
from orchestrator.domain import hosted_tools
from orchestrator.domain.errors import SandboxUnavailable
from orchestrator.domain.hosted_tools import FILE_SEARCH, RANKER, HostedCall
from orchestrator.domain.lifecycle import StepStatus, StepType
from orchestrator.domain.storable import storable_json
from orchestrator.files import uploads
from orchestrator.sandbox.port import InputFile, mount_names

log = logging.getLogger(__name__)

# A run waits this long for its stores to finish ingesting before it searches what is there (as hosted).
INGESTION_WAIT_SECONDS = 60.0
POLL_SECONDS = 0.5


class HostedToolFailed(Exception):
    """The run cannot go on: `code` and `message` become its last_error."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class Executed:
    stored: dict[int, dict[str, Any]] = field(default_factory=dict)  # the model's index → the stored call
    deltas: list[dict[str, Any]] = field(default_factory=list)  # step delta entries (code outputs)
    # A call that could not be run at all (no sandbox, none reachable): the step's last_error. The step
    # ends failed, and the model is told, in the call's result, that the code did not run.
    failure: dict[str, str] | None = None


@dataclass(frozen=True)
class Sources:
    """What a run's server-side calls draw on, as its face finds them: a thread's run its assistant's and
    thread's resources; a Response its tools' own stores and container."""

    stores: list[str]  # the vector stores file_search searches
    query: str  # the search when the model gives no query: the latest user message
    max_results: int
    threshold: float
    session_id: str  # code_interpreter's sandbox session: the thread, or the container
    files: Callable[[], list[InputFile]]  # the files code_interpreter's session gets
    filters: dict[str, Any] | None = None
    ranker: str | None = None  # `ranking_options.ranker` as asked (files/rerank.py: which ones rerank)


def run_sources(ctx: Context, run: models.Run) -> Sources:
    with ctx.uow() as uow:
        ids = store_ids(uow.session, run)
        query = _latest_user_text(uow.session, run.thread_id)
    max_results, threshold = hosted_tools.search_options(run.tools)
    ranker = hosted_tools.search_ranker(run.tools)
    return Sources(
        ids, query, max_results, threshold, run.thread_id, lambda: _input_files(ctx, run), ranker=ranker
    )


def run_calls(
    ctx: Context, run: models.Run, turn: int, calls: dict[int, HostedCall], hold, sources: Sources
) -> Executed:
    executed = Executed()
    for index, call in sorted(calls.items()):
        if hold.cancelled.is_set() or hold.lost.is_set():
            break
        # What a tool produced (code prints what it likes: `print(chr(0))`) is streamed, stored and read
        # back by the model as Postgres can hold it (domain/storable.py).
        if call.name == FILE_SEARCH:
            executed.stored[index] = storable_json(_search(ctx, run, turn, call, hold, sources))
            continue
        stored = storable_json(_execute(ctx, run, call, sources))
        executed.failure = executed.failure or stored.pop("_failure", None)
        executed.stored[index] = stored
        outputs = stored["code_interpreter"]["outputs"]
        if outputs:
            entry = {"index": index, "type": "code_interpreter", "code_interpreter": {"outputs": outputs}}
            executed.deltas.append(entry)
    return executed


# --- file_search ---------------------------------------------------------------------------------------


def store_ids(session: Session, run: models.Run) -> list[str]:
    """The assistant's store, then the thread's (at most one each)."""
    return list(dict.fromkeys(_resource_ids(session, run, "file_search", "vector_store_ids")))


def _resource_ids(session: Session, run: models.Run, tool: str, key: str) -> list[str]:
    """`tool_resources[tool][key]` of the run's assistant, then of its thread."""
    ids: list[str] = []
    for owner in (session.get(models.Assistant, run.assistant_id), session.get(models.Thread, run.thread_id)):
        resources = (owner.tool_resources if owner is not None else None) or {}
        ids += (resources.get(tool) or {}).get(key) or []
    return ids


def _search(
    ctx: Context, run: models.Run, turn: int, call: HostedCall, hold, sources: Sources
) -> dict[str, Any]:
    from orchestrator.files import search  # numpy and the indexes: loaded by the first search (issue 23)

    _wait_until_searchable(ctx, run, sources.stores, hold)
    threshold = sources.threshold
    found = search.search(
        ctx,
        run.tenant_id,
        sources.stores,
        call.queries(sources.query),
        max_num_results=sources.max_results,
        ranking_options={"score_threshold": threshold, "ranker": sources.ranker},
        filters=sources.filters,
    )
    results = [
        {
            "file_id": hit.file_id,
            "file_name": hit.filename,
            "score": round(hit.score, 6),
            "content": [{"type": "text", "text": hit.text}],
        }
        for hit in found
    ]
    return {
        "id": call.id,
        "type": "file_search",
        "file_search": {
            "ranking_options": {"ranker": sources.ranker or RANKER, "score_threshold": threshold},
            "results": results,
        },
        "_model": _model_side(call, hosted_tools.search_text(turn, results)),
    }


def _wait_until_searchable(ctx: Context, run: models.Run, ids: list[str], hold) -> None:
    """Wait (up to a minute) for files still being ingested; an expired store fails the run."""
    from orchestrator.files import search

    deadline = time.monotonic() + INGESTION_WAIT_SECONDS
    while True:
        ready = search.readiness(ctx, run.tenant_id, ids)
        if ready.expired:
            raise HostedToolFailed(
                "server_error", f"The vector store {ready.expired[0]} has expired and cannot be searched."
            )
        if not ready.in_progress or time.monotonic() >= deadline:
            return
        if hold.cancelled.wait(POLL_SECONDS) or hold.lost.is_set():
            return


def _latest_user_text(session: Session, thread_id: str) -> str:
    message = session.scalar(
        select(models.Message)
        .where(models.Message.thread_id == thread_id, models.Message.role == "user")
        .order_by(models.Message.created_us.desc())
        .limit(1)
    )
    blocks = message.content if message is not None else []
    return "\n".join(b["text"]["value"] for b in blocks if b.get("type") == "text")


# --- code_interpreter ----------------------------------------------------------------------------------


def close_sandbox(ctx: Context) -> None:
    """At the process's exit: end the in-process sandbox's interpreters, or the client's connections."""
    for name in ("shutdown", "disconnect"):
        if hasattr(ctx.sandbox, name):
            getattr(ctx.sandbox, name)()
            return


def _execute(ctx: Context, run: models.Run, call: HostedCall, sources: Sources) -> dict[str, Any]:
    code = call.source()
    try:
        result = ctx.sandbox.execute(sources.session_id, code, sources.files())
    except SandboxUnavailable as error:
        log.warning("code_interpreter could not run code for %s: %s", run.id, error)
        return _not_run(call, code, error.message)
    outputs: list[dict[str, Any]] = []
    logs = "\n".join(part for part in (result.logs.rstrip("\n"), result.error or "") if part)
    if logs:
        outputs.append({"type": "logs", "logs": logs})
    for number, image in enumerate(result.images):
        made = uploads.create_output_file(ctx, run.tenant_id, f"image-{number}.png", image)
        outputs.append({"type": "image", "image": {"file_id": made["id"]}})
    paths = {}
    for output in result.files:
        made = uploads.create_output_file(ctx, run.tenant_id, output.name.rsplit("/", 1)[-1], output.data)
        paths[output.name] = made["id"]
    text = hosted_tools.execution_text(result.logs.rstrip("\n"), result.error, list(paths))
    if result.session_restarted:
        text = "(The session had expired: earlier variables and files are gone.)\n" + text
    return {
        "id": call.id,
        "type": "code_interpreter",
        "code_interpreter": {"input": code, "outputs": outputs},
        "_model": _model_side(call, text),
        "_files": paths,
    }


def _not_run(call: HostedCall, code: str, reason: str) -> dict[str, Any]:
    """The call's stored shape when the code never ran: no outputs, and the reason for the model."""
    return {
        "id": call.id,
        "type": "code_interpreter",
        "code_interpreter": {"input": code, "outputs": []},
        "_model": _model_side(call, hosted_tools.not_run_text(reason)),
        "_failure": {"code": "server_error", "message": f"{hosted_tools.NOT_RUN}: {reason}"},
    }


def _input_files(ctx: Context, run: models.Run) -> list[InputFile]:
    """The files code_interpreter gets: the assistant's and the thread's `tool_resources`, and the
    thread's message attachments for code_interpreter (at most 20 of each, as the API allows)."""
    with ctx.uow() as uow:
        session = uow.session
        ids = _resource_ids(session, run, "code_interpreter", "file_ids")
        attached = session.scalars(
            select(models.Message.attachments).where(models.Message.thread_id == run.thread_id)
        )
        for attachments in attached:
            for item in attachments or []:
                if any(tool.get("type") == "code_interpreter" for tool in item.get("tools") or []):
                    ids.append(item["file_id"])
    found = []
    for file_id in dict.fromkeys(ids):
        try:
            meta = uploads.get(ctx, run.tenant_id, file_id)
            found.append((file_id, meta["filename"], uploads.read_bytes(ctx, run.tenant_id, file_id)))
        except Exception:  # a file deleted since it was attached: the code runs without it
            log.info("input file %s of run %s is gone", file_id, run.id)
    names = mount_names([(file_id, filename) for file_id, filename, _data in found])
    return [InputFile(name, data) for name, (_id, _filename, data) in zip(names, found, strict=True)]


def _model_side(call: HostedCall, output: str) -> dict[str, str]:
    return {"name": call.name, "arguments": call.arguments or "{}", "output": output}


# --- the reply -------------------------------------------------------------------------------------------


def annotate(session: Session, run: models.Run, content: list[dict[str, Any]] | None) -> list | None:
    """The reply's content with its text's citations and file paths annotated (its image parts as they
    are: the message opened with them, see `images_to_show`)."""
    if not content or not any(t.get("type") in ("file_search", "code_interpreter") for t in run.tools):
        return content
    citations: dict[tuple[int, int], str] = {}
    paths: dict[str, str] = {}
    for row, call in _ended_calls(session, run):
        if call.get("type") == "file_search":
            for index, result in enumerate(call["file_search"].get("results") or []):
                citations[(row.turn, index)] = result["file_id"]
        elif call.get("type") == "code_interpreter":
            paths.update(call.get("_files") or {})
    return [_annotated(part, citations, paths) if part.get("type") == "text" else part for part in content]


def images_to_show(session: Session, run: models.Run) -> list[str]:
    """The image files the run's code made since its previous message, in order: the next message shows
    them before its text (as the hosted API does). No query for a run without code_interpreter."""
    if not any(t.get("type") == "code_interpreter" for t in run.tools):
        return []
    images: list[str] = []
    for row, call in _ended_calls(session, run, with_messages=True):
        if row.type is StepType.MESSAGE_CREATION:
            images = []  # shown in that message already
        elif call.get("type") == "code_interpreter":
            images += [
                o["image"]["file_id"] for o in call["code_interpreter"]["outputs"] if o["type"] == "image"
            ]
    return images


def _ended_calls(session: Session, run: models.Run, *, with_messages: bool = False):
    """(step, tool call) for the run's completed steps in order; (step, {}) for a message step."""
    rows = session.scalars(
        select(models.RunStep)
        .where(models.RunStep.run_id == run.id, models.RunStep.status == StepStatus.COMPLETED)
        .order_by(models.RunStep.turn)
    ).all()
    for row in rows:
        if row.type is StepType.MESSAGE_CREATION:
            if with_messages:
                yield row, {}
            continue
        for call in row.step_details.get("tool_calls") or []:
            yield row, call


def _annotated(part: dict[str, Any], citations: dict, paths: dict) -> dict[str, Any]:
    text = part["text"]["value"]
    return {
        "type": "text",
        "text": {"value": text, "annotations": hosted_tools.annotations(text, citations, paths)},
    }
