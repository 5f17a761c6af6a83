"""Server-side tools in the Responses API through the official SDK: file_search over the tool's stores,
code_interpreter in containers (and `client.containers.*`), function tools with strict schemas and every
form of tool_choice. Against the production stack (workers calling the `orchestrator sandbox` service) and
`orchestrator dev` (the same jail in-process): the `target` fixture of tests/e2e/conftest.py, shared with
the Assistants' hosted-tools tests. The OpenAI client drives the stack, the Azure client dev.

The local model decides the calls (ARCHITECTURE.md, rules 4 and 5): it searches once when the response
has a store, and runs the fenced python block of the latest user message."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import openai
import pydantic
import pytest
import sqlalchemy as sa

from tests.support.clients import make_async_client, make_client
from tests.support.polling import wait_for
from tests.support.sandbox import needs_bwrap
from tests.support.takeover import only_a_slow_worker

pytestmark = [pytest.mark.e2e, needs_bwrap]

RESULTS = ["file_search_call.results"]
OUTPUTS = ["code_interpreter_call.outputs"]
KB = {
    "refunds.md": b"Refund policy: damaged goods can be returned within 30 days for a full refund.",
    "shipping.txt": b"Shipping: we ship worldwide, express delivery takes two days.",
}
CHART = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.show()"


def flavour(target) -> str:
    return "openai" if target.name == "stack" else "azure"


@pytest.fixture
def client(target):
    sdk = make_client(flavour(target), target.base, target.key, max_retries=0, timeout=60)
    yield sdk
    sdk.close()


@pytest.fixture(scope="module")
def stranger_key(target) -> str:
    return target.create_key("stranger")


@pytest.fixture
def stranger(target, stranger_key):
    """Another tenant's client on the same deployment."""
    sdk = make_client(flavour(target), target.base, stranger_key, max_retries=0, timeout=60)
    yield sdk
    sdk.close()


@pytest.fixture(scope="module")
def kb(target):
    """A store with the knowledge base, each file tagged with a `topic` attribute: (store id, file ids)."""
    sdk = make_client("openai", target.base, target.key, max_retries=0, timeout=60)
    ids = {name: sdk.files.create(file=(name, data), purpose="assistants").id for name, data in KB.items()}
    store = sdk.vector_stores.create(name="kb")
    for name, file_id in ids.items():
        topic = name.split(".")[0]
        sdk.vector_stores.files.create_and_poll(
            file_id, vector_store_id=store.id, attributes={"topic": topic}
        )
    sdk.close()
    return store.id, ids


def searching(store_id: str, **options) -> list[dict]:
    return [{"type": "file_search", "vector_store_ids": [store_id], **options}]


def code(source: str) -> str:
    return f"Please run this:\n```python\n{source}\n```"


def coding(container="auto", file_ids=None) -> list[dict]:
    if container == "auto":
        container = {"type": "auto", **({"file_ids": file_ids} if file_ids else {})}
    return [{"type": "code_interpreter", "container": container}]


def only(output, kind: str):
    (item,) = [item for item in output if item.type == kind]
    return item


# --- file_search -----------------------------------------------------------------------------------------


def test_file_search_searches_the_tools_store_and_the_reply_cites_the_file_that_answers(client, kb):
    store_id, ids = kb
    response = client.responses.create(
        model="local",
        input="How many days do I have to return damaged goods?",
        tools=searching(store_id),
        include=RESULTS,
    )
    assert response.status == "completed", response.error
    call = only(response.output, "file_search_call")
    assert call.status == "completed" and call.queries == ["How many days do I have to return damaged goods?"]
    top = call.results[0]
    assert (top.file_id, top.filename) == (ids["refunds.md"], "refunds.md")
    assert "30 days" in top.text and 0 < top.score <= 1
    text = only(response.output, "message").content[0]
    assert "30 days" in text.text
    (citation,) = text.annotations
    assert (citation.type, citation.file_id, citation.filename) == (
        "file_citation",
        ids["refunds.md"],
        "refunds.md",
    )
    assert text.text[citation.index :].startswith("【")  # where the citation marker stands
    assert client.responses.retrieve(response.id).output[0].results[0].file_id == ids["refunds.md"]


