"""Real ONNX semantic models whose weights are set by hand, with the project's metadata, so
areas and volumes can be checked exactly: a 1x1 conv that thresholds intensity, a 3x3 conv that
thresholds a local mean (spatial context, for tiling seams), and a model whose threshold depends
on the distance to its input's border (position-dependent, like a real network, for seams)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from segstream.stream.backends.base import METADATA_KEY, ArtifactMetadata

PALETTE_BGR = ((0, 0, 0), (0, 200, 0), (0, 0, 255), (255, 0, 0))


def _save(
    path: str,
    weights: np.ndarray,
    bias: np.ndarray,
    class_names: tuple[str, ...],
    pad: int,
    task: str = "semantic",
    input_size_hw: tuple[int, int] | None = None,
) -> str:
    """Conv(image) -> logits, with dynamic H and W; input (1, 3, h, w) = BGR / 255. The metadata
    may claim another task or a fixed input size (the runtime then resizes every frame to it)."""
    k = weights.shape[2]
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "h", "w"])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, len(class_names), "h", "w"])
    conv = helper.make_node("Conv", ["image", "W", "B"], ["logits"], kernel_shape=[k, k], pads=[pad] * 4)
    graph = helper.make_graph(
        [conv],
        "handset",
        [x],
        [y],
        initializer=[
            numpy_helper.from_array(weights.astype(np.float32), "W"),
            numpy_helper.from_array(bias.astype(np.float32), "B"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    meta = ArtifactMetadata(
        model="handset",
        task=task,
        class_names=class_names,
        input_size_hw=input_size_hw,
        mean=(0.0, 0.0, 0.0),
        std=(255.0, 255.0, 255.0),
        color_order="BGR",
        palette_bgr=PALETTE_BGR[: len(class_names)],
        extra={"input_name": "image", "output_name": "logits"},
    )
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, meta.to_json()
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def threshold_model(
    path: str,
    thresholds=(128,),
    class_names=None,
    scale: float = 1.0,
    task: str = "semantic",
    input_size_hw: tuple[int, int] | None = None,
) -> str:
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
    return _save(path, w, b, names, pad=0, task=task, input_size_hw=input_size_hw)


def context_model(path: str, threshold: float = 0.5, scale: float = 40.0) -> str:
    """Two classes: "bright" where the 3x3 mean intensity (zero padding) exceeds ``threshold``
    (of 1.0); sharp logits so probabilities are near 0/1."""
    w = np.zeros((2, 3, 3, 3), np.float32)
    w[1] = scale / 27.0
    b = np.array([0.0, -scale * threshold], np.float32)
    return _save(path, w, b, ("background", "bright"), pad=1)


def border_model(path: str, reach: int, scale: float = 100.0) -> str:
    """Two classes, "bright" where the mean intensity I (of 1.0) exceeds a threshold that depends
    on where the pixel sits in the model's input, like a network with zero padding and a layout
    prior: 0.5 inside, 0.8 within ``reach`` px of the top or left border, 0.2 within ``reach`` of
    the bottom or right border (the offsets add up in the corners). On a uniform I = 0.6 the top
    and left margins come out "background" and the rest "bright", so two tiles that overlap by
    less than ``2 * reach`` disagree in the middle of their overlap. Dynamic H and W."""
    f = TensorProto.FLOAT

    def const(name, value, dtype=np.float32):
        return helper.make_node(
            "Constant", [], [name], value=numpy_helper.from_array(np.asarray(value, dtype), name + "_v")
        )

    nodes = [
        const("axes1", [1], np.int64),
        const("ax0", [0], np.int64),
        const("zero_i", 0, np.int64),
        const("one_i", 1, np.int64),
        const("reach", float(reach)),
        const("half", 0.5),
        const("off", 0.3),
        const("scale", scale),
        const("zero_f", 0.0),
        const("one_f", 1.0),
        helper.make_node("ReduceMean", ["image", "axes1"], ["mean"], keepdims=1),  # (1, 1, h, w)
        helper.make_node("Shape", ["image"], ["shape"]),
    ]
    for axis, name in ((2, "h"), (3, "w")):
        nodes += [
            const(f"{name}_at", axis, np.int64),
            helper.make_node("Gather", ["shape", f"{name}_at"], [f"{name}_n"], axis=0),
            helper.make_node("Range", ["zero_i", f"{name}_n", "one_i"], [f"{name}_r"]),
            helper.make_node("Cast", [f"{name}_r"], [f"{name}_pos"], to=f),  # 0 .. n-1
            helper.make_node("Cast", [f"{name}_n"], [f"{name}_len"], to=f),
            helper.make_node("Sub", [f"{name}_len", f"{name}_pos"], [f"{name}_rev1"]),  # n .. 1
            helper.make_node("Sub", [f"{name}_rev1", "one_f"], [f"{name}_rev"]),  # n-1 .. 0
            helper.make_node("Less", [f"{name}_pos", "reach"], [f"{name}_lo_b"]),
            helper.make_node("Less", [f"{name}_rev", "reach"], [f"{name}_hi_b"]),
            helper.make_node("Cast", [f"{name}_lo_b"], [f"{name}_lo"], to=f),
            helper.make_node("Cast", [f"{name}_hi_b"], [f"{name}_hi"], to=f),
            helper.make_node("Sub", [f"{name}_lo", f"{name}_hi"], [f"{name}_d"]),
            helper.make_node("Mul", [f"{name}_d", "off"], [f"{name}_t"]),  # +0.3 / 0 / -0.3
        ]
    nodes += [
        helper.make_node("Unsqueeze", ["h_t", "axes1"], ["h_col"]),  # (h, 1)
        helper.make_node("Unsqueeze", ["w_t", "ax0"], ["w_row"]),  # (1, w)
        helper.make_node("Add", ["h_col", "w_row"], ["t0"]),
        helper.make_node("Add", ["t0", "half"], ["t"]),  # (h, w)
        helper.make_node("Sub", ["mean", "t"], ["margin"]),  # (1, 1, h, w)
        helper.make_node("Mul", ["margin", "scale"], ["bright"]),
        helper.make_node("Mul", ["bright", "zero_f"], ["background"]),
        helper.make_node("Concat", ["background", "bright"], ["logits"], axis=1),
    ]
    x = helper.make_tensor_value_info("image", f, [1, 3, "h", "w"])
    y = helper.make_tensor_value_info("logits", f, [1, 2, "h", "w"])
    graph = helper.make_graph(nodes, "border", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    meta = ArtifactMetadata(
        model="handset_border",
        task="semantic",
        class_names=("background", "bright"),
        input_size_hw=None,
        mean=(0.0, 0.0, 0.0),
        std=(255.0, 255.0, 255.0),
        color_order="BGR",
        palette_bgr=PALETTE_BGR[:2],
        extra={"input_name": "image", "output_name": "logits"},
    )
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, meta.to_json()
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path
