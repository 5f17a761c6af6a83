"""Conversations through the official SDK's own methods: the OpenAI client, the Azure client and Azure's
/openai/v1 path, sync and async, against the stack and `orchestrator dev`."""

from __future__ import annotations

import asyncio
import uuid

import httpx2 as httpx
import openai
import pytest
from openai.types.conversations import Conversation, ConversationDeletedResource, ConversationItemList

from tests.conftest import on_both_targets
from tests.support.clients import make_async_client, make_client

pytestmark = [pytest.mark.e2e, on_both_targets]

FLAVOURS = ["openai", "azure", "azure_v1"]
WORDS = [f"w{i}" for i in range(7)]


def said(item) -> str:
    return item.content[0].text


def seeded(sdk) -> str:
    """A conversation holding WORDS in order: one item given at create, the others added after."""
    conversation = sdk.conversations.create(items=[{"role": "user", "content": WORDS[0]}])
    sdk.conversations.items.create(
        conversation.id, items=[{"type": "message", "role": "user", "content": w} for w in WORDS[1:]]
    )
    return conversation.id


def test_a_conversation_round_trips_through_create_retrieve_update_and_delete(client):
    created = client.conversations.create(
        metadata={"topic": "demo"}, items=[{"role": "user", "content": "hello"}]
    )
    assert isinstance(created, Conversation) and created.id.startswith("conv_")
    assert (created.object, created.metadata) == ("conversation", {"topic": "demo"})
    assert client.conversations.retrieve(created.id).model_dump() == created.model_dump()

    updated = client.conversations.update(created.id, metadata={"topic": "other"})
    assert (updated.id, updated.metadata) == (created.id, {"topic": "other"})
    assert client.conversations.update(created.id, metadata=None).metadata == {}
    assert client.conversations.retrieve(created.id).metadata == {}

    deleted = client.conversations.delete(created.id)
    assert isinstance(deleted, ConversationDeletedResource)
    assert (deleted.id, deleted.object, deleted.deleted) == (created.id, "conversation.deleted", True)
    with pytest.raises(openai.NotFoundError) as error:
        client.conversations.retrieve(created.id)
    assert error.value.body["message"] == f"No conversation found with id '{created.id}'."
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.list(created.id)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_items_are_added_paged_through_retrieved_and_deleted(server, flavour):
    sdk = make_client(flavour, server.base, server.key, max_retries=0, timeout=30)
    cid = seeded(sdk)
    added = sdk.conversations.items.create(
        cid, items=[{"role": "assistant", "content": "reply"}, {"role": "developer", "content": "be brief"}]
    )
    assert isinstance(added, ConversationItemList) and added.object == "list"
    assert [item.role for item in added.data] == ["assistant", "developer"]
    assert (added.first_id, added.last_id, added.has_more) == (added.data[0].id, added.data[1].id, False)
    assert added.data[0].content[0].type == "output_text" and added.data[0].status == "completed"

    # Several pages of two, followed by the SDK from each page's last_id.
    first = sdk.conversations.items.list(cid, limit=2, order="asc")
    assert first.has_more and len(first.data) == 2
    assert len(list(first.iter_pages())) == 5
    oldest_first = [said(item) for item in sdk.conversations.items.list(cid, limit=2, order="asc")]
    assert oldest_first == [*WORDS, "reply", "be brief"]
    assert [said(item) for item in sdk.conversations.items.list(cid, limit=2)] == oldest_first[::-1]
    middle = sdk.conversations.items.list(cid, after=first.last_id, limit=3, order="asc")
    assert [said(item) for item in middle.data] == WORDS[2:5]

    reply = sdk.conversations.items.retrieve(added.first_id, conversation_id=cid)
    assert (reply.id, reply.type, reply.role, said(reply)) == (
        added.first_id,
        "message",
        "assistant",
        "reply",
    )
    answer = sdk.conversations.items.delete(added.first_id, conversation_id=cid)
    assert isinstance(answer, Conversation) and (answer.id, answer.object) == (cid, "conversation")
    with pytest.raises(openai.NotFoundError):
        sdk.conversations.items.retrieve(added.first_id, conversation_id=cid)
    assert "reply" not in [said(item) for item in sdk.conversations.items.list(cid, limit=100)]
    sdk.close()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_the_async_clients_page_through_items_too(server, flavour):
    async def main() -> tuple[list[str], list[str]]:
        sdk = make_async_client(flavour, server.base, server.key, max_retries=0, timeout=30)
        async with sdk:
            conversation = await sdk.conversations.create(items=[{"role": "user", "content": WORDS[0]}])
            await sdk.conversations.items.create(
                conversation.id, items=[{"role": "user", "content": w} for w in WORDS[1:]]
            )
            pages = sdk.conversations.items.list(conversation.id, limit=2, order="asc")
            ascending = [said(item) async for item in pages]
            descending = [said(item) async for item in sdk.conversations.items.list(conversation.id, limit=3)]
            return ascending, descending

    ascending, descending = asyncio.run(main())
    assert (ascending, descending) == (WORDS, WORDS[::-1])