def test_search_results_are_shown_only_when_included(client, kb):
    store_id, _ids = kb
    response = client.responses.create(model="local", input="express delivery?", tools=searching(store_id))
    call = only(response.output, "file_search_call")
    assert call.status == "completed" and call.results is None
    assert client.responses.retrieve(response.id).output[0].results is None
    shown = client.responses.retrieve(response.id, include=RESULTS).output[0].results
    assert shown[0].filename == "shipping.txt"


def test_max_num_results_and_a_filter_narrow_the_search(client, kb):
    store_id, ids = kb
    both = client.responses.create(model="local", input="days", tools=searching(store_id), include=RESULTS)
    assert len(only(both.output, "file_search_call").results) == 2  # each file mentions days
    one = client.responses.create(
        model="local", input="days", tools=searching(store_id, max_num_results=1), include=RESULTS
    )
    assert len(only(one.output, "file_search_call").results) == 1
    shipping = {"type": "eq", "key": "topic", "value": "shipping"}
    filtered = client.responses.create(
        model="local", input="days", tools=searching(store_id, filters=shipping), include=RESULTS
    )
    results = only(filtered.output, "file_search_call").results
    assert [r.file_id for r in results] == [ids["shipping.txt"]]
    assert results[0].attributes == {"topic": "shipping"}


