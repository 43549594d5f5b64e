"""The base every inference backend implements, and the artifact metadata they read back."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from segstream.stream.errors import ModelError

#: Key under which export/ stores the JSON metadata (ONNX metadata_props, engine side file).
METADATA_KEY = "segstream"


@dataclass(frozen=True)
class ArtifactMetadata:
    """What an exported model says about itself. Parsed from JSON only, never evaluated.

    Attributes:
        model: model name, for example "yolact_mobilenetv3" or "deeplabv3_mobilenet_v3_large".
        task: "instances" or "semantic".
        class_names: class names without background, indexed by label.
        input_size_hw: fixed (H, W) input size, or None when height and width are dynamic.
        mean: per-channel mean in the model's colour order, on 0-255 pixel values.
        std: per-channel std in the model's colour order, on 0-255 pixel values.
        color_order: "RGB" or "BGR": the channel order the network expects.
        palette_bgr: one BGR colour per class (semantic models), may be empty.
        extra: model-specific settings (anchors, output names, stride, ...).
        versions: versions of the exporting software.
    """

    model: str
    task: str
    class_names: tuple[str, ...]
    input_size_hw: tuple[int, int] | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    color_order: str = "RGB"
    palette_bgr: tuple[tuple[int, int, int], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in ("instances", "semantic"):
            raise ModelError(f"artifact metadata: task must be 'instances' or 'semantic', got {self.task!r}")
        if self.color_order not in ("RGB", "BGR"):
            raise ModelError(f"artifact metadata: color_order must be 'RGB' or 'BGR', got {self.color_order!r}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ModelError("artifact metadata: mean and std need 3 values each")

    def to_json(self) -> str:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, origin: str = "artifact") -> ArtifactMetadata:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelError(
                f"{origin}: metadata is not valid JSON ({exc}); re-export the model with 'segstream export'"
            ) from None
        if not isinstance(d, dict):
            raise ModelError(f"{origin}: metadata must be a JSON object, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        missing = [k for k in ("model", "task", "class_names", "mean", "std") if k not in d]
        if missing:
            raise ModelError(
                f"{origin}: metadata lacks {', '.join(missing)}; re-export the model with 'segstream export'"
            )
        d = {k: v for k, v in d.items() if k in known}
        size = d.get("input_size_hw")
        d["input_size_hw"] = None if size is None else (int(size[0]), int(size[1]))
        d["class_names"] = tuple(d["class_names"])
        d["mean"] = tuple(float(v) for v in d["mean"])
        d["std"] = tuple(float(v) for v in d["std"])
        d["palette_bgr"] = tuple(tuple(int(c) for c in p) for p in d.get("palette_bgr", ()))
        return cls(**d)


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (None or a string for dynamic dims) and numpy dtype of one model input or output."""

    name: str
    shape: tuple
    dtype: np.dtype


class Backend(ABC):
    """Runs one exported model. Subclasses: one per runtime, same interface.

    Attributes:
        path: artifact path.
        metadata: the artifact's self-description, or None if it has none.
        inputs / outputs: tensor specs in model order.
        device: what actually runs it (for example "cpu", "cuda:0"), reported once.
    """

    name = "base"

    path: str
    metadata: ArtifactMetadata | None
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    device: str

    @abstractmethod
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs the model.

        Args:
            feeds: input name -> array (dtype and rank as in ``inputs``).

        Returns:
            output name -> numpy array on the host.
        """

    def close(self) -> None:  # noqa: B027 (an optional hook, empty on purpose)
        """Releases runtime resources. Safe to call twice."""

    def require_io(self, inputs: list[str], outputs: list[str]) -> None:
        """Raises ModelError unless the artifact has exactly these input and output names."""
        have_in = [t.name for t in self.inputs]
        have_out = [t.name for t in self.outputs]
        if sorted(have_in) != sorted(inputs) or not set(outputs) <= set(have_out):
            raise ModelError(
                f"{self.path}: expected inputs {inputs} and outputs {outputs}, "
                f"found inputs {have_in} and outputs {have_out}; export it with 'segstream export'"
            )
