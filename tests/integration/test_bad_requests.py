"""Hundreds of generated bad requests against every route in ROUTES: each gets a 4xx with the OpenAI error
envelope, and nothing in the database changes (ARCHITECTURE promise 7).

The cases are built from the route registry and the routes' own pydantic models, so a route added later
is covered without touching this file. Every case carries at least one defect (a bad or unknown id, a
body its model refuses, a bad query value, a wrong method, no key), so none of them may succeed.
"""

from __future__ import annotations

import io
import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import quote

import pytest
from sqlalchemy import text

from orchestrator.adapters.ports import InMemoryBus, InMemoryQueue
from orchestrator.api.app import create_app
from orchestrator.api.http import ROUTES, RouteDoc, parse_json, validate
from orchestrator.api.validation import reject_unstorable_text
from orchestrator.context import Context
from orchestrator.db import models
from orchestrator.db.connection import make_engine, make_sessionmaker
from orchestrator.domain.clock import monotonic_us
from orchestrator.domain.errors import InvalidRequest
from orchestrator.domain.ids import new_id
from orchestrator.files import batches, uploads, vector_stores
from orchestrator.schemas.common import CreateMessage
from orchestrator.schemas.conversations import CreateConversation
from orchestrator.schemas.threads import CreateThread
from orchestrator.schemas.vector_stores import CreateFileBatch, CreateVectorStore
from orchestrator.services import assistants, conversations, threads
from orchestrator.services.keys import create_key
from orchestrator.settings import Settings
from tests.support.databases import throwaway_database

MAX_BODY = 64 * 1024
PREFIXES = {
    "thread_id": "thread",
    "assistant_id": "asst",
    "message_id": "msg",
    "run_id": "run",
    "step_id": "step",
    "vector_store_id": "vs",
    "file_id": "file",
    "batch_id": "vsfb",
    "conversation_id": "conv",
}
PARAM = re.compile(r"<(?:\w+:)?(\w+)>")
AZURE = "api-version=2024-05-01-preview"


@dataclass
class Case:
    method: str
    path: str
    body: bytes | None = None
    query: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    rule: str = ""

    def __str__(self) -> str:
        shown = (self.body or b"")[:80]
        return f"{self.method} {self.path}?{self.query} {shown!r}"


@pytest.fixture(scope="module")
def world():
    """An app on its own database with one of everything, and a way to fingerprint the whole database."""
    with throwaway_database() as url:
        settings = Settings(database_url=url, max_body_bytes=MAX_BODY)
        engine = make_engine(settings, pool_size=2)
        ctx = Context(settings, make_sessionmaker(engine), InMemoryQueue(), InMemoryBus())
        tenant_id, key = create_key(ctx, "fuzz")
        ids = _seed(ctx, tenant_id)
        app = create_app(settings, ctx)
        try:
            yield app.test_client(), key, ids, lambda: _fingerprint(engine)
        finally:
            engine.dispose()


def _seed(ctx: Context, tenant_id: str) -> dict[str, str]:
    assistant = assistants.create(
        ctx, tenant_id, validate(assistants.CreateAssistant, {"model": "local-echo"})
    )
    messages = [CreateMessage(role="user", content="hello"), CreateMessage(role="user", content="again")]
    thread = threads.create(ctx, tenant_id, CreateThread(messages=messages))
    with ctx.uow() as uow:
        run = _finished_run(tenant_id, thread["id"], assistant["id"], ctx.timestamp())
        uow.session.add(run)
        uow.session.flush()
        uow.session.add(_step(run))
        message_id = uow.session.scalar(text("SELECT id FROM messages LIMIT 1"))
        uow.commit()
    return {
        **_seed_files(ctx, tenant_id),
        **_seed_conversation(ctx, tenant_id),
        "assistant_id": assistant["id"],
        "thread_id": thread["id"],
        "message_id": message_id,
        "run_id": run.id,
        "step_id": _step_id(ctx, run.id),
    }


def _seed_files(ctx: Context, tenant_id: str) -> dict[str, str]:
    """A file in a vector store, added by a batch (ingestion never runs here: the queue is in memory)."""
    file_id = uploads.upload(
        ctx, tenant_id, source=io.BytesIO(b"text"), filename="a.txt", purpose="assistants"
    )["id"]
    store = vector_stores.create(ctx, tenant_id, CreateVectorStore(file_ids=[file_id]))
    batch = batches.create(ctx, tenant_id, store["id"], CreateFileBatch(file_ids=[file_id]))
    return {"file_id": file_id, "vector_store_id": store["id"], "batch_id": batch["id"]}