def test_one_conversation_is_the_same_through_every_client(server):
    sdks = [make_client(flavour, server.base, server.key, max_retries=0, timeout=30) for flavour in FLAVOURS]
    cid = seeded(sdks[0])
    for sdk in sdks:
        assert sdk.conversations.retrieve(cid).id == cid
        assert [said(item) for item in sdk.conversations.items.list(cid, order="asc")] == WORDS
        sdk.close()


def test_another_tenants_key_gets_a_404_like_a_missing_conversation_and_changes_nothing(server, client):
    cid = seeded(client)
    item = client.conversations.items.list(cid, limit=1).data[0].id
    stranger = make_client("openai", server.base, server.create_key(f"conv-{uuid.uuid4().hex[:8]}"))
    calls = {
        "retrieve": lambda c: stranger.conversations.retrieve(c),
        "update": lambda c: stranger.conversations.update(c, metadata={"x": "y"}),
        "delete": lambda c: stranger.conversations.delete(c),
        "items.create": lambda c: stranger.conversations.items.create(c, items=[{"role": "user", "content": "x"}]),
        "items.list": lambda c: stranger.conversations.items.list(c),
        "items.retrieve": lambda c: stranger.conversations.items.retrieve(item, conversation_id=c),
        "items.delete": lambda c: stranger.conversations.items.delete(item, conversation_id=c),
    }  # fmt: skip
    missing = "conv_" + uuid.uuid4().hex
    for name, call in calls.items():
        with pytest.raises(openai.NotFoundError) as theirs:
            call(cid)
        with pytest.raises(openai.NotFoundError) as nothing:
            call(missing)
        assert theirs.value.body == {**nothing.value.body, "message": nothing.value.body["message"].replace(missing, cid)}, name  # fmt: skip
    assert client.conversations.retrieve(cid).metadata == {}
    assert [said(i) for i in client.conversations.items.list(cid, order="asc")] == WORDS
    stranger.close()


def test_include_shows_a_searchs_results_only_when_asked(client):
    search = {
        "type": "file_search_call",
        "id": "fs_e2e1",
        "status": "completed",
        "queries": ["apples"],
        "results": [{"file_id": "file-1", "filename": "a.txt", "score": 0.5, "text": "apples"}],
    }
    cid = client.conversations.create(items=[search]).id
    assert client.conversations.items.retrieve("fs_e2e1", conversation_id=cid).results is None
    included = ["file_search_call.results"]
    shown = client.conversations.items.retrieve("fs_e2e1", conversation_id=cid, include=included)
    assert shown.results[0].filename == "a.txt"
    assert client.conversations.items.list(cid, include=included).data[0].results[0].text == "apples"
    again = dict(search, id="fs_e2e2")
    assert client.conversations.items.create(cid, items=[again]).data[0].results is None
    assert (
        client.conversations.items.create(cid, items=[dict(search, id="fs_e2e3")], include=included)
        .data[0]
        .results[0]
        .score
        == 0.5
    )


def test_bad_input_gets_the_openai_envelope_with_a_4xx(server, client):
    cid = seeded(client)
    bad_calls = [
        (lambda: client.conversations.items.list(cid, include=["everything"]), "include"),
        (lambda: client.conversations.items.list(cid, order="sideways"), "order"),
        (lambda: client.conversations.items.list(cid, limit=0), "limit"),
        (lambda: client.conversations.items.list(cid, limit=101), "limit"),
        (lambda: client.conversations.items.list(cid, after="msg_notinthisconversation"), "after"),
        (lambda: client.conversations.create(metadata={f"k{i}": "v" for i in range(17)}), "metadata"),
        (lambda: client.conversations.create(metadata={"k" * 65: "v"}), "metadata"),
        (lambda: client.conversations.create(metadata={"k": "v" * 513}), "metadata.k"),
        (lambda: client.conversations.create(items=[{"role": "user", "content": "x"}] * 21), "items"),
        (lambda: client.conversations.items.create(cid, items=[{"type": "teleport"}]), "items[0].type"),
        (lambda: client.post(f"/conversations/{cid}", body={}, cast_to=Conversation), "metadata"),
    ]
    for call, param in bad_calls:
        with pytest.raises(openai.BadRequestError) as error:
            call()
        assert error.value.param is not None and error.value.param.startswith(param), param
        assert error.value.type == "invalid_request_error"
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.retrieve("msg_unknown", conversation_id=cid)
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.delete("msg_unknown", conversation_id=cid)
    response = httpx.post(
        server.base + "/v1/conversations",
        content=b'{"items": [',
        headers={"Authorization": f"Bearer {server.key}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400 and set(response.json()["error"]) == {
        "message",
        "type",
        "param",
        "code",
    }
    assert [said(i) for i in client.conversations.items.list(cid, order="asc")] == WORDS
