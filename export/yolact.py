"""YOLACT -> one self-describing ONNX file (opset 18).

The graph is the network part plus box decoding: image (1, 3, S, S) -> boxes, scores, coeffs,
protos (see ``pipelines/tasks/yolact.py``). The priors of the fixed input size are constants in the
graph; NMS and mask assembly run on the host (numpy), as in every YOLACT deployment, with the
NMS the metadata names (``extra["nms"]["method"]``: "fast" for YOLACT, "standard" for
YolactEdge). A YolactEdge video model exports its keyframe path.
"""

from __future__ import annotations

from segstream.export.onnx import export_onnx, export_versions
from segstream.pipelines.tasks.yolact import INPUT_NAME, OUTPUT_NAMES


def export_yolact_onnx(*, net, out_path: str, opset: int = 18, dynamic_batch: bool = False) -> str:
    """Exports a ``Yolact`` network (its configuration's input size) to ``out_path``.

    Args:
        net: models.yolact.model.Yolact (any mode; exported in eval mode).
        out_path: .onnx path; weights embedded.
        opset: ONNX opset (18).
        dynamic_batch: a dynamic batch axis N on the image and on every output (boxes, scores,
            coeffs, protos are all per image; the priors broadcast over N), so the runtime can
            batch frames (``[batching] max_batch``).

    Returns:
        out_path.
    """
    import torch

    from segstream.models.yolact.model import YolactExportWrapper

    wrapper = YolactExportWrapper(net.eval()).eval()
    s = net.cfg.max_size
    example = torch.zeros(1, 3, s, s)
    return export_onnx(
        model=wrapper,
        example_input=example,
        out_path=out_path,
        metadata=net.cfg.artifact_metadata(int(wrapper.priors.shape[0]), export_versions()),
        input_names=[INPUT_NAME],
        output_names=list(OUTPUT_NAMES),
        dynamic_hw=False,
        opset=opset,
        dynamic_batch=dynamic_batch,
    )
