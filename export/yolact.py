"""YOLACT -> one self-describing ONNX file (opset 18).

The graph is the network part plus box decoding: image (1, 3, S, S) -> boxes, scores, coeffs,
protos (see ``pipelines/yolact.py``). The priors of the fixed input size are constants in the
graph; Fast NMS and mask assembly run on the host (numpy), as in every YOLACT deployment.
"""

from __future__ import annotations

from export.onnx import export_onnx, export_versions
from pipelines.yolact import INPUT_NAME, OUTPUT_NAMES
from stream.backends.base import ArtifactMetadata


def yolact_metadata(cfg, num_priors: int) -> ArtifactMetadata:
    """What a YOLACT artifact says about itself (read back by ``YolactRunner``)."""
    return ArtifactMetadata(
        model=cfg.name,
        task="instances",
        class_names=tuple(cfg.class_names),
        input_size_hw=(cfg.max_size, cfg.max_size),
        mean=tuple(float(v) for v in cfg.mean),
        std=tuple(float(v) for v in cfg.std),
        color_order=cfg.color_order,
        extra={
            "outputs": list(OUTPUT_NAMES),
            "boxes": "decoded, x1y1x2y2 normalised; priors and variances (0.1, 0.2) baked in",
            "num_priors": int(num_priors),
            "num_prototypes": int(cfg.mask_dim),
            "anchors": {"scales_px": list(cfg.pred_scales), "aspect_ratios": list(cfg.aspect_ratios),
                        "square": bool(cfg.square_anchors), "max_size": int(cfg.max_size)},
            "nms": {"conf_thresh": 0.05, "iou_thresh": 0.5, "top_k": 200, "max_detections": 100},
        },
        versions=export_versions(),
    )


def export_yolact_onnx(*, net, out_path: str, opset: int = 18) -> str:
    """Exports a ``Yolact`` network (its configuration's input size) to ``out_path``.

    Args:
        net: models.yolact.model.Yolact (any mode; exported in eval mode).
        out_path: .onnx path; weights embedded.
        opset: ONNX opset (18).

    Returns:
        out_path.
    """
    import torch

    from models.yolact.model import YolactExportWrapper

    wrapper = YolactExportWrapper(net.eval()).eval()
    s = net.cfg.max_size
    example = torch.zeros(1, 3, s, s)
    return export_onnx(
        model=wrapper,
        example_input=example,
        out_path=out_path,
        metadata=yolact_metadata(net.cfg, int(wrapper.priors.shape[0])),
        input_names=[INPUT_NAME],
        output_names=list(OUTPUT_NAMES),
        dynamic_hw=False,
        opset=opset,
    )