def test_a_streamed_search_goes_through_its_events_in_order_and_the_annotation_streams_before_the_text_is_done(
    client, kb
):
    store_id, ids = kb
    with client.responses.stream(
        model="local", input="damaged goods refund?", tools=searching(store_id), include=RESULTS
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [event.type for event in events if not event.type.endswith(".delta")]
    assert kinds == [
        "response.created",
        "response.queued",
        "response.in_progress",
        "response.output_item.added",
        "response.file_search_call.in_progress",
        "response.file_search_call.searching",
        "response.file_search_call.completed",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.annotation.added",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    (added,) = [event for event in events if event.type == "response.output_text.annotation.added"]
    message = only(final.output, "message")
    assert (added.item_id, added.output_index, added.content_index, added.annotation_index) == (
        message.id,
        1,
        0,
        0,
    )
    assert added.annotation.type == "file_citation"
    assert added.annotation.file_id == ids["refunds.md"] == message.content[0].annotations[0].file_id
    done = [e for e in events if e.type == "response.output_item.done"][0]
    assert done.item.results[0].file_id == ids["refunds.md"]


def test_a_chained_response_reads_the_earlier_search_without_its_citation_markers(client, kb, upstream):
    """The markers number the searches of the response that ran them: a later response's model (an
    upstream fake, which shows what it was sent) reads the earlier results plainly, so it cannot quote a
    marker that would cite its own searches."""
    store_id, _ids = kb
    first = client.responses.create(model="local", input="refunds?", tools=searching(store_id))
    assert "【" in first.output_text  # the first response's model read (and quoted) its marker
    marker = f"m{time.monotonic_ns()}"
    second = client.responses.create(model="gpt-4o-mini", previous_response_id=first.id, input=marker)
    assert second.output_text == f"Echo: {marker}"
    (sent,) = [b for b in upstream.bodies() if marker in json.dumps(b["messages"])]
    (read,) = [m["content"] for m in sent["messages"] if m["role"] == "tool"]
    assert read.startswith("refunds.md: Refund policy") and "【" not in read


def test_unknown_or_another_tenants_store_is_not_found_and_makes_nothing(client, stranger, kb):
    store_id, _ids = kb
    for sdk, store in ((client, "vs_doesnotexist"), (stranger, store_id)):
        with pytest.raises(openai.NotFoundError) as caught:
            sdk.responses.create(model="local", input="anything", tools=searching(store))
        assert caught.value.body["message"] == f"No vector store found with id '{store}'."
        assert caught.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(
            model="local", input="x", tools=searching(store_id, filters={"type": "like", "key": "a"})
        )
    assert caught.value.body["param"].startswith("tools")


# --- containers ------------------------------------------------------------------------------------------


def test_containers_and_their_files_through_the_sdk(client, stranger):
    shared = client.files.create(file=("sales.csv", b"region,amount\nnorth,3\n"), purpose="assistants")
    made = client.containers.create(
        name="analysis", file_ids=[shared.id], expires_after={"anchor": "last_active_at", "minutes": 5}
    )
    assert made.id.startswith("cntr_") and made.object == "container" and made.status == "running"
    assert (made.name, made.expires_after.minutes, made.expires_after.anchor) == (
        "analysis",
        5,
        "last_active_at",
    )
    assert client.containers.retrieve(made.id).model_dump() == made.model_dump()
    other = client.containers.create(name="other")
    assert other.expires_after.minutes == 20  # the hosted default
    assert [c.id for c in client.containers.list(name="analysis")] == [made.id]
    page = client.containers.list(limit=1, order="asc", after=made.id)
    assert [c.id for c in page.data] == [other.id]

    uploaded = client.containers.files.create(made.id, file=("notes.txt", b"hello container"))
    assert (uploaded.path, uploaded.source, uploaded.bytes) == ("/mnt/data/notes.txt", "user", 15)
    assert uploaded.container_id == made.id and uploaded.object == "container.file"
    listed = client.containers.files.list(made.id, order="asc")
    assert [(f.path, f.source) for f in listed] == [
        ("/mnt/data/sales.csv", "user"),
        ("/mnt/data/notes.txt", "user"),
    ]
    assert (
        client.containers.files.retrieve(uploaded.id, container_id=made.id).model_dump()
        == uploaded.model_dump()
    )
    content = client.containers.files.content.retrieve(uploaded.id, container_id=made.id)
    assert content.read() == b"hello container"

    client.containers.files.delete(uploaded.id, container_id=made.id)
    assert [f.path for f in client.containers.files.list(made.id)] == ["/mnt/data/sales.csv"]
    with pytest.raises(openai.NotFoundError):
        client.containers.files.retrieve(uploaded.id, container_id=made.id)

    for call in (
        lambda: stranger.containers.retrieve(made.id),
        lambda: stranger.containers.files.list(made.id),
        lambda: stranger.containers.delete(made.id),
        lambda: stranger.containers.create(name="x", file_ids=[shared.id]),
        lambda: stranger.containers.files.create(other.id, file_id=shared.id),
    ):
        with pytest.raises(openai.NotFoundError):
            call()

    client.containers.delete(made.id)
    with pytest.raises(openai.NotFoundError):
        client.containers.retrieve(made.id)
    assert client.files.retrieve(shared.id).id == shared.id  # a shared file stays the tenant's
    client.containers.files.create(other.id, file_id=shared.id)
    client.files.delete(shared.id)  # and deleting it takes it out of every container
    assert list(client.containers.files.list(other.id)) == []
    client.containers.delete(other.id)


def test_bad_container_requests_get_the_envelope_and_change_nothing(client):
    before = [c.id for c in client.containers.list(limit=100)]
    bad = (
        ({}, "name"),
        ({"name": "x", "expires_after": {"anchor": "last_active_at", "minutes": 0}}, "expires_after.minutes"),
        ({"name": "x", "network_policy": {"type": "allowlist", "allowed_domains": ["a.b"]}}, None),
        ({"name": "x", "file_ids": ["not-a-file"]}, "file_ids"),
    )
    for body, param in bad:
        with pytest.raises(openai.BadRequestError) as caught:
            client.post("/containers", body=body, cast_to=object)
        assert caught.value.body["type"] == "invalid_request_error"
        if param is not None:
            assert caught.value.body["param"] == param
    with pytest.raises(openai.NotFoundError):
        client.containers.create(name="x", file_ids=["file-doesnotexist"])
    with pytest.raises(openai.BadRequestError):
        client.containers.retrieve("not_a_container")
    with pytest.raises(openai.NotFoundError):
        client.containers.retrieve("cntr_doesnotexist")
    assert [c.id for c in client.containers.list(limit=100)] == before


def test_an_expired_container_is_swept_with_the_files_it_made(client, target):
    made = client.containers.create(name="short-lived")
    client.containers.files.create(made.id, file=("scratch-swept.txt", b"gone soon"))

    def owned():
        return [f for f in client.files.list(purpose="user_data") if f.filename == "scratch-swept.txt"]

    assert len(owned()) == 1  # the container's own file, kept in the files wing
    engine = sa.create_engine(target.database_url)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE containers SET expires_at = 1 WHERE id = :id"), {"id": made.id})
    engine.dispose()
    wait_for(lambda: _gone(lambda: client.containers.retrieve(made.id)), timeout=20)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="local", input="x", tools=coding(made.id))
    assert owned() == []


def _gone(call) -> bool:
    try:
        call()
    except openai.NotFoundError:
        return True
    return False


# --- code_interpreter ------------------------------------------------------------------------------------


def test_code_runs_in_a_container_made_for_the_response_and_its_logs_show_when_included(client):
    response = client.responses.create(
        model="local", input=code("print(6 * 7)"), tools=coding(), include=OUTPUTS
    )
    assert response.status == "completed", response.error
    call = only(response.output, "code_interpreter_call")
    assert (call.status, call.code) == ("completed", "print(6 * 7)\n")
    assert [(o.type, o.logs) for o in call.outputs] == [("logs", "42")]
    assert response.output_text == "The code ran. Output:\n42"
    container = client.containers.retrieve(call.container_id)
    assert container.status == "running" and response.id in container.name
    plain = client.responses.create(model="local", input=code("print(1)"), tools=coding())
    assert only(plain.output, "code_interpreter_call").outputs is None
    assert only(plain.output, "code_interpreter_call").container_id != call.container_id
    shown = client.responses.retrieve(plain.id, include=OUTPUTS)
    assert [o.logs for o in only(shown.output, "code_interpreter_call").outputs] == ["1"]


def test_a_named_container_keeps_variables_and_files_between_responses(client):
    container = client.containers.create(name="session")
    first = client.responses.create(
        model="local", input=code("x = 6 * 7\nprint(x)"), tools=coding(container.id)
    )
    assert only(first.output, "code_interpreter_call").container_id == container.id
    second = client.responses.create(model="local", input=code("print(x + 1)"), tools=coding(container.id))
    assert "43" in second.output_text
    elsewhere = client.responses.create(model="local", input=code("print('x' in globals())"), tools=coding())
    assert "False" in elsewhere.output_text
    # `auto` on a chain reuses the container the chain's code ran in while it lives (as hosted).
    chained = client.responses.create(
        model="local", previous_response_id=second.id, input=code("print(x + 2)"), tools=coding()
    )
    assert only(chained.output, "code_interpreter_call").container_id == container.id
    assert "44" in chained.output_text


def test_input_files_are_in_mnt_data_and_a_written_file_comes_back_as_a_container_file_citation(client):
    table = client.files.create(
        file=("sales.csv", b"region,amount\nnorth,3\nsouth,4\n"), purpose="assistants"
    )
    source = (
        "import csv\n"
        "rows = list(csv.DictReader(open('/mnt/data/sales.csv')))\n"
        "total = sum(int(r['amount']) for r in rows)\n"
        "open('/mnt/data/total.txt', 'w').write(f'total={total}')\n"
        "print(total)"
    )
    response = client.responses.create(model="local", input=code(source), tools=coding(file_ids=[table.id]))
    call = only(response.output, "code_interpreter_call")
    text = only(response.output, "message").content[0]
    assert "7" in text.text
    (cited,) = text.annotations
    assert cited.type == "container_file_citation"
    assert (cited.container_id, cited.filename) == (call.container_id, "total.txt")
    assert text.text[cited.start_index : cited.end_index] == "sandbox:/mnt/data/total.txt"
    written = client.containers.files.retrieve(cited.file_id, container_id=call.container_id)
    assert (written.path, written.source) == ("/mnt/data/total.txt", "assistant")
    content = client.containers.files.content.retrieve(cited.file_id, container_id=call.container_id)
    assert content.read() == b"total=7"
    paths = sorted(f.path for f in client.containers.files.list(call.container_id))
    assert paths == ["/mnt/data/sales.csv", "/mnt/data/total.txt"]
    # Written again, the file keeps its container file id and shows its new bytes.
    again = client.responses.create(
        model="local",
        input=code("open('/mnt/data/total.txt', 'w').write('total=8')"),
        tools=coding(call.container_id),
    )
    assert again.status == "completed"
    rewritten = client.containers.files.content.retrieve(cited.file_id, container_id=call.container_id)
    assert rewritten.read() == b"total=8"


def test_a_chart_comes_back_as_an_image_output_with_a_data_url(client):
    response = client.responses.create(model="local", input=code(CHART), tools=coding(), include=OUTPUTS)
    call = only(response.output, "code_interpreter_call")
    (image,) = [o for o in call.outputs if o.type == "image"]
    prefix = "data:image/png;base64,"
    assert image.url.startswith(prefix)
    assert base64.b64decode(image.url[len(prefix) :]).startswith(b"\x89PNG")


def test_a_streamed_code_call_goes_through_its_events_in_order(target):
    sdk = make_client(flavour(target), target.base, target.key, max_retries=0, timeout=60)
    source = "for i in range(3):\n    print('line', i)"
    with sdk.responses.stream(model="local", input=code(source), tools=coding(), include=OUTPUTS) as stream:
        events = list(stream)
        final = stream.get_final_response()
    sdk.close()
    kinds = [e.type for e in events if e.type not in ("response.output_text.delta",)]
    code_deltas = [e.delta for e in events if e.type == "response.code_interpreter_call_code.delta"]
    assert len(code_deltas) >= 2 and "".join(code_deltas) == source + "\n"
    kinds = [k for k in kinds if k != "response.code_interpreter_call_code.delta"]
    assert kinds[:9] == [
        "response.created",
        "response.queued",
        "response.in_progress",
        "response.output_item.added",
        "response.code_interpreter_call.in_progress",
        "response.code_interpreter_call_code.done",
        "response.code_interpreter_call.interpreting",
        "response.code_interpreter_call.completed",
        "response.output_item.done",
    ]
    done = next(e for e in events if e.type == "response.output_item.done")
    assert [o.logs for o in done.item.outputs] == ["line 0\nline 1\nline 2"]
    assert final.output_text == "The code ran. Output:\nline 0\nline 1\nline 2"


def test_an_async_stream_with_a_named_container(target):
    async def main():
        sdk = make_async_client(flavour(target), target.base, target.key, max_retries=0, timeout=60)
        container = await sdk.containers.create(name="async")
        async with sdk.responses.stream(
            model="local", input=code("print(sum(range(10)))"), tools=coding(container.id)
        ) as stream:
            async for _event in stream:
                pass
            final = await stream.get_final_response()
        files = [f async for f in sdk.containers.files.list(container.id)]
        await sdk.containers.delete(container.id)
        await sdk.close()
        return container, final, files

    container, final, files = asyncio.run(main())
    assert only(final.output, "code_interpreter_call").container_id == container.id
    assert "45" in final.output_text and files == []


def test_bad_code_interpreter_requests_are_refused(client, stranger):
    mine = client.containers.create(name="mine")
    for sdk, tools in (
        (client, coding("cntr_doesnotexist")),
        (stranger, coding(mine.id)),
        (client, coding(file_ids=["file-doesnotexist"])),
    ):
        with pytest.raises(openai.NotFoundError) as caught:
            sdk.responses.create(model="local", input=code("print(1)"), tools=tools)
        assert caught.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="local", input="x", tools=[{"type": "code_interpreter"}])
    assert [f.path for f in client.containers.files.list(mine.id)] == []


