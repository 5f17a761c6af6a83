import openai
import pytest

from tests.conftest import on_both_targets

pytestmark = [pytest.mark.e2e, on_both_targets]


def test_an_assistant_round_trips_through_create_retrieve_modify_list_and_delete(client):
    created = client.beta.assistants.create(
        model="local-echo",
        name="Helper",
        instructions="Be brief.",
        metadata={"team": "a"},
        tools=[{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}],
    )
    assert created.id.startswith("asst_")
    assert created.object == "assistant"
    assert created.tools[0].function.name == "lookup"

    fetched = client.beta.assistants.retrieve(created.id)
    assert fetched.model_dump() == created.model_dump()

    modified = client.beta.assistants.update(created.id, name="Renamed", metadata={"team": "b"})
    assert (modified.name, modified.metadata, modified.instructions) == (
        "Renamed",
        {"team": "b"},
        "Be brief.",
    )

    ids = [a.id for a in client.beta.assistants.list(limit=100)]
    assert created.id in ids

    deleted = client.beta.assistants.delete(created.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (created.id, True, "assistant.deleted")
    with pytest.raises(openai.NotFoundError) as error:
        client.beta.assistants.retrieve(created.id)
    assert error.value.body["message"] == f"No assistant found with id '{created.id}'."


@pytest.mark.parametrize("assistant_id", ["invalid-assistant-id", "asst_", "asst_" + "x" * 80, "asst_a b"])
def test_an_assistant_id_of_any_shape_that_is_not_known_is_a_404_as_hosted(client, assistant_id):
    """The hosted API answers 404 for `GET /v1/assistants/invalid-assistant-id` (public suites assert it),
    where a malformed thread id is a 400 (contract §5.1)."""
    for call in (
        lambda: client.beta.assistants.retrieve(assistant_id),
        lambda: client.beta.assistants.update(assistant_id, name="x"),
        lambda: client.beta.assistants.delete(assistant_id),
    ):
        with pytest.raises(openai.NotFoundError) as error:
            call()
        assert error.value.body["message"].startswith("No assistant found with id '")
