"""Running a torch YOLACT like an exported artifact: a ``Backend`` around the export graph, so
``pipelines.yolact.YolactRunner`` (numpy pre/post-processing) serves both torch and ONNX Runtime."""

from __future__ import annotations

import numpy as np

from segstream.models.torch_backend import TorchBackend
from segstream.models.yolact.model import Yolact, YolactExportWrapper
from segstream.pipelines.tasks.yolact import INPUT_NAME, OUTPUT_NAMES, YolactRunner
from segstream.stream.backends.base import TensorSpec


class TorchYolactBackend(TorchBackend):
    """The export graph (boxes, scores, coeffs, protos) run by torch on CPU, numpy in and out: the
    project's one torch backend (``models/torch_backend.py``) set up as the exported YOLACT file is.

    Args:
        net: a ``Yolact`` network (put in eval mode).
        path: name reported in messages (the checkpoint path).
    """

    def __init__(self, net: Yolact, path: str = "<torch>") -> None:
        graph = YolactExportWrapper(net.eval()).eval()
        super().__init__(
            graph,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            channels_last=False,
            metadata=net.cfg.artifact_metadata(int(graph.priors.shape[0])),
        )
        self.graph = graph
        self.path = str(path)
        s = net.cfg.max_size
        self.inputs = [TensorSpec(INPUT_NAME, (1, 3, s, s), np.dtype(np.float32))]


def torch_runner(net: Yolact, path: str = "<torch>", **kwargs) -> YolactRunner:
    """A ``YolactRunner`` over a torch network (same numpy pre/post-processing as ONNX Runtime)."""
    return YolactRunner(TorchYolactBackend(net, path), **kwargs)