# --- function tools and tool_choice ----------------------------------------------------------------------


class Weather(pydantic.BaseModel):
    city: str
    days: int


WEATHER = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}
TIME = {"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {}}}


def test_a_strict_function_tool_gives_arguments_the_parse_helper_validates(client):
    response = client.responses.parse(
        model="local",
        input='Weather please {"city": "Oslo", "days": 3}',
        tools=[openai.pydantic_responses_function_tool(Weather, name="forecast")],
        tool_choice={"type": "function", "name": "forecast"},
    )
    (call,) = response.output
    assert call.type == "function_call" and call.name == "forecast"
    assert call.parsed_arguments == Weather(city="Oslo", days=3)
    assert response.tools[0].strict is True


def test_a_strict_function_whose_schema_cannot_be_held_strictly_is_refused(client):
    loose = {**WEATHER, "strict": True}
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="local", input="weather", tools=[loose])
    body = caught.value.body
    assert body["param"] == "tools[0].parameters" and body["code"] == "invalid_function_parameters"
    assert "additionalProperties" in body["message"]


def test_tool_choice_names_forces_requires_or_forbids_a_call(client):
    tools = [WEATHER, TIME]
    named = client.responses.create(
        model="local",
        input="get_weather in Oslo",
        tools=tools,
        tool_choice={"type": "function", "name": "get_time"},
    )
    assert [(i.type, i.name) for i in named.output] == [("function_call", "get_time")]
    assert named.tool_choice.name == "get_time"
    required = client.responses.create(model="local", input="hello", tools=tools, tool_choice="required")
    assert [i.name for i in required.output] == ["get_weather"]
    none = client.responses.create(model="local", input="get_weather now", tools=tools, tool_choice="none")
    assert none.output_text == "You said: get_weather now"
    for bad in (
        {"tool_choice": {"type": "function", "name": "missing"}, "tools": tools},
        {"tool_choice": {"type": "file_search"}, "tools": tools},
        {"tool_choice": "required"},
    ):
        with pytest.raises(openai.BadRequestError) as caught:
            client.responses.create(model="local", input="x", **bad)
        assert caught.value.body["param"] == "tool_choice"