def _seed_conversation(ctx: Context, tenant_id: str) -> dict[str, str]:
    body = CreateConversation(items=[{"role": "user", "content": "hello"}])
    conversation = conversations.create(ctx, tenant_id, body)
    page = conversations.list_items(ctx, tenant_id, conversation["id"], limit=1, order="asc", after=None)
    return {"conversation_id": conversation["id"], "item_id": page["first_id"]}


def _finished_run(tenant_id: str, thread_id: str, assistant_id: str, now: int) -> models.Run:
    return models.Run(
        id=new_id("run"), tenant_id=tenant_id, thread_id=thread_id, assistant_id=assistant_id,
        created_at=now, created_us=monotonic_us(), status="completed", version=3, event_seq=0, turn=1,
        takeovers=0, model="local-echo", instructions="", tools=[], metadata_={},
        truncation_strategy={"type": "auto", "last_messages": None}, tool_choice="auto",
        parallel_tool_calls=True, response_format="auto", completed_at=now,
    )  # fmt: skip


def _step(run: models.Run) -> models.RunStep:
    return models.RunStep(
        id=new_id("step"), tenant_id=run.tenant_id, run_id=run.id, thread_id=run.thread_id,
        assistant_id=run.assistant_id, created_at=run.created_at, created_us=monotonic_us(), turn=1,
        type="message_creation", status="completed", metadata_={},
        step_details={"type": "message_creation", "message_creation": {"message_id": "msg_x"}},
    )  # fmt: skip


def _step_id(ctx: Context, run_id: str) -> str:
    with ctx.uow() as uow:
        return uow.session.scalar(text("SELECT id FROM run_steps WHERE run_id = :r"), {"r": run_id})


def _fingerprint(engine) -> str:
    """One round trip: a digest of every row of every table."""
    parts = [
        f"(SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table.name} t)"
        for table in models.Base.metadata.sorted_tables
    ]
    with engine.connect() as connection:
        return connection.scalar(text("SELECT " + " || ".join(parts)))


# --- the generator -------------------------------------------------------------------------------------

WRONG_VALUES = [
    None, 0, -1, 1.5, 10**30, True, "", "x", "x" * 5000, [], [1, "a"], {}, {"unexpected": 1},
    "a\x00b", "\ud800",
]  # fmt: skip
RAW_BODIES = [
    b"{", b"}", b"[]", b"null", b"1", b'"text"', b"\xff\xfe\xfd", b'{"a": NaN}', b'{"a": 1e999}', b"[" * 5000,
    b'{"a":' * 80 + b"1" + b"}" * 80, b"{'single': 'quotes'}", b'{"a": 1,}', b'{"x": "\\ud800"}',
    b"{" + b" " * (MAX_BODY + 1) + b"}",
]  # fmt: skip
NESTED = {
    "metadata": [{f"k{i}": "v" for i in range(17)}, {"k" * 65: "v"}, {"k": "v" * 513}, {"k": 1}, ["k"]],
    "content": [
        [],
        [{"type": "video"}],
        [{"text": "x"}],
        [{"type": "text", "text": 5}],
        [{"type": "image_file"}],
    ],
    "messages": [
        [{"role": "robot", "content": "x"}],
        [{"content": "x"}],
        [{"role": "user", "content": []}],
        [5],
    ],
    "tools": [
        [{"type": "nope"}],
        [{"type": "function"}],
        [{"type": "function", "function": {"name": "a b"}}],
    ],
    "tool_resources": [
        {"file_search": {"vector_store_ids": ["a", "b"]}},
        {"code_interpreter": {"file_ids": ["f"] * 21}},
        {"file_search": {"vector_store_ids": ["a"], "vector_stores": [{}]}},
        {"file_search": {"vector_stores": [{"chunking_strategy": {"type": "static"}}]}},
    ],
    "tool_outputs": [[{"tool_call_id": "call_x"}], [{"tool_call_id": 1, "output": "x"}], "x"],
    "truncation_strategy": [{"type": "sometimes"}, {"type": "last_messages", "last_messages": 0}],
    "tool_choice": ["sometimes", {"type": "function"}, 5],
    "response_format": ["json", {"type": "json_schema"}, 1],
    "max_prompt_tokens": [255, -1, 1.5],
    "temperature": [2.5, -0.1],
    "top_p": [1.5],
    "thread": [5, {"messages": [{"role": "user"}]}, {"unknown": 1}],
    "additional_messages": [[{"role": "user", "content": []}], {}],
    "items": [[5], [{"role": "user", "content": "x"}] * 21, ["x"], {}],
}
QUERY_VALUES = {
    "limit": ["0", "101", "-5", "abc", "1.5", "", "9" * 40, "%00"],
    "order": ["sideways", "ASC", "", "%00"],
    "after": ["msg_doesnotexist", "%00", "x" * 300],
    "before": ["msg_doesnotexist", "%00"],
    "run_id": ["thread_wrongprefix", "%00", "run_" + "a" * 80],
}
METHODS = ("GET", "POST", "DELETE", "PUT", "PATCH")
# Valid values for required fields, so a mutation is judged on its own rather than on a missing field.
BASELINE = {
    "model": "local-echo",
    "role": "user",
    "content": "hello",
    "tool_outputs": [{"tool_call_id": "call_x", "output": "x"}],
}


