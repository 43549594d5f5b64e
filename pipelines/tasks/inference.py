"""Generic model stages: preprocess -> infer -> postprocess, each its own stage so the
per-stage metrics show where the time goes and the backend call (which releases the GIL)
overlaps with other stages' Python work.

Intermediate data travels in ``Frame.results`` under keys starting with "_" (not published).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import cv2
import numpy as np

from segstream.pipelines.tasks.batching import Batcher, BatchSettings, require_dynamic_batch
from segstream.pipelines.tasks.families import runtime_family
from segstream.stream.backends.base import ArtifactMetadata, Backend
from segstream.stream.errors import ModelError
from segstream.stream.frame import Frame
from segstream.stream.graph import Stage


def normalised_nchw(image: np.ndarray, mean, std, color_order: str = "RGB") -> np.ndarray:
    """(h, w, 3) BGR image, uint8 or float32 -> (1, 3, h, w) float32 in ``color_order``,
    (x - mean) / std per channel (mean and std in ``color_order``, on 0-255 values).

    One OpenCV pass per plane into the output: about 4x cheaper than numpy arithmetic on the
    channel-reversed, transposed view, and the same float32 values.
    """
    if color_order not in ("RGB", "BGR"):
        raise ValueError(f"color_order must be 'RGB' or 'BGR', got {color_order!r}")
    planes = cv2.split(image)
    order = (2, 1, 0) if color_order == "RGB" else (0, 1, 2)
    out = np.empty((1, 3, image.shape[0], image.shape[1]), np.float32)
    for k, c in enumerate(order):
        plane = planes[c] if planes[c].dtype == np.float32 else planes[c].astype(np.float32)
        cv2.subtract(plane, float(mean[k]), dst=out[0, k])  # type: ignore[call-overload]  # cv2 stubs reject a float scalar, which OpenCV accepts
        cv2.multiply(out[0, k], 1.0 / float(std[k]), dst=out[0, k])  # type: ignore[call-overload]  # cv2 stubs reject a float scalar, which OpenCV accepts
    return out


class Preprocessor(Protocol):
    def __call__(self, image_bgr: np.ndarray) -> tuple[dict[str, np.ndarray], Any]:
        """Returns the backend's feeds and what postprocess needs to undo the transform."""


class Postprocessor(Protocol):
    def __call__(self, outputs: dict[str, np.ndarray], info: Any) -> Any:
        """Returns the task result (Instances, SemanticMap) in the frame's pixel coordinates."""


class PreprocessStage(Stage):
    def __init__(self, name: str, key: str, preprocess: Callable, workers: int = 1) -> None:
        self.name = name
        self.key = key
        self.preprocess = preprocess
        self.workers = workers

    def process(self, frame: Frame) -> Frame:
        feeds, info = self.preprocess(frame.image_bgr)
        frame.results[f"_{self.key}.feeds"] = feeds
        frame.results[f"_{self.key}.info"] = info
        return frame


class InferStage(Stage):
    """Runs the backend. ONNX Runtime sessions are thread-safe, so ``workers`` > 1 is allowed.

    With ``batching.max_batch`` > 1 frames (of any source) are batched into one backend call
    (``pipelines/tasks/batching.py``): the stage then runs ``max_batch * (workers + 1)`` threads,
    so one batch collects while ``workers`` batches run, and the artifact must have a dynamic
    batch axis (checked here). With ``max_batch`` 1 (the default) each frame calls the backend
    in its worker thread, as without batching.

    Raises:
        ConfigError: ``max_batch`` > 1 with an artifact whose batch axis is fixed.
    """

    def __init__(
        self, name: str, key: str, backend: Backend, workers: int = 1, batching: BatchSettings | None = None
    ) -> None:
        self.name = name
        self.key = key
        self.backend = backend
        self.workers = workers
        self.batcher: Batcher | None = None
        if batching is not None and batching.enabled:
            require_dynamic_batch(backend, batching.max_batch)
            self.batcher = Batcher(backend.run, batching, concurrency=workers)
            self.workers = batching.max_batch * (workers + 1)

    def process(self, frame: Frame) -> Frame:
        feeds = frame.results.pop(f"_{self.key}.feeds")
        if self.batcher is None:
            frame.results[f"_{self.key}.outputs"] = self.backend.run(feeds)
        else:
            frame.results[f"_{self.key}.outputs"] = self.batcher.submit(feeds, frame.capture_ns)
        return frame

    def close(self) -> None:
        self.backend.close()

    def metrics(self) -> dict:
        return {} if self.batcher is None else {"batching": self.batcher.metrics()}


class PostprocessStage(Stage):
    def __init__(self, name: str, key: str, postprocess: Callable, workers: int = 1) -> None:
        self.name = name
        self.key = key
        self.postprocess = postprocess
        self.workers = workers

    def process(self, frame: Frame) -> Frame:
        outputs = frame.results.pop(f"_{self.key}.outputs")
        info = frame.results.pop(f"_{self.key}.info")
        frame.results[self.key] = self.postprocess(outputs, info)
        return frame


def model_branch(
    key: str,
    backend: Backend,
    preprocess: Callable,
    postprocess: Callable,
    infer_workers: int = 1,
    batching: BatchSettings | None = None,
) -> list[Stage]:
    """The three stages of one model, named ``<key>.pre``, ``<key>.infer``, ``<key>.post``;
    ``batching`` batches the inference across frames (see ``InferStage``)."""
    return [
        PreprocessStage(f"{key}.pre", key, preprocess),
        InferStage(f"{key}.infer", key, backend, workers=infer_workers, batching=batching),
        PostprocessStage(f"{key}.post", key, postprocess),
    ]


def instance_artifact(backend: Backend, family: str, what: str, inputs, outputs) -> ArtifactMetadata:
    """The metadata of an instance-segmentation artifact of ``family`` (a name in
    ``pipelines.tasks.families``: the artifact's model must be one of its models), after checking
    the graph's input and output names.

    Raises:
        ModelError: no metadata, another task or family ("expected a {what} instance artifact"),
            other inputs or outputs.
    """
    meta = backend.metadata
    if meta is None or meta.task != "instances" or not runtime_family(family).owns_name(meta.model):
        found = "no metadata" if meta is None else f"model {meta.model!r}, task {meta.task!r}"
        raise ModelError(
            f"{backend.path}: expected a {what} instance artifact, found {found}; "
            f"export one with 'segstream export --model {family}_...'"
        )
    backend.require_io(list(inputs), list(outputs))
    return meta