def test_a_forced_search_is_forced_once_then_the_model_answers(client, kb):
    store_id, ids = kb
    response = client.responses.create(
        model="local",
        input="refunds get_weather",
        tools=[*searching(store_id), WEATHER],
        tool_choice={"type": "file_search"},
        include=RESULTS,
    )
    assert [item.type for item in response.output] == ["file_search_call", "message"]
    assert only(response.output, "message").content[0].annotations[0].file_id == ids["refunds.md"]


def test_an_upstream_model_gets_the_code_tool_forced_once_then_reads_the_result(client, upstream):
    """An OpenAI-compatible upstream (a fake) sees the reserved `python` function, forced by tool_choice
    code_interpreter on the first call and free on the second, which carries the execution's output."""
    marker = f"m{time.monotonic_ns()}"
    response = client.responses.create(
        model="gpt-4o-mini",
        input=f'[[tools]] {marker} {{"code": "print(2 + 3)"}}',
        tools=coding(),
        tool_choice={"type": "code_interpreter"},
        include=OUTPUTS,
    )
    assert response.status == "completed", response.error
    call = only(response.output, "code_interpreter_call")
    assert call.code == "print(2 + 3)" and [o.logs for o in call.outputs] == ["5"]
    assert response.output_text == "Tool results: 5"
    sent = [b for b in upstream.bodies() if marker in json.dumps(b["messages"])]
    assert len(sent) == 2
    assert [t["function"]["name"] for t in sent[0]["tools"]] == ["python"]
    assert sent[0]["tool_choice"] == {"type": "function", "function": {"name": "python"}}
    assert sent[1]["tool_choice"] == "auto"
    assert sent[1]["messages"][-1]["role"] == "tool" and sent[1]["messages"][-1]["content"] == "5"