def bad_ids(name: str) -> list[str]:
    prefix = PREFIXES.get(name, "obj")
    return [
        "undefined",
        "asst_x" if prefix != "asst" else "thread_x",
        f"{prefix}_doesnotexist0123456789",
        f"{prefix}_" + "a" * 100,
        f"{prefix}_a%00b",
        f"{prefix}_%F0%9F%92%A9",
        f"{prefix}_%FF%FE",
        f"{prefix}_a.b",
        "%20",
    ]


def fill(rule: str, ids: dict[str, str], override: dict[str, str] | None = None) -> str:
    values = {**{name: quote(ids.get(name, "x_unknown")) for name in PARAM.findall(rule)}, **(override or {})}
    return PARAM.sub(lambda match: values[match.group(1)], rule)


def refused(doc: RouteDoc, raw: bytes) -> bool:
    """True when the app's own parsing would refuse this body for this route."""
    if len(raw) > MAX_BODY:
        return True
    try:
        data = parse_json(raw) if raw.strip() else {}
        if not isinstance(data, dict):
            return True
        reject_unstorable_text(data)
        validate(doc.body, data)
    except InvalidRequest:
        return True
    return False


def baseline(doc: RouteDoc, ids: dict[str, str]) -> dict:
    known = {**BASELINE, "assistant_id": ids["assistant_id"]}
    required = [name for name, info in doc.body.model_fields.items() if info.is_required()]
    return {name: known[name] for name in required if name in known}


def bodies(doc: RouteDoc, ids: dict[str, str], rng: random.Random) -> Iterator[bytes]:
    base = baseline(doc, ids)
    yield from RAW_BODIES
    yield json.dumps({**base, "unknown_parameter": 1}).encode()
    yield json.dumps({}).encode()
    for name in doc.body.model_fields:
        for value in rng.sample(WRONG_VALUES, 6) + NESTED.get(name, []):
            yield json.dumps({**base, name: value}).encode()


def cases(doc: RouteDoc, ids: dict[str, str], rng: random.Random) -> Iterator[Case]:
    for case in _route_cases(doc, ids, rng):
        case.rule = doc.rule
        yield case


def _route_cases(doc: RouteDoc, ids: dict[str, str], rng: random.Random) -> Iterator[Case]:
    empty = b"{}" if doc.method == "POST" else None
    for name in PARAM.findall(doc.rule):
        for bad in bad_ids(name):
            yield Case(doc.method, fill(doc.rule, ids, {name: bad}), empty)
    if doc.body is not None:
        for raw in bodies(doc, ids, rng):
            if refused(doc, raw):
                yield Case(doc.method, fill(doc.rule, ids), raw)
    if doc.query is not None:
        for name, values in QUERY_VALUES.items():
            if name in doc.query.model_fields:
                for value in values:
                    if _query_refused(doc, name, value):
                        yield Case(doc.method, fill(doc.rule, ids), query=f"{name}={value}")
    yield Case(doc.method, fill(doc.rule, ids), empty, headers={"auth": "none"})
    yield Case(doc.method, fill(doc.rule, ids), headers={"auth": "wrong"})


def _query_refused(doc: RouteDoc, name: str, value: str) -> bool:
    """Only values the route's own query model refuses, or cursors naming no object, are cases (a file
    list takes `limit` up to 10,000)."""
    if name in ("after", "before") and "%00" not in value:
        return True
    try:
        validate(doc.query, {name: value})
    except InvalidRequest:
        return True
    return "%" in value


def wrong_methods(ids: dict[str, str]) -> Iterator[Case]:
    allowed: dict[str, set[str]] = {}
    for doc in ROUTES:
        allowed.setdefault(doc.rule, set()).add(doc.method)
    for rule, methods in allowed.items():
        for method in METHODS:
            if method not in methods:
                yield Case(method, fill(rule, ids), b"{}")


def unknown_routes() -> Iterator[Case]:
    for path in ("/nope", "/threads/thread_x/nope", "/assistants/asst_x/extra/more", "/", "/threads/"):
        for method in ("GET", "POST"):
            yield Case(method, path, b"{}")


