"""Model stages with a real ONNX Runtime session in a real graph."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

from segstream.pipelines.tasks.inference import model_branch  # noqa: E402
from segstream.stream.backends import OnnxRuntimeBackend  # noqa: E402
from segstream.stream.graph import FunctionStage, Graph, Parallel  # noqa: E402
from segstream.stream.sinks import CallbackSink  # noqa: E402
from segstream.stream.sources import open_source  # noqa: E402


def _double_model(path):
    """(1, 3, H, W) float -> mean over channels x 2, shape (1, 1, H, W)."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "h", "w"])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 1, "h", "w"])
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    nodes = [
        helper.make_node("ReduceMean", ["image", "axes"], ["m"], keepdims=1),
        helper.make_node("Mul", ["m", "two"], ["out"]),
    ]
    graph = helper.make_graph(nodes, "double", [x], [y], initializer=[two, axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(model, path)
    return path


def _pre(img):
    x = img.astype(np.float32).transpose(2, 0, 1)[None]
    return {"image": x}, img.shape[:2]


def _post(outputs, size_hw):
    out = outputs["out"][0, 0]
    assert out.shape == size_hw
    return float(out.mean())


def test_two_model_branches_side_by_side(tmp_path):
    path = _double_model(str(tmp_path / "m.onnx"))
    got = []
    steps = [
        FunctionStage("pre", lambda f: f),
        Parallel(
            {
                "a": model_branch("a", OnnxRuntimeBackend(path, intra_op_threads=1), _pre, _post, infer_workers=2),
                "b": model_branch("b", OnnxRuntimeBackend(path, intra_op_threads=1), _pre, _post),
            }
        ),
    ]
    g = Graph(open_source("synthetic://?width=64&height=48&frames=20"), steps, [CallbackSink(got.append)])
    report = g.run(timeout=60)
    assert report.error is None
    assert [f.seq for f in got] == list(range(20))
    for f in got:
        expected = float(f.image_bgr.astype(np.float32).mean() * 2)
        assert f.results["a"] == pytest.approx(expected, rel=1e-5) and f.results["b"] == f.results["a"]
        assert not any(k.startswith("_") for k in f.results)
    assert {"a.pre", "a.infer", "a.post", "b.pre", "b.infer", "b.post"} <= set(report.metrics["stages"])