def test_max_tool_calls_stops_offering_server_side_tools(client, upstream):
    marker = f"m{time.monotonic_ns()}"
    response = client.responses.create(
        model="gpt-4o-mini",
        input=f'[[tools]] {marker} {{"code": "print(1)"}}',
        tools=coding(),
        tool_choice="required",
        max_tool_calls=1,
    )
    assert response.status == "completed", response.error
    sent = [b for b in upstream.bodies() if marker in json.dumps(b["messages"])]
    assert [bool(b.get("tools")) for b in sent] == [True, False]
    assert sent[0]["tool_choice"] == "required"


# --- faults ----------------------------------------------------------------------------------------------


@pytest.mark.fault
@pytest.mark.parametrize("target", ["stack"], indirect=True)  # workers to kill
def test_a_worker_killed_after_the_code_ran_does_not_run_it_again(target, tmp_path, redis_url):
    """The code's item is stored done before the model is called again: a worker SIGKILLed in that call
    (a slow model's first-token pause) leaves the code done, and the response ends once, elsewhere."""
    sdk = make_client("openai", target.base, target.key, max_retries=0, timeout=60)
    container = sdk.containers.create(name="once")
    # Only the slow worker takes this response: the stack's own workers pause while it is claimed.
    with only_a_slow_worker(target.stack, target.database_url, redis_url, tmp_path) as slow_worker:
        response = sdk.responses.create(
            model="local",
            input=code("open('/mnt/data/ran', 'a').write('x')\nprint('ran')"),
            tools=coding(container.id),
            background=True,
        )

        def code_done():
            output = sdk.responses.retrieve(response.id).output
            return any(i.type == "code_interpreter_call" and i.status == "completed" for i in output)

        wait_for(code_done, timeout=60)
        slow_worker.kill()
    done = wait_for(
        lambda: (r := sdk.responses.retrieve(response.id)).status not in ("queued", "in_progress") and r,
        timeout=60,
    )
    assert done.status == "completed", done.error
    assert [i.type for i in done.output] == ["code_interpreter_call", "message"]
    check = sdk.responses.create(
        model="local", input=code("print(open('/mnt/data/ran').read())"), tools=coding(container.id)
    )
    assert check.output_text == "The code ran. Output:\nx"
    sdk.close()
