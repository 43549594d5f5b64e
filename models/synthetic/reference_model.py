"""A reference segmentation model for generated measurement data: an ONNX 1x1 convolution that
classifies each pixel by its 8-bit grey level, with the metadata every segstream artifact
carries. On data from `models.synthetic.phantoms` it reproduces the drawn labels exactly, so a
pipeline run with it must report the ground truth; any difference is the pipeline's.

Needs the ``onnx`` package (part of the torch extra), imported only here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from segstream.stream.backends.base import METADATA_KEY, ArtifactMetadata
from segstream.stream.errors import SegstreamError


def require_onnx() -> None:
    """Raises a one-line error, before anything is written, where the onnx package is missing."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise SegstreamError(
            "writing the reference model needs the onnx package: pip install onnx (it comes with the torch extra)"
        ) from None


def write_threshold_model(
    path: str,
    thresholds: Sequence[float],
    class_names: Sequence[str],
    palette_bgr: Sequence[tuple[int, int, int]],
    model: str = "threshold_reference",
) -> str:
    """Writes a semantic ONNX model: class k for a mean grey level in (thresholds[k-1], thresholds[k]].

    Args:
        path: the .onnx file to write.
        thresholds: ascending 8-bit grey levels between consecutive classes (len(class_names) - 1).
        class_names: class names by id.
        palette_bgr: one BGR colour per class.
        model: the name in the artifact's metadata.

    Returns:
        ``path``. Input ``image`` (1, 3, h, w) = BGR / 255 (any h, w: native size policy);
        output ``logits`` (1, K, h, w), linear in the grey level I: l_k = s (k I - sum_{j<k} t_j / 255),
        whose upper envelope changes class exactly at each threshold.
    """
    require_onnx()
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n = len(class_names)
    if len(thresholds) != n - 1 or list(thresholds) != sorted(thresholds):
        raise ValueError(f"expected {n - 1} ascending thresholds for {n} classes, got {list(thresholds)}")
    scale = 40.0  # sharp logits: probabilities near 0/1 one grey level away from a threshold
    w = np.zeros((n, 3, 1, 1), np.float32)
    b = np.zeros(n, np.float32)
    for k in range(n):
        w[k, :, 0, 0] = scale * k / 3.0
        b[k] = -scale * sum(thresholds[:k]) / 255.0
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "h", "w"])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, n, "h", "w"])
    conv = helper.make_node("Conv", ["image", "W", "B"], ["logits"], kernel_shape=[1, 1])
    graph = helper.make_graph(
        [conv], model, [x], [y], initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")]
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    meta = ArtifactMetadata(
        model=model,
        task="semantic",
        class_names=tuple(class_names),
        input_size_hw=None,
        mean=(0.0, 0.0, 0.0),
        std=(255.0, 255.0, 255.0),
        color_order="BGR",
        palette_bgr=tuple(tuple(int(v) for v in c) for c in palette_bgr),
        extra={
            "input_name": "image",
            "output_name": "logits",
            "size_policy": {"kind": "native"},
            "thresholds": [float(t) for t in thresholds],
        },
    )
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, meta.to_json()
    onnx.checker.check_model(proto)
    onnx.save(proto, path)
    return path
