"""ONNX Runtime thread spinning: off by default in the pipeline config (threads sleep between
operators instead of burning a shared core), on when asked."""

from __future__ import annotations

import numpy as np
import pytest

from segstream.stream.backends import OnnxRuntimeBackend

onnx = pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def add_model(tmp_path_factory):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "add", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("ort") / "add.onnx"
    onnx.save(model, str(path))
    return str(path)


def _entry(options, key):
    try:
        return options.get_session_config_entry(key)
    except RuntimeError:  # not set: ONNX Runtime's default (spinning allowed)
        return None


@pytest.mark.parametrize("spinning, expected", [(False, "0"), (True, None)])
def test_spinning_setting_reaches_the_session(add_model, spinning, expected):
    backend = OnnxRuntimeBackend(add_model, allow_spinning=spinning)
    options = backend._session.get_session_options()
    assert _entry(options, "session.intra_op.allow_spinning") == expected
    assert _entry(options, "session.inter_op.allow_spinning") == expected
    out = backend.run({"x": np.ones((1, 4), np.float32)})
    assert out["y"].tolist() == [[2.0] * 4]


def test_pipeline_config_turns_spinning_off():
    from segstream.pipelines.apps.config import BackendConfig

    assert BackendConfig().options()["allow_spinning"] is False
