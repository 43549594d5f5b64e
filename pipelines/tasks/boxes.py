"""Box geometry shared by the task library and the torch side: one pairwise IoU."""

from __future__ import annotations

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every pair of x1 y1 x2 y2 boxes, batched over leading dimensions.

    Args:
        a: (..., N, 4) and b: (..., M, 4), the same leading dimensions (or broadcastable).

    Returns:
        (..., N, M) in the inputs' floating type (float32 stays float32). Empty or inverted boxes
        have area 0, and a pair whose union is 0 has IoU 0 (not NaN).
    """
    a = np.asarray(a)
    b = np.asarray(b)
    dtype = np.result_type(a.dtype, b.dtype, np.float32)
    a = a.astype(dtype, copy=False)[..., :, None, :]
    b = b.astype(dtype, copy=False)[..., None, :, :]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = np.clip(a[..., 2] - a[..., 0], 0, None) * np.clip(a[..., 3] - a[..., 1], 0, None)
    area_b = np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)
    union = area_a + area_b - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0).astype(dtype, copy=False)
