"""Reranking (`ranking_options.ranker`) and query rewriting (`rewrite_query`) through the official SDK, with
the OpenAI and the Azure client, on the production stack and `orchestrator dev`.

The shared targets rerank with `ORCHESTRATOR_RERANK_MODEL=stub-rerank`: a models-file route of kind
`rerank` to the fake upstream (tests/support/fake_upstream.py, `rerank_score`), which puts a document
holding `[[top]]` first whatever its words, so its order shows against the search's own."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import on_both_targets
from tests.support.clients import make_client

pytestmark = [pytest.mark.e2e, on_both_targets]

INCLUDE = ["step_details.tool_calls[*].file_search.results[*].content"]
DOCS = {
    "full.md": b"Alpine glacier melt raises river levels every spring in the valley.",
    "favourite.md": b"Notes on glacier tours. [[top]]",
    "other.md": b"Desert dunes shift with the wind and bury old roads.",
}


@pytest.fixture(params=["openai", "azure"])
def client(request, server):
    sdk = make_client(request.param, server.base, server.key, max_retries=0, timeout=60)
    yield sdk
    sdk.close()


@pytest.fixture(scope="module")
def store(server):
    """One store for the module (both clients reach the same tenant through the target's key)."""
    sdk = make_client("openai", server.base, server.key, max_retries=0, timeout=60)
    store = sdk.vector_stores.create(name="rerank")
    batch = sdk.vector_stores.file_batches.upload_and_poll(
        store.id, files=[(name, data) for name, data in DOCS.items()]
    )
    assert batch.file_counts.completed == len(DOCS), batch
    sdk.close()
    return store


def names(page) -> list[str]:
    return [hit.filename for hit in page.data]


def test_ranker_none_keeps_the_fused_order_and_auto_applies_the_rerankers(client, store, shared_upstream):
    query = "glacier melt river levels"
    fused = client.vector_stores.search(store.id, query=query, ranking_options={"ranker": "none"})
    assert names(fused)[:2] == ["full.md", "favourite.md"]
    shared_upstream.reset()
    reranked = client.vector_stores.search(store.id, query=query, ranking_options={"ranker": "auto"})
    assert names(reranked)[:2] == ["favourite.md", "full.md"]
    assert [hit.score for hit in reranked.data[:2]] == [pytest.approx(0.9), pytest.approx(0.8)]
    (request,) = [r for r in shared_upstream.requests if r.path.endswith("/rerank")]
    assert request.path == "/v1/rerank" and request.headers["Authorization"] == "Bearer sk-fake"
    assert request.body["model"] == "upstream-reranker" and request.body["query"] == query
    assert sorted(request.body["documents"]) == sorted(hit.content[0].text for hit in fused.data)
    assert request.body["top_n"] == len(request.body["documents"])
    dated = client.vector_stores.search(
        store.id, query=query, ranking_options={"ranker": "default_2024_08_21", "score_threshold": 0.85}
    )
    assert names(dated) == ["favourite.md"]


def test_rewrite_query_searches_for_the_rewritten_text_and_shows_it(client, store):
    page = client.vector_stores.search(
        store.id, query="What makes the river levels rise in spring?", rewrite_query=True
    )
    assert page.search_query == ["makes river levels rise spring"]
    assert names(page)[0] == "full.md"
    several = client.vector_stores.search(
        store.id, query=["Where are the dunes?", "glacier"], rewrite_query=True
    )
    assert several.search_query == ["dunes", "glacier"]
    plain = client.vector_stores.search(store.id, query="What makes the river levels rise?")
    assert plain.search_query == ["What makes the river levels rise?"]


def test_an_unknown_ranker_is_a_400_envelope(client, store):
    with pytest.raises(openai.BadRequestError) as caught:
        client.vector_stores.search(store.id, query="glacier", ranking_options={"ranker": "best-one"})
    assert caught.value.status_code == 400
    assert caught.value.body["type"] == "invalid_request_error"
    assert caught.value.body["param"] == "ranking_options.ranker"
    assert "'best-one'" in caught.value.body["message"]


def test_a_file_search_run_shows_the_reranked_results_with_their_content(client, store):
    assistant = client.beta.assistants.create(
        model="local",
        tools=[
            {
                "type": "file_search",
                "file_search": {"ranking_options": {"ranker": "auto", "score_threshold": 0}},
            }
        ],
        tool_resources={"file_search": {"vector_store_ids": [store.id]}},
    )
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "glacier melt river levels"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed", run
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, include=INCLUDE)
    (call,) = next(s for s in steps if s.type == "tool_calls").step_details.tool_calls
    results = call.file_search.results
    assert [r.file_name for r in results[:2]] == ["favourite.md", "full.md"]
    assert [r.score for r in results[:2]] == [pytest.approx(0.9), pytest.approx(0.8)]
    assert "[[top]]" in results[0].content[0].text and "glacier melt" in results[1].content[0].text
    assert call.file_search.ranking_options.ranker == "auto"


def test_a_responses_file_search_reranks_when_its_tool_asks(client, store):
    def results(ranker: str):
        tool = {"type": "file_search", "vector_store_ids": [store.id], "ranking_options": {"ranker": ranker}}
        response = client.responses.create(
            model="local",
            input="glacier melt river levels",
            tools=[tool],
            include=["file_search_call.results"],
        )
        assert response.status == "completed", response.error
        (call,) = [item for item in response.output if item.type == "file_search_call"]
        return [(result.filename, result.score) for result in call.results]

    assert [name for name, _ in results("none")[:2]] == ["full.md", "favourite.md"]
    assert results("auto")[:2] == [("favourite.md", pytest.approx(0.9)), ("full.md", pytest.approx(0.8))]
