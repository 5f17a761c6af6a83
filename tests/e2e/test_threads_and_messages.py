"""Threads and messages through the official SDK, against the OpenAI and the Azure client alike."""

from __future__ import annotations

import openai
import pytest

from orchestrator.domain.ids import new_id
from tests.conftest import on_both_targets
from tests.support.clients import make_client

pytestmark = [pytest.mark.e2e, on_both_targets]


def upload(client, name: str = "notes.txt", text: bytes = b"some notes") -> str:
    return client.files.create(file=(name, text), purpose="assistants").id


def test_a_thread_round_trips_through_create_retrieve_modify_and_delete(client):
    code_file, search_file = upload(client), upload(client)
    resources = {
        "code_interpreter": {"file_ids": [code_file]},
        "file_search": {
            "vector_stores": [{"file_ids": [search_file], "chunking_strategy": {"type": "auto"}}]
        },
    }
    created = client.beta.threads.create(metadata={"team": "a"}, tool_resources=resources)
    assert created.id.startswith("thread_")
    assert (created.object, created.metadata) == ("thread", {"team": "a"})
    assert created.tool_resources.code_interpreter.file_ids == [code_file]
    (helper_store,) = created.tool_resources.file_search.vector_store_ids
    assert client.vector_stores.files.retrieve(search_file, vector_store_id=helper_store).id == search_file
    other_store = client.vector_stores.create(name="other").id

    fetched = client.beta.threads.retrieve(created.id)
    assert fetched.model_dump() == created.model_dump()

    modified = client.beta.threads.update(
        created.id,
        metadata={"team": "b"},
        tool_resources={"file_search": {"vector_store_ids": [other_store]}},
    )
    assert modified.metadata == {"team": "b"}
    assert modified.tool_resources.file_search.vector_store_ids == [other_store]
    assert client.beta.threads.retrieve(created.id).metadata == {"team": "b"}

    deleted = client.beta.threads.delete(created.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (created.id, True, "thread.deleted")
    with pytest.raises(openai.NotFoundError) as error:
        client.beta.threads.retrieve(created.id)
    assert error.value.body["message"] == f"No thread found with id '{created.id}'."


def test_a_thread_created_empty_has_empty_metadata_and_tool_resources(client):
    thread = client.beta.threads.create()
    assert (thread.metadata, thread.tool_resources.model_dump(exclude_none=True)) == ({}, {})
    assert client.beta.threads.messages.list(thread.id).data == []


def test_initial_messages_are_stored_in_order_as_completed_user_written_messages(client):
    attached = upload(client)
    thread = client.beta.threads.create(
        messages=[
            {"role": "user", "content": "first", "metadata": {"n": "1"}},
            {"role": "assistant", "content": [{"type": "text", "text": "second"}]},
            {"role": "user", "content": "third", "attachments": [
                {"file_id": attached, "tools": [{"type": "file_search"}]}]},
        ]
    )  # fmt: skip
    listed = client.beta.threads.messages.list(thread.id, order="asc").data
    assert [m.content[0].text.value for m in listed] == ["first", "second", "third"]
    assert [m.role for m in listed] == ["user", "assistant", "user"]
    for message in listed:
        assert (message.thread_id, message.status, message.object) == (
            thread.id,
            "completed",
            "thread.message",
        )
        assert (message.assistant_id, message.run_id) == (None, None)
        assert message.content[0].text.annotations == []
    assert listed[0].metadata == {"n": "1"}
    assert listed[0].attachments == []
    assert listed[2].attachments[0].file_id == attached
    assert listed[2].attachments[0].tools[0].type == "file_search"


def test_message_content_parts_become_text_and_image_blocks(client):
    thread = client.beta.threads.create()
    image = client.files.create(file=("cat.png", PNG), purpose="vision").id
    message = client.beta.threads.messages.create(
        thread.id,
        role="user",
        content=[
            {"type": "text", "text": "look at these"},
            {"type": "image_file", "image_file": {"file_id": image, "detail": "high"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        ],
    )
    assert [block.type for block in message.content] == ["text", "image_file", "image_url"]
    assert message.content[0].text.value == "look at these"
    assert message.content[0].text.annotations == []
    assert (message.content[1].image_file.file_id, message.content[1].image_file.detail) == (image, "high")
    assert message.content[2].image_url.url == "https://example.com/cat.png"
    assert client.beta.threads.messages.retrieve(message.id, thread_id=thread.id).model_dump() == (
        message.model_dump()
    )


def test_a_message_round_trips_through_create_retrieve_modify_and_delete(client):
    thread = client.beta.threads.create()
    created = client.beta.threads.messages.create(
        thread.id, role="user", content="hello", metadata={"k": "v"}
    )
    assert created.id.startswith("msg_")
    assert (created.status, created.content[0].text.value, created.metadata) == (
        "completed",
        "hello",
        {"k": "v"},
    )

    modified = client.beta.threads.messages.update(created.id, thread_id=thread.id, metadata={"k": "w"})
    assert modified.metadata == {"k": "w"}
    assert modified.content[0].text.value == "hello"

    deleted = client.beta.threads.messages.delete(created.id, thread_id=thread.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (created.id, True, "thread.message.deleted")
    with pytest.raises(openai.NotFoundError) as error:
        client.beta.threads.messages.retrieve(created.id, thread_id=thread.id)
    assert error.value.body["message"] == f"No message found with id '{created.id}'."


def test_deleting_a_thread_takes_its_messages_with_it(client):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "bye"}])
    message_id = client.beta.threads.messages.list(thread.id).data[0].id
    client.beta.threads.delete(thread.id)
    with pytest.raises(openai.NotFoundError) as error:
        client.beta.threads.messages.retrieve(message_id, thread_id=thread.id)
    assert error.value.body["message"] == f"No thread found with id '{thread.id}'."


def test_seventeen_metadata_pairs_are_refused_with_the_real_api_message(client):
    pairs = {f"key{i}": "value" for i in range(17)}
    with pytest.raises(openai.BadRequestError) as error:
        client.beta.threads.create(metadata=pairs)
    assert error.value.body == {
        "message": "Invalid 'metadata': too many properties. Expected an object with at most 16 properties, "
        "but got an object with 17 properties instead.",
        "type": "invalid_request_error",
        "param": "metadata",
        "code": "object_above_max_properties",
    }
    thread = client.beta.threads.create()
    with pytest.raises(openai.BadRequestError):
        client.beta.threads.messages.create(thread.id, role="user", content="x", metadata=pairs)
    assert client.beta.threads.messages.list(thread.id).data == []


def test_a_bad_id_prefix_is_a_400_and_an_unknown_id_a_404(client):
    with pytest.raises(openai.BadRequestError) as error:
        client.beta.threads.retrieve("undefined")
    assert (
        error.value.body["message"]
        == "Invalid 'thread_id': 'undefined'. Expected an ID that begins with 'thread'."
    )
    missing = new_id("thread")
    with pytest.raises(openai.NotFoundError) as error:
        client.beta.threads.messages.list(missing)
    assert error.value.body["message"] == f"No thread found with id '{missing}'."


@pytest.fixture(scope="module")
def long_thread(server):
    """One thread with 25 messages, shared by the pagination tests."""
    sdk = make_client("openai", server.base, server.key, max_retries=0, timeout=30)
    thread = sdk.beta.threads.create()
    ids = [sdk.beta.threads.messages.create(thread.id, role="user", content=f"m{i}").id for i in range(25)]
    sdk.close()
    return thread.id, ids


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_auto_pagination_walks_every_message_exactly_once_in_order(client, long_thread, order):
    thread_id, ids = long_thread
    walked = [m.id for m in client.beta.threads.messages.list(thread_id, limit=7, order=order)]
    assert walked == (ids if order == "asc" else ids[::-1])


def test_a_page_reports_its_first_and_last_ids_and_whether_more_follow(client, long_thread):
    thread_id, ids = long_thread
    page = client.beta.threads.messages.list(thread_id, limit=7, order="asc")
    assert [m.id for m in page.data] == ids[:7]
    assert (page.first_id, page.last_id, page.has_more) == (ids[0], ids[6], True)
    last = client.beta.threads.messages.list(thread_id, limit=7, order="asc", after=ids[20])
    assert ([m.id for m in last.data], last.has_more) == (ids[21:], False)


def test_the_before_cursor_returns_the_items_just_before_it_in_the_requested_order(client, long_thread):
    thread_id, ids = long_thread
    page = client.beta.threads.messages.list(thread_id, limit=5, order="asc", before=ids[10])
    assert [m.id for m in page.data] == ids[5:10]
    assert page.has_more is True
    page = client.beta.threads.messages.list(thread_id, limit=5, order="desc", before=ids[10])
    assert [m.id for m in page.data] == ids[15:10:-1]


def test_the_run_id_filter_returns_nothing_for_a_run_with_no_messages(client, long_thread):
    thread_id, _ids = long_thread
    assert client.beta.threads.messages.list(thread_id, run_id=new_id("run")).data == []


@pytest.fixture(scope="module")
def other_key(server):
    return server.create_key("other")


def test_another_tenant_sees_none_of_the_first_tenants_objects(client, server, long_thread, other_key):
    thread_id, ids = long_thread
    assistant = client.beta.assistants.create(model="local-echo")
    other = make_client("openai", server.base, other_key, max_retries=0, timeout=30)
    try:
        attempts = [
            lambda: other.beta.threads.retrieve(thread_id),
            lambda: other.beta.threads.update(thread_id, metadata={"x": "y"}),
            lambda: other.beta.threads.delete(thread_id),
            lambda: other.beta.threads.messages.list(thread_id),
            lambda: other.beta.threads.messages.create(thread_id, role="user", content="intrude"),
            lambda: other.beta.threads.messages.retrieve(ids[0], thread_id=thread_id),
            lambda: other.beta.threads.messages.update(ids[0], thread_id=thread_id, metadata={"x": "y"}),
            lambda: other.beta.threads.messages.delete(ids[0], thread_id=thread_id),
            lambda: other.beta.assistants.retrieve(assistant.id),
            lambda: other.beta.assistants.delete(assistant.id),
        ]
        for attempt in attempts:
            with pytest.raises(openai.NotFoundError):
                attempt()
        assert assistant.id not in [a.id for a in other.beta.assistants.list(limit=100)]
    finally:
        other.close()
    assert len(client.beta.threads.messages.list(thread_id, limit=100).data) == len(ids)
    assert client.beta.threads.retrieve(thread_id).metadata == {}


def test_an_image_file_part_naming_a_missing_file_is_refused_and_adds_nothing(client):
    image = client.files.create(file=("dot.png", PNG), purpose="vision").id
    text = {"type": "text", "text": "look"}
    missing = {"type": "image_file", "image_file": {"file_id": "file-missing"}}
    shown = {"type": "image_file", "image_file": {"file_id": image}}
    thread = client.beta.threads.create()
    with pytest.raises(openai.BadRequestError) as refused:
        client.beta.threads.messages.create(thread.id, role="user", content=[text, missing])
    assert refused.value.body["param"] == "content[1].image_file.file_id"
    assert refused.value.body["message"] == (
        "Invalid 'content[1].image_file.file_id': no file found with id 'file-missing'."
    )
    assert client.beta.threads.messages.list(thread.id).data == []
    with pytest.raises(openai.BadRequestError) as refused:
        client.beta.threads.create(messages=[{"role": "user", "content": [shown, missing]}])
    assert refused.value.body["param"] == "messages[0].content[1].image_file.file_id"
    with pytest.raises(openai.BadRequestError) as refused:
        client.beta.threads.create_and_run(
            assistant_id=client.beta.assistants.create(model="local").id,
            thread={"messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": [missing]}]},
        )
    assert refused.value.body["param"] == "thread.messages[1].content[0].image_file.file_id"
    made = client.beta.threads.messages.create(thread.id, role="user", content=[text, shown])
    assert made.content[1].image_file.file_id == image


PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c6360000002000100e221bc330000000049454e44ae426082"
)
