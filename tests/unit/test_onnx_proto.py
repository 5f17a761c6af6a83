"""onnx_proto.py writes models the onnx package reads as it would have built them, and ONNX Runtime runs."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.providers import onnx_proto as proto


def test_a_written_model_is_what_the_onnx_package_reads_and_onnx_runtime_runs():
    onnx = pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    from onnx import numpy_helper

    weight = np.arange(6, dtype=np.float32).reshape(2, 3)
    written = proto.model(
        "tiny",
        [
            proto.node("MatMul", ["x", "w"], ["y"]),
            proto.node("LayerNormalization", ["y", "scale", "bias"], ["out"], axis=-1, epsilon=1e-5),
        ],
        [
            proto.tensor("w", weight.shape, proto.FLOAT, weight.tobytes()),
            proto.tensor("scale", [3], proto.FLOAT, np.ones(3, np.float32).tobytes()),
            proto.tensor("bias", [3], proto.FLOAT, np.zeros(3, np.float32).tobytes()),
        ],
        [proto.value_info("x", proto.FLOAT, ["batch", 2])],
        [proto.value_info("out", proto.FLOAT, ["batch", 3])],
        {"": 20},
    )
    model = onnx.load_from_string(written)
    onnx.checker.check_model(model)
    assert model.graph.name == "tiny" and model.ir_version == proto.IR_VERSION
    assert [node.op_type for node in model.graph.node] == ["MatMul", "LayerNormalization"]
    attributes = {
        attribute.name: onnx.helper.get_attribute_value(attribute)
        for attribute in model.graph.node[1].attribute
    }
    assert attributes["axis"] == -1 and attributes["epsilon"] == pytest.approx(1e-5)
    assert np.array_equal(numpy_helper.to_array(model.graph.initializer[0]), weight)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert (dims[0].dim_param, dims[1].dim_value) == ("batch", 2)

    session = onnxruntime.InferenceSession(written, providers=["CPUExecutionProvider"])
    x = np.array([[1, 2], [3, -1]], np.float32)
    (out,) = session.run(None, {"x": x})
    y = x @ weight
    expected = (y - y.mean(-1, keepdims=True)) / np.sqrt(y.var(-1, keepdims=True) + 1e-5)
    assert np.allclose(out, expected, atol=1e-5)
