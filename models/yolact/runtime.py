"""Running a torch YOLACT like an exported artifact: a ``Backend`` around the export graph, so
``pipelines.yolact.YolactRunner`` (numpy pre/post-processing) serves both torch and ONNX Runtime."""

from __future__ import annotations

import numpy as np
import torch

from segstream.models.yolact.model import Yolact, YolactExportWrapper
from segstream.pipelines.tasks.yolact import INPUT_NAME, OUTPUT_NAMES, YolactRunner
from segstream.stream.backends.base import Backend, TensorSpec


class TorchYolactBackend(Backend):
    """The export graph (boxes, scores, coeffs, protos) run by torch on CPU, numpy in and out.

    Args:
        net: a ``Yolact`` network (put in eval mode).
        path: name reported in messages (the checkpoint path).
    """

    name = "torch"

    def __init__(self, net: Yolact, path: str = "<torch>") -> None:
        self.path = str(path)
        self.graph = YolactExportWrapper(net.eval()).eval()
        s = net.cfg.max_size
        self.metadata = net.cfg.artifact_metadata(int(self.graph.priors.shape[0]))
        self.inputs = [TensorSpec(INPUT_NAME, (1, 3, s, s), np.dtype(np.float32))]
        self.outputs = [TensorSpec(n, (), np.dtype(np.float32)) for n in OUTPUT_NAMES]
        self.device = "cpu"

    @torch.no_grad()
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = self.graph(torch.from_numpy(np.ascontiguousarray(feeds[INPUT_NAME])))
        return {n: o.numpy() for n, o in zip(OUTPUT_NAMES, outs)}


def torch_runner(net: Yolact, path: str = "<torch>", **kwargs) -> YolactRunner:
    """A ``YolactRunner`` over a torch network (same numpy pre/post-processing as ONNX Runtime)."""
    return YolactRunner(TorchYolactBackend(net, path), **kwargs)
