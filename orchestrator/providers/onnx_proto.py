"""ONNX models written as bytes without the onnx package: the few protobuf messages a graph of plain
operators needs (model, graph, node, attribute, tensor, value info), by their field numbers in onnx.proto.

Why: the onnx package takes about 17 MB of resident memory once imported, in the ingestion process only to
build chunk_encoder.py's graph once (issue 23: the worker's memory). ONNX Runtime reads the bytes.
tests/unit/test_onnx_proto.py parses what this writes with the onnx package and checks it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

IR_VERSION = 10  # ONNX 1.16's; ONNX Runtime reads it from 1.18 on
FLOAT, INT32, INT64 = 1, 6, 7  # TensorProto.DataType
_ATTRIBUTE_FLOAT, _ATTRIBUTE_INT = 1, 2  # AttributeProto.AttributeType


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64s as their two's complement, as protobuf writes them
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _int(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _bytes(number: int, payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def attribute(name: str, value: int | float) -> bytes:
    """An AttributeProto of an int or a float."""
    if isinstance(value, float):
        return _bytes(1, name) + _varint(2 << 3 | 5) + struct.pack("<f", value) + _int(20, _ATTRIBUTE_FLOAT)
    return _bytes(1, name) + _int(3, value) + _int(20, _ATTRIBUTE_INT)


def node(op: str, inputs: Iterable[str], outputs: Iterable[str], domain: str = "", **attributes) -> bytes:
    """A NodeProto."""
    parts = [_bytes(1, name) for name in inputs] + [_bytes(2, name) for name in outputs]
    parts.append(_bytes(4, op))
    parts += [_bytes(5, attribute(name, value)) for name, value in attributes.items()]
    if domain:
        parts.append(_bytes(7, domain))
    return b"".join(parts)


def tensor(name: str, dims: Iterable[int], data_type: int, raw: bytes) -> bytes:
    """A TensorProto with its data as raw little-endian bytes."""
    return b"".join([*(_int(1, dim) for dim in dims), _int(2, data_type), _bytes(8, name), _bytes(9, raw)])


def value_info(name: str, data_type: int, shape: Iterable[int | str]) -> bytes:
    """A ValueInfoProto of a tensor: each dimension a size or a symbolic name."""
    dims = b"".join(
        _bytes(1, _bytes(2, dim) if isinstance(dim, str) else _int(1, dim)) for dim in shape
    )  # TensorShapeProto.Dimension: dim_value 1, dim_param 2
    tensor_type = _int(1, data_type) + _bytes(2, dims)
    return _bytes(1, name) + _bytes(2, _bytes(1, tensor_type))


def model(
    name: str,
    nodes: Iterable[bytes],
    initializers: Iterable[bytes],
    inputs: Iterable[bytes],
    outputs: Iterable[bytes],
    opsets: dict[str, int],
) -> bytes:
    """A serialized ModelProto; `opsets`: domain ("" for ONNX's own) → version. Each message is joined
    once, into the result: a graph's weights are held twice at most while it is written, not once a level."""
    fields = [
        *((1, item) for item in nodes),
        (2, name.encode()),
        *((5, item) for item in initializers),
        *((11, item) for item in inputs),
        *((12, item) for item in outputs),
    ]
    graph = [
        part for number, item in fields for part in (_varint(number << 3 | 2) + _varint(len(item)), item)
    ]
    opset_ids = [_bytes(8, _bytes(1, domain) + _int(2, version)) for domain, version in opsets.items()]
    size = sum(len(part) for part in graph)
    return b"".join([_int(1, IR_VERSION), _varint(7 << 3 | 2), _varint(size), *graph, *opset_ids])
