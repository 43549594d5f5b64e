"""Torch reference of the official ``Detect`` and ``postprocess`` (layers/functions/detection.py,
layers/output_utils.py), written for clarity. The runtime uses the numpy version in
``pipelines/tasks/yolact.py``; tests check that the two agree."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from segstream.pipelines.tasks.results import Instances


def decode(loc: torch.Tensor, priors: torch.Tensor, variances=(0.1, 0.2)) -> torch.Tensor:
    """(P, 4) regressions + (P, 4) centre-size priors -> (P, 4) x1 y1 x2 y2 (normalised)."""
    cxcy = priors[:, :2] + loc[:, :2] * variances[0] * priors[:, 2:]
    wh = priors[:, 2:] * torch.exp(loc[:, 2:] * variances[1])
    x1y1 = cxcy - wh / 2
    return torch.cat([x1y1, x1y1 + wh], 1)


def encode(matched: torch.Tensor, priors: torch.Tensor, variances=(0.1, 0.2)) -> torch.Tensor:
    """Inverse of ``decode``: (P, 4) x1 y1 x2 y2 targets -> (P, 4) regressions."""
    cxcy = ((matched[:, :2] + matched[:, 2:]) / 2 - priors[:, :2]) / (variances[0] * priors[:, 2:])
    wh = torch.log((matched[:, 2:] - matched[:, :2]) / priors[:, 2:]) / variances[1]
    return torch.cat([cxcy, wh], 1)


def jaccard(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of (..., n, 4) and (..., m, 4) x1 y1 x2 y2 boxes -> (..., n, m)."""
    lt = torch.max(a[..., :, None, :2], b[..., None, :, :2])
    rb = torch.min(a[..., :, None, 2:], b[..., None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = ((a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1]))[..., :, None]
    area_b = ((b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1]))[..., None, :]
    return inter / (area_a + area_b - inter)


def detect(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    coeffs: torch.Tensor,
    *,
    conf_thresh=0.05,
    iou_thresh=0.5,
    top_k=200,
    max_detections=100,
) -> dict[str, torch.Tensor]:
    """Candidate filter + per-class Fast NMS + global top-k for one image.

    Args:
        boxes: (P, 4) decoded. scores: (P, C+1) softmax. coeffs: (P, K).

    Returns:
        dict boxes (N, 4), scores (N,), labels (N,) int64 0-based foreground, coeffs (N, K).
    """
    fg = scores[:, 1:]
    keep = fg.max(1).values > conf_thresh
    if not bool(keep.any()):
        return {
            "boxes": boxes[:0],
            "scores": scores[:0, 0],
            "labels": torch.zeros(0, dtype=torch.long),
            "coeffs": coeffs[:0],
        }
    cand = fg[keep].t()
    b, c = boxes[keep], coeffs[keep]
    sorted_scores, idx = cand.sort(dim=1, descending=True, stable=True)
    idx = idx[:, :top_k]
    sorted_scores = sorted_scores[:, :top_k]
    cls_boxes = b[idx]
    iou = jaccard(cls_boxes, cls_boxes).triu(diagonal=1)
    keep_nms = iou.max(1).values <= iou_thresh
    classes = torch.arange(cand.shape[0])[:, None].expand_as(keep_nms)[keep_nms]
    kept_scores = sorted_scores[keep_nms]
    kept_idx = idx[keep_nms]
    kept_scores, order = kept_scores.sort(dim=0, descending=True, stable=True)
    order = order[:max_detections]
    kept_scores = kept_scores[:max_detections]
    sel = kept_idx[order]
    return {"boxes": b[sel], "scores": kept_scores, "labels": classes[order], "coeffs": c[sel]}


def _sanitize(x1: torch.Tensor, x2: torch.Tensor, size: int, padding: int = 0):
    x1, x2 = x1 * size, x2 * size
    lo, hi = torch.min(x1, x2), torch.max(x1, x2)
    return (lo - padding).clamp(min=0), (hi + padding).clamp(max=size)


def crop(masks: torch.Tensor, boxes: torch.Tensor, padding: int = 1) -> torch.Tensor:
    """Zero (h, w, n) masks outside their (n, 4) normalised boxes, padded by ``padding`` cells."""
    h, w, n = masks.shape
    x1, x2 = _sanitize(boxes[:, 0], boxes[:, 2], w, padding)
    y1, y2 = _sanitize(boxes[:, 1], boxes[:, 3], h, padding)
    cols = torch.arange(w, dtype=x1.dtype)[None, :, None]
    rows = torch.arange(h, dtype=y1.dtype)[:, None, None]
    keep = (cols >= x1) & (cols < x2) & (rows >= y1) & (rows < y2)
    return masks * keep.float()


def postprocess(
    det: dict[str, torch.Tensor],
    proto: torch.Tensor,
    size_hw: tuple[int, int],
    *,
    score_threshold: float = 0.0,
    crop_masks: bool = True,
    mask_threshold: float = 0.5,
) -> dict[str, torch.Tensor]:
    """Masks and pixel boxes for one image (official ``postprocess``).

    Args:
        det: output of ``detect``. proto: (Hp, Wp, K). size_hw: original (H, W).
        mask_threshold: probability above which a mask pixel is set (official 0.5).

    Returns:
        dict boxes (N, 4) int64 pixels, scores, labels, masks (N, H, W) bool.
    """
    h, w = size_hw
    if score_threshold > 0:
        keep = det["scores"] > score_threshold
        det = {k: v[keep] for k, v in det.items()}
    masks = torch.sigmoid(proto @ det["coeffs"].t())
    if crop_masks:
        masks = crop(masks, det["boxes"])
    masks = masks.permute(2, 0, 1).contiguous()
    if masks.shape[0]:
        masks = F.interpolate(masks[None], (h, w), mode="bilinear", align_corners=False)[0]
    else:
        masks = masks.new_zeros((0, h, w))
    masks = masks > mask_threshold
    x1, x2 = _sanitize(det["boxes"][:, 0], det["boxes"][:, 2], w)
    y1, y2 = _sanitize(det["boxes"][:, 1], det["boxes"][:, 3], h)
    boxes = torch.stack([x1, y1, x2, y2], 1).long()
    return {"boxes": boxes, "scores": det["scores"], "labels": det["labels"], "masks": masks}


def instances_from_outputs(
    out: dict[str, torch.Tensor],
    size_hw: tuple[int, int],
    class_names=(),
    *,
    score_threshold: float = 0.0,
    top_k: int = 200,
    max_detections: int = 100,
    conf_thresh: float = 0.05,
    iou_thresh: float = 0.5,
    mask_threshold: float = 0.5,
) -> Instances:
    """Eval-mode ``Yolact`` outputs (batch of one) -> ``Instances`` with the torch reference."""
    boxes = decode(out["loc"][0], out["priors"])
    det = detect(
        boxes,
        out["conf"][0],
        out["mask"][0],
        conf_thresh=conf_thresh,
        iou_thresh=iou_thresh,
        top_k=top_k,
        max_detections=max_detections,
    )
    res = postprocess(det, out["proto"][0], size_hw, score_threshold=score_threshold, mask_threshold=mask_threshold)
    return Instances(
        boxes_xyxy=res["boxes"].numpy().astype("float32"),
        scores=res["scores"].detach().numpy().astype("float32"),
        labels=res["labels"].numpy().astype("int64"),
        masks=res["masks"].numpy(),
        class_names=tuple(class_names),
    )
