from __future__ import annotations

import pytest


@pytest.fixture(scope="package")
def local_minilm(tmp_path_factory):
    """(embedder, its loaded torch model, cache directory): the local embedder with the model loaded first, as
    in the ingestion process, so that its first short query exported the query graph itself and kept it in the
    cache directory. Shared by the unit tests (loading the model and exporting take seconds), let go after them."""
    pytest.importorskip("onnxruntime")
    from orchestrator.providers.embeddings import LocalEmbedder

    cache = tmp_path_factory.mktemp("cache")
    embedder = LocalEmbedder(cache_dir=str(cache))
    loaded = embedder._model()
    embedder.embed_queries(["warm up"])
    return embedder, loaded, cache