def all_cases(ids: dict[str, str]) -> list[Case]:
    rng = random.Random(20_240_501)
    generated = [case for doc in ROUTES for case in cases(doc, ids, rng)]
    return generated + list(wrong_methods(ids)) + list(unknown_routes())


def send(client, key: str, case: Case, prefix: str):
    auth = case.headers.get("auth")
    if prefix == "/v1":
        headers = {"Authorization": f"Bearer {key if auth is None else 'sk-wrong'}"}
    else:
        headers = {"api-key": key if auth is None else "sk-wrong"}
    if auth == "none":
        headers = {}
    query = "&".join(part for part in (AZURE if prefix.startswith("/openai") else "", case.query) if part)
    url = prefix + case.path + (f"?{query}" if query else "")
    return client.open(
        url, method=case.method, data=case.body, headers={**headers, "Content-Type": "application/json"}
    )


def assert_error_envelope(response, case: Case) -> None:
    assert 400 <= response.status_code < 500, (
        f"{case} -> {response.status_code} {response.get_data()[:300]!r}"
    )
    assert response.mimetype == "application/json", str(case)
    body = response.get_json()
    assert set(body) == {"error"}, str(case)
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, str(case)
    assert isinstance(error["message"], str) and error["message"], str(case)
    assert isinstance(error["type"], str), str(case)
    assert error["param"] is None or isinstance(error["param"], str), str(case)
    assert error["code"] is None or isinstance(error["code"], str), str(case)


def test_the_generator_covers_every_route_with_hundreds_of_cases(world):
    _client, _key, ids, _fingerprint = world
    generated = all_cases(ids)
    covered = {(case.method, case.rule) for case in generated}
    assert {(doc.method, doc.rule) for doc in ROUTES} <= covered
    for doc in ROUTES:
        if doc.body is not None:
            assert any(
                c.rule == doc.rule and c.method == doc.method and c.body not in (None, b"{}")
                for c in generated
            ), f"no bad bodies for {doc.method} {doc.rule}"
    assert len(generated) >= 300


@pytest.mark.parametrize("prefix", ["/v1", "/openai", "/openai/deployments/gpt-4o"])
def test_every_generated_bad_request_gets_a_4xx_envelope_and_writes_nothing(world, prefix):
    client, key, ids, fingerprint = world
    before = fingerprint()
    for case in all_cases(ids):
        assert_error_envelope(send(client, key, case, prefix), case)
        if case.method not in ("GET", "PUT", "PATCH"):
            assert fingerprint() == before, f"{case} changed the database"
    assert fingerprint() == before


@pytest.mark.parametrize(
    "body",
    [
        {"max_prompt_tokens": 2**40},
        {"max_completion_tokens": 10**30},
    ],
)
def test_a_number_too_large_for_its_column_is_a_400_not_a_500(world, body):
    """The schema may not bound every integer; the database refusing it still reaches the caller as a 4xx."""
    client, key, ids, fingerprint = world
    before = fingerprint()
    case = Case(
        "POST",
        f"/threads/{ids['thread_id']}/runs",
        json.dumps({"assistant_id": ids["assistant_id"], **body}).encode(),
    )
    assert_error_envelope(send(client, key, case, "/v1"), case)
    assert fingerprint() == before


BAD_ITEMS = [
    ([{"type": "teleport"}], "items[0].type"),
    ([{"role": "robot", "content": "x"}], "items[0].role"),
    ([{"role": "user", "content": "x"}, {"role": "user", "content": 5}], "items[1].content"),
    ([{"role": "user", "content": [{"type": "input_text"}]}], "items[0].content[0].text"),
    ([{"role": "user", "content": "x", "id": "x" * 65}], "items[0].id"),
    ([{"role": "user", "content": "x", "status": "sideways"}], "items[0].status"),
    ([{"type": "function_call", "name": "f", "arguments": "{}"}], "items[0].call_id"),
    ([{"type": "item_reference", "id": "msg_nowhere"}], "items[0].id"),
]


@pytest.mark.parametrize("prefix", ["/v1", "/openai/v1"])
@pytest.mark.parametrize(("items", "param"), BAD_ITEMS)
def test_a_bad_conversation_item_is_refused_naming_it_and_writes_nothing(world, prefix, items, param):
    """Items are checked whole by the use case (not the body model the generator reads): each defect is a
    4xx naming the item, on create and on add alike."""
    client, key, ids, fingerprint = world
    before = fingerprint()
    for path in ("/conversations", f"/conversations/{ids['conversation_id']}/items"):
        case = Case("POST", path, json.dumps({"items": items}).encode())
        response = send(client, key, case, prefix)
        assert_error_envelope(response, case)
        assert response.get_json()["error"]["param"] == param, str(case)
    assert fingerprint() == before
