"""Real ONNX semantic models whose weights are set by hand, with the project's metadata, so
areas and volumes can be checked exactly: a 1x1 conv that thresholds intensity, and a 3x3
conv that thresholds a local mean (spatial context, for tiling seams)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from stream.backends.base import METADATA_KEY, ArtifactMetadata

PALETTE_BGR = ((0, 0, 0), (0, 200, 0), (0, 0, 255), (255, 0, 0))


def _save(path: str, weights: np.ndarray, bias: np.ndarray, class_names: tuple[str, ...], pad: int) -> str:
    """Conv(image) -> logits, with dynamic H and W; input (1, 3, h, w) = BGR / 255."""
    k = weights.shape[2]
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "h", "w"])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, len(class_names), "h", "w"])
    conv = helper.make_node("Conv", ["image", "W", "B"], ["logits"], kernel_shape=[k, k], pads=[pad] * 4)
    graph = helper.make_graph([conv], "handset", [x], [y],
                              initializer=[numpy_helper.from_array(weights.astype(np.float32), "W"),
                                           numpy_helper.from_array(bias.astype(np.float32), "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    meta = ArtifactMetadata(model="handset", task="semantic", class_names=class_names, input_size_hw=None,
                            mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0), color_order="BGR",
                            palette_bgr=PALETTE_BGR[:len(class_names)],
                            extra={"input_name": "image", "output_name": "logits"})
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, meta.to_json()
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def threshold_model(path: str, thresholds=(128,), class_names=None, scale: float = 1.0) -> str:
    """Class i for 8-bit mean intensity I in (t_i-1, t_i]: class 0 up to thresholds[0], class 1
    above it, class 2 above thresholds[1] ... (ties go to the lower class).

    Logits are linear in I (1x1 conv): l_k = scale * (k * x - sum_{j<k} t_j / 255), whose
    upper envelope switches class exactly at each threshold.
    """
    n = len(thresholds) + 1
    names = tuple(class_names or ("background", *(f"class{i}" for i in range(1, n))))
    w = np.zeros((n, 3, 1, 1), np.float32)
    b = np.zeros(n, np.float32)
    for k in range(n):
        w[k, :, 0, 0] = scale * k / 3.0
        b[k] = -scale * sum(thresholds[:k]) / 255.0
    return _save(path, w, b, names, pad=0)


def context_model(path: str, threshold: float = 0.5, scale: float = 40.0) -> str:
    """Two classes: "bright" where the 3x3 mean intensity (zero padding) exceeds ``threshold``
    (of 1.0); sharp logits so probabilities are near 0/1."""
    w = np.zeros((2, 3, 3, 3), np.float32)
    w[1] = scale / 27.0
    b = np.array([0.0, -scale * threshold], np.float32)
    return _save(path, w, b, ("background", "bright"), pad=1)
