"""The short-text encoder's graph kept on disk (providers/query_graph.py): a process that only searches reads
it and never imports torch; a damaged file is exported again; a directory that cannot be written leaves the
export in memory; a failed export is an EmbeddingError."""

import hashlib
import json
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from orchestrator.providers import embeddings, onnx_encoder, query_graph
from orchestrator.providers.embeddings import EmbeddingError, LocalEmbedder, _encode

QUERIES = ["vector store search", "how do refunds work?", "日本語のテキスト検索", "x"]

SEARCHING_PROCESS = """
import json, sys
from orchestrator.providers.embeddings import LocalEmbedder
vectors = LocalEmbedder(cache_dir=sys.argv[1]).embed_queries(json.loads(sys.argv[2]))
print(json.dumps({"torch": "torch" in sys.modules, "vectors": vectors.tolist()}))
"""


FAKE_GRAPH = b"an exported graph" * 1000


@pytest.fixture(scope="module")
def kept(local_minilm):
    """The cache directory holding the graph (exported by a process with torch's model loaded: the tests'),
    that model, and the graph as exported (the file without its checksum)."""
    _embedder, loaded, cache = local_minilm
    return cache, loaded, query_graph.path(cache).read_bytes()[: -len(query_graph._trailer(""))]


def test_a_process_that_searches_reads_the_kept_graph_without_importing_torch(kept):
    cache, loaded, _content = kept
    done = subprocess.run(
        [sys.executable, "-c", SEARCHING_PROCESS, str(cache), json.dumps(QUERIES)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    answer = json.loads(done.stdout)
    assert answer["torch"] is False
    torch_vectors = np.stack([_encode((loaded[0], False), [text])[0] for text in QUERIES])
    assert np.sum(np.array(answer["vectors"]) * torch_vectors, axis=1).min() > 0.99999


def test_the_file_is_named_by_the_package_its_weights_and_the_format(kept, monkeypatch):
    cache, _loaded, _content = kept
    before = query_graph.path(cache)
    monkeypatch.setattr(query_graph, "FORMAT", query_graph.FORMAT + 1)
    assert query_graph.path(cache) != before and query_graph.path(cache).parent == cache


@pytest.mark.parametrize("damage", ["truncated", "altered", "empty"])
def test_a_damaged_graph_is_removed_and_exported_again(tmp_path, damage):
    file = query_graph.path(tmp_path)
    query_graph.write(file, FAKE_GRAPH)
    content = file.read_bytes()
    damaged = {
        "truncated": content[: len(content) // 2],
        "altered": content[:-1] + bytes([content[-1] ^ 1]),
        "empty": b"",
    }[damage]
    file.write_bytes(damaged)
    assert query_graph.read(file) is None and not file.exists()
    assert query_graph.build(tmp_path, lambda: FAKE_GRAPH) == file
    assert query_graph.read(file) == file and file.read_bytes() == content


def test_a_damaged_graph_found_by_a_searching_process_is_rebuilt_by_the_loaded_model(
    kept, tmp_path, monkeypatch
):
    _cache, loaded, graph = kept
    # The export itself is the fixture's (about a second): the model it was given is what is checked here.
    monkeypatch.setattr(onnx_encoder, "export_minilm", lambda model: model is loaded[0] and graph)
    file = query_graph.path(tmp_path)
    file.write_bytes(graph[:1000])
    encoder = embeddings._load_short(str(tmp_path), lambda: loaded, _never)
    assert encoder.embed(["x"]).shape == (1, 384)
    assert query_graph.read(file) == file
    # The checksum is one more metadata entry of the model, which ONNX Runtime reads as such.
    checksum = encoder._session.get_modelmeta().custom_metadata_map["sha256"]
    assert checksum == hashlib.sha256(graph).hexdigest()


def test_two_processes_exporting_at_once_export_once_and_leave_one_valid_file(tmp_path):
    graph = FAKE_GRAPH
    inside, release, exports = threading.Event(), threading.Event(), []

    def slow_export():
        exports.append(1)
        inside.set()
        assert release.wait(10)
        return graph

    # Each build opens the lock file anew: the flock is between open files, so threads stand for processes.
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(query_graph.build, tmp_path, slow_export)
        assert inside.wait(10)
        second = pool.submit(query_graph.build, tmp_path, slow_export)
        release.set()
        assert first.result(10) == second.result(10) == query_graph.read(query_graph.path(tmp_path))
    assert len(exports) == 1
    assert [path.name for path in tmp_path.iterdir() if path.suffix != ".lock"] == [
        query_graph.path(tmp_path).name
    ]


def test_a_directory_that_cannot_be_written_leaves_the_export_in_memory(kept, tmp_path, caplog, monkeypatch):
    _cache, loaded, _content = kept
    monkeypatch.setattr(onnx_encoder, "export_minilm", lambda model: model is loaded[0] and FAKE_GRAPH)
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    cache = blocked / "cache"
    assert query_graph.unwritable(cache) is not None
    assert embeddings._query_graph(cache, lambda: None, lambda: loaded) == FAKE_GRAPH
    assert "exported in memory" in caplog.text


def test_an_export_child_that_fails_is_an_embedding_error(tmp_path, monkeypatch):
    monkeypatch.setattr(query_graph.sys, "executable", "/bin/false")
    with pytest.raises(EmbeddingError, match="exit status 1"):
        embeddings._query_graph(tmp_path, lambda: None, _never)


def test_an_export_child_that_hangs_is_stopped(tmp_path, monkeypatch):
    hangs = tmp_path / "hangs"
    hangs.write_text("#!/bin/sh\nexec tail -f /dev/null\n")
    hangs.chmod(0o755)
    monkeypatch.setattr(query_graph.sys, "executable", str(hangs))
    monkeypatch.setattr(query_graph, "EXPORT_TIMEOUT_SECONDS", 0.05)
    with pytest.raises(EmbeddingError, match="stopped"):
        embeddings._query_graph(tmp_path / "cache", lambda: None, _never)


def test_the_cache_directory_is_the_setting_else_xdg_else_home(monkeypatch, tmp_path):
    assert query_graph.directory(str(tmp_path)) == tmp_path
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert query_graph.directory(None) == tmp_path / "xdg" / "orchestrator"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert query_graph.directory(None) == tmp_path / "home" / ".cache" / "orchestrator"


def _never():
    raise AssertionError("torch's model was loaded")


def test_after_a_failed_export_the_searches_of_the_next_minute_do_not_try_again(tmp_path, monkeypatch):
    monkeypatch.setattr(query_graph.sys, "executable", "/bin/false")
    embedder = LocalEmbedder(cache_dir=str(tmp_path))
    children = []
    real = query_graph.export_in_child
    monkeypatch.setattr(query_graph, "export_in_child", lambda cache: children.append(cache) or real(cache))
    for _ in range(2):
        with pytest.raises(EmbeddingError, match="exit status 1"):
            embedder.embed_queries(["vector store search"])
    assert len(children) == 1 and embedder._short is None


def test_writing_a_graph_removes_other_keys_graphs_and_dead_writers_parts(tmp_path):
    stale = tmp_path / f"{query_graph.NAME}0123456789abcdef.onnx"
    part = tmp_path / f"{query_graph.path(tmp_path).name}x1y2.part"
    unrelated = tmp_path / "something-else"
    for file in (stale, part, unrelated):
        file.write_bytes(b"old")
    file = query_graph.build(tmp_path, lambda: FAKE_GRAPH)
    assert sorted(tmp_path.iterdir()) == sorted([file, unrelated, tmp_path / "query-graph.lock"])
