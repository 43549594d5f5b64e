"""YOLACT pre- and post-processing on numpy/OpenCV, as the official evaluation computes them.

The network part runs in a backend (ONNX Runtime, TensorRT) and returns, for one image:

- ``boxes``  (1, P, 4) float32: decoded boxes, x1 y1 x2 y2 normalised to [0, 1] (anchors and
  the 0.1/0.2 variances are constants inside the graph);
- ``scores`` (1, P, C+1) float32: softmax class scores, column 0 = background;
- ``coeffs`` (1, P, K) float32: tanh mask coefficients;
- ``protos`` (1, Hp, Wp, K) float32: ReLU prototypes (138 x 138 x 32 at 550).

Everything after that (NMS, mask assembly, crop, upsampling, threshold) happens here. The NMS is
the one the artifact names: YOLACT's Fast NMS, or YolactEdge's per-class standard NMS.
Settings come from the artifact's ``ArtifactMetadata``, so this module never needs torch.
Nothing here modifies its inputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import cv2
import numpy as np

from segstream.pipelines.tasks.boxes import box_iou
from segstream.pipelines.tasks.inference import instance_artifact, normalised_nchw
from segstream.pipelines.tasks.masks import bilinear_matrix
from segstream.pipelines.tasks.results import Instances
from segstream.stream.backends.base import ArtifactMetadata, Backend
from segstream.stream.errors import ModelError

#: Names of the exported graph's input and outputs.
INPUT_NAME = "image"
OUTPUT_NAMES = ("boxes", "scores", "coeffs", "protos")


# --------------------------------------------------------------------------- anchors


def make_priors(
    conv_sizes_hw: list[tuple[int, int]],
    scales: list[list[float]],
    aspect_ratios: list[list[float]],
    max_size: int,
    square_anchors: bool = True,
) -> np.ndarray:
    """YOLACT's anchors ("priors"), in the order the prediction head flattens its outputs.

    Per level, row-major over (row y, column x), then over scales and aspect ratios:
    centre ((x + 0.5) / conv_w, (y + 0.5) / conv_h), width ``scale * sqrt(ar) / max_size``,
    height ``scale / sqrt(ar) / max_size`` or, with ``square_anchors`` (the released models'
    "backward compatibility" bug), height = width.

    Args:
        conv_sizes_hw: (h, w) of each prediction level, P3 first.
        scales: anchor sizes in pixels per level (of an image of ``max_size``).
        aspect_ratios: aspect ratios per level.
        max_size: the network input size the pixel scales refer to.
        square_anchors: set h = w.

    Returns:
        (P, 4) float32 priors, centre-size form (cx, cy, w, h), normalised to [0, 1].
    """
    if not (len(conv_sizes_hw) == len(scales) == len(aspect_ratios)):
        raise ValueError(
            f"make_priors: {len(conv_sizes_hw)} levels but {len(scales)} scale lists "
            f"and {len(aspect_ratios)} aspect-ratio lists"
        )
    levels = []
    for (h, w), level_scales, ars in zip(conv_sizes_hw, scales, aspect_ratios):
        per_loc = []
        for scale in level_scales:
            for ar in ars:
                r = math.sqrt(ar)
                pw = scale * r / max_size
                ph = pw if square_anchors else scale / r / max_size
                per_loc.append((pw, ph))
        wh = np.asarray(per_loc, np.float64)  # (A, 2)
        ys, xs = np.meshgrid((np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w, indexing="ij")
        centres = np.stack([xs.ravel(), ys.ravel()], axis=1)  # (h*w, 2)
        a = len(wh)
        pri = np.concatenate([np.repeat(centres, a, axis=0), np.tile(wh, (h * w, 1))], axis=1)
        levels.append(pri)
    return np.concatenate(levels, axis=0).astype(np.float32)


def decode_boxes(loc: np.ndarray, priors: np.ndarray, variances=(0.1, 0.2)) -> np.ndarray:
    """SSD box decoding (official ``box_utils.decode``).

    Args:
        loc: (P, 4) float32 regression outputs (dx, dy, dw, dh).
        priors: (P, 4) float32 centre-size priors.

    Returns:
        (P, 4) float32 boxes x1 y1 x2 y2, normalised, unclipped.
    """
    cxcy = priors[:, :2] + loc[:, :2] * variances[0] * priors[:, 2:]
    wh = priors[:, 2:] * np.exp(loc[:, 2:] * variances[1])
    x1y1 = cxcy - wh / 2
    return np.concatenate([x1y1, x1y1 + wh], axis=1).astype(np.float32)


# --------------------------------------------------------------------------- pre-processing


@dataclass(frozen=True)
class YolactFrameInfo:
    """What post-processing needs to undo pre-processing.

    Attributes:
        size_hw: (H, W) of the original image in pixels.
        input_size_hw: (h, w) the network saw (the image was resized to it, aspect ignored).
    """

    size_hw: tuple[int, int]
    input_size_hw: tuple[int, int]


class YolactPreprocess:
    """The official ``FastBaseTransform``: float BGR image -> bilinear resize to the input size
    (aspect ratio ignored, no antialiasing) -> (x - mean) / std -> the model's channel order.

    Args:
        input_size_hw: network input (h, w), (550, 550) for the released models.
        mean / std: per channel, on 0-255 values, in ``color_order``.
        color_order: "RGB" (all released YOLACT models) or "BGR".
    """

    def __init__(
        self,
        input_size_hw=(550, 550),
        mean=(123.68, 116.78, 103.94),
        std=(58.40, 57.12, 57.38),
        color_order: str = "RGB",
    ) -> None:
        if color_order not in ("RGB", "BGR"):
            raise ValueError(f"color_order must be 'RGB' or 'BGR', got {color_order!r}")
        self.input_size_hw = (int(input_size_hw[0]), int(input_size_hw[1]))
        self.color_order = color_order
        self._mean, self._std = tuple(mean), tuple(std)

    @classmethod
    def from_metadata(cls, meta: ArtifactMetadata) -> YolactPreprocess:
        if meta.input_size_hw is None:
            raise ModelError(f"{meta.model}: YOLACT artifacts need a fixed input size; re-export without --dynamic")
        return cls(meta.input_size_hw, meta.mean, meta.std, meta.color_order)

    def __call__(self, image_bgr: np.ndarray) -> tuple[dict[str, np.ndarray], YolactFrameInfo]:
        """Args:
            image_bgr: (H, W, 3) uint8 BGR image (not modified).

        Returns:
            ({"image": (1, 3, h, w) float32}, YolactFrameInfo).
        """
        if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
            raise ValueError(f"image_bgr: expected (H, W, 3), got {image_bgr.shape}")
        h, w = self.input_size_hw
        # Resize in float like the official transform (uint8 resizing would round).
        img = cv2.resize(image_bgr.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        tensor = normalised_nchw(img, self._mean, self._std, self.color_order)
        info = YolactFrameInfo(size_hw=(int(image_bgr.shape[0]), int(image_bgr.shape[1])), input_size_hw=(h, w))
        return {INPUT_NAME: tensor}, info


# --------------------------------------------------------------------------- post-processing


def box_iou_batched(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU (official ``jaccard``), batched: (B, n, 4) and (B, m, 4) -> (B, n, m) float32.
    ``segstream.pipelines.tasks.boxes.box_iou`` (0, not NaN, for a pair without area)."""
    return box_iou(a, b)


@dataclass
class Detections:
    """Fast NMS output, before masks are assembled (normalised coordinates).

    Attributes:
        boxes: (N, 4) float32 x1 y1 x2 y2 normalised. scores: (N,) float32.
        labels: (N,) int64 0-based foreground class. coeffs: (N, K) float32.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    coeffs: np.ndarray


def _top_k_sorted(scores: np.ndarray, k: int) -> np.ndarray:
    """(C, n) scores -> (C, k) column indices of each row's k best, best first (ties by index,
    as a stable descending sort)."""
    n = scores.shape[1]
    if k < n:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        part.sort(axis=1)  # index order, so the stable sort below breaks ties by index
        vals = np.take_along_axis(scores, part, axis=1)
        return np.take_along_axis(part, np.argsort(-vals, axis=1, kind="stable"), axis=1)
    return np.argsort(-scores, axis=1, kind="stable")


def _fast_nms_keep(cls_boxes: np.ndarray, iou_thresh: float) -> np.ndarray:
    """(C, k, 4) boxes sorted by score per class -> (C, k) bool: no higher-scored box of the
    same class overlaps it by more than ``iou_thresh``."""
    iou = np.triu(box_iou_batched(cls_boxes, cls_boxes), k=1)
    return iou.max(axis=1) <= iou_thresh if iou.shape[1] else np.ones(iou.shape[:2], bool)


def fast_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    coeffs: np.ndarray,
    *,
    conf_thresh: float = 0.05,
    iou_thresh: float = 0.5,
    top_k: int = 200,
    max_detections: int = 100,
) -> Detections:
    """The official ``Detect``: candidate filter, per-class Fast NMS, global top-k.

    Priors whose best foreground score is <= ``conf_thresh`` are dropped. For each class, the
    ``top_k`` best remaining priors are kept in score order and a box is suppressed when any
    higher-scored box of that class overlaps it by IoU > ``iou_thresh`` (suppressed boxes still
    suppress: that is the "fast" approximation). Kept boxes of all classes are sorted by score and
    the best ``max_detections`` returned. As in the official code, per-class scores are not
    re-thresholded after NMS.

    Args:
        boxes: (P, 4) float32 decoded boxes. scores: (P, C+1) softmax scores (column 0 background).
        coeffs: (P, K) float32 mask coefficients.
    """
    fg = scores[:, 1:]
    keep = fg.max(axis=1) > conf_thresh
    if not keep.any():
        k = coeffs.shape[1]
        return Detections(
            np.zeros((0, 4), np.float32),
            np.zeros((0,), np.float32),
            np.zeros((0,), np.int64),
            np.zeros((0, k), np.float32),
        )
    cand_scores = np.ascontiguousarray(fg[keep].T)  # (C, n)
    cand_boxes = boxes[keep]
    cand_coeffs = coeffs[keep]
    num_classes, n = cand_scores.shape
    order = _top_k_sorted(cand_scores, min(top_k, n))  # (C, k) prior indices, best first
    sorted_scores = np.take_along_axis(cand_scores, order, axis=1)
    # A box's fate depends only on the higher-scored boxes of its class, so the lowest-scored
    # boxes can be left out without changing anything above them. Fast NMS on each class's
    # first few boxes gives boxes that are certainly kept; the max_detections-th best of them
    # bounds the final cut from below, and boxes under that bound can never be returned.
    k1 = min(16, order.shape[1])
    keep1 = _fast_nms_keep(cand_boxes[order[:, :k1]], iou_thresh)
    kept1 = sorted_scores[:, :k1][keep1]
    if len(kept1) >= max_detections:
        bound = np.partition(kept1, len(kept1) - max_detections)[len(kept1) - max_detections]
        counts = (sorted_scores >= bound).sum(axis=1)
    else:
        counts = np.full(num_classes, order.shape[1])
    live = np.flatnonzero(counts)  # classes with at least one box that can still be returned
    counts = counts[live]
    m = int(counts.max())
    order, sorted_scores = order[live, :m], sorted_scores[live, :m]
    valid = np.arange(m)[None, :] < counts[:, None]
    keep_nms = _fast_nms_keep(cand_boxes[order], iou_thresh) & valid  # (C', m)
    classes = np.broadcast_to(live[:, None], keep_nms.shape)[keep_nms]
    kept_scores = sorted_scores[keep_nms]
    kept_idx = order[keep_nms]
    final = np.argsort(-kept_scores, kind="stable")[:max_detections]
    idx = kept_idx[final]
    return Detections(
        boxes=cand_boxes[idx].astype(np.float32),
        scores=kept_scores[final].astype(np.float32),
        labels=classes[final].astype(np.int64),
        coeffs=cand_coeffs[idx].astype(np.float32),
    )


def _iou_plus_one(a: np.ndarray, b: np.ndarray, area_a: np.ndarray, area_b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of pixel boxes with the +1-pixel convention of Fast R-CNN's ``cython_nms``
    (which YolactEdge's ``Detect`` calls), in float32 and in that code's order of operations, so
    pairs at the threshold fall the same way.

    Args:
        a: (m, 4) and b: (k, 4) float32 x1 y1 x2 y2 pixels; area_a, area_b: their
            (x2 - x1 + 1) * (y2 - y1 + 1).

    Returns:
        (m, k) float32.
    """
    one, zero = np.float32(1), np.float32(0)
    w = np.maximum(zero, np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + one)
    h = np.maximum(zero, np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + one)
    inter = w * h
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def standard_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    coeffs: np.ndarray,
    *,
    conf_thresh: float = 0.05,
    iou_thresh: float = 0.5,
    max_detections: int = 100,
    pixel_scale: float = 550.0,
) -> Detections:
    """YolactEdge's ``Detect`` (``use_fast_nms=False``, its class default): per-class standard NMS.

    Priors whose best foreground score is <= ``conf_thresh`` are dropped (as ``fast_nms``). Then,
    for each class, every remaining prior whose score for that class is > ``conf_thresh`` takes
    part (no top-k): boxes are scaled by ``pixel_scale`` (the model's ``max_size``, 550) and
    visited best first; a box is suppressed when a kept box of its class overlaps it by
    IoU >= ``iou_thresh``, areas counted as ``(x2 - x1 + 1) * (y2 - y1 + 1)``; a suppressed box
    suppresses nothing. Kept boxes of all classes are sorted by score (ties: class, then prior
    index) and the best ``max_detections`` returned, boxes divided back by ``pixel_scale``
    (float32, the official round trip).

    A box's fate depends only on the higher-scored boxes of its class, so all classes are visited
    together, best score first, in blocks, and the visit stops once ``max_detections`` boxes are
    kept and the rest score lower: the result is that of NMS over every candidate.

    Args:
        boxes: (P, 4) float32 decoded boxes (normalised). scores: (P, C+1) softmax (column 0
            background). coeffs: (P, K) float32 mask coefficients.
    """
    fg = scores[:, 1:]
    keep = fg.max(axis=1) > conf_thresh
    k = coeffs.shape[1]
    if not keep.any():
        return Detections(
            np.zeros((0, 4), np.float32),
            np.zeros((0,), np.float32),
            np.zeros((0,), np.int64),
            np.zeros((0, k), np.float32),
        )
    scale = np.float32(pixel_scale)
    cand_scores = np.ascontiguousarray(fg[keep].T, dtype=np.float32)  # (C, n)
    cand_px = boxes[keep].astype(np.float32) * scale
    cand_coeffs = coeffs[keep]
    areas = (cand_px[:, 2] - cand_px[:, 0] + np.float32(1)) * (cand_px[:, 3] - cand_px[:, 1] + np.float32(1))
    thresh = np.float32(iou_thresh)
    # (class, prior) pairs, each class in the order the Cython code visits it (the same argsort
    # call, so equal scores come in the same order), then merged best first (stable).
    pair_cls: list[np.ndarray] | np.ndarray  # per-class parts, then their concatenation
    pair_idx: list[np.ndarray] | np.ndarray
    pair_cls, pair_idx = [], []
    for c in np.flatnonzero((cand_scores > conf_thresh).any(axis=1)):
        members = np.flatnonzero(cand_scores[c] > conf_thresh)
        pair_idx.append(members[cand_scores[c, members].argsort()[::-1]])
        pair_cls.append(np.full(len(members), c, np.int64))
    pair_cls, pair_idx = np.concatenate(pair_cls), np.concatenate(pair_idx)
    pair_score = cand_scores[pair_cls, pair_idx]
    merged = np.argsort(-pair_score, kind="stable")
    pair_cls, pair_idx, pair_score = pair_cls[merged], pair_idx[merged], pair_score[merged]

    kept: list[int] = []  # positions in the merged order
    cutoff = -np.inf
    pos, block = 0, 256
    while pos < len(pair_score) and not (len(kept) >= max_detections and pair_score[pos] < cutoff):
        sl = slice(pos, pos + block)
        bi, bc = pair_idx[sl], pair_cls[sl]
        suppressed = np.zeros(len(bi), bool)
        if kept:
            ki, kc = pair_idx[kept], pair_cls[kept]
            over = _iou_plus_one(cand_px[bi], cand_px[ki], areas[bi], areas[ki]) >= thresh
            suppressed = (over & (bc[:, None] == kc[None, :])).any(axis=1)
        within = _iou_plus_one(cand_px[bi], cand_px[bi], areas[bi], areas[bi]) >= thresh
        within = np.triu(within & (bc[:, None] == bc[None, :]), k=1)  # a box only suppresses later ones
        for j in range(len(bi)):
            if not suppressed[j]:
                kept.append(pos + j)
                suppressed |= within[j]
        pos += len(bi)
        block = min(2 * block, 1024)
        if len(kept) >= max_detections:
            cutoff = np.partition(pair_score[kept], len(kept) - max_detections)[len(kept) - max_detections]
    kept_arr = np.asarray(kept, np.int64)
    cls, idx, sc = pair_cls[kept_arr], pair_idx[kept_arr], pair_score[kept_arr]
    final = np.lexsort((idx, cls, -sc))[:max_detections]  # score descending; ties by class, then prior
    sel = idx[final]
    return Detections(
        boxes=(cand_px[sel] / scale).astype(np.float32),
        scores=sc[final].astype(np.float32),
        labels=cls[final],
        coeffs=cand_coeffs[sel].astype(np.float32),
    )


#: NMS by the name an artifact's metadata gives (``extra["nms"]["method"]``; "fast" when absent).
NMS_METHODS: dict[str, Callable[..., Detections]] = {"fast": fast_nms, "standard": standard_nms}


class YolactPostprocess:
    """Network outputs -> ``Instances`` in the original image's pixels (official ``postprocess``).

    Detections: ``fast_nms`` (YOLACT) or ``standard_nms`` (YolactEdge), as ``nms_method`` says.

    Masks: sigmoid(protos @ coeffs), zeroed outside each box (padded by one proto cell) at
    prototype resolution, bilinearly upsampled to the image size, thresholded at
    ``mask_threshold`` (0.5, official; an artifact may carry its own). Only
    the region of the image that the cropped mask can reach is upsampled, with the same source
    taps and weights as torch's ``F.interpolate``, so the result equals a full-frame upsample.
    Boxes: scaled to pixels, clamped to the image and truncated to whole pixels, as the
    official code does.

    Args:
        class_names: foreground class names (labels index them).
        conf_thresh / iou_thresh / top_k / max_detections: NMS settings (official defaults; top_k
            is Fast NMS's per-class limit, standard NMS has none).
        nms_method: "fast" or "standard" (a key of ``NMS_METHODS``).
        pixel_scale: standard NMS's box scale (the model's input size, 550); None: 550.
        score_threshold: drop detections with score <= this after NMS (0: keep all).
        mask_threshold: mask probability above which a pixel is set.
        masks: assemble masks (False: boxes only).
    """

    def __init__(
        self,
        class_names=(),
        *,
        conf_thresh: float = 0.05,
        iou_thresh: float = 0.5,
        top_k: int = 200,
        max_detections: int = 100,
        score_threshold: float = 0.0,
        mask_threshold: float = 0.5,
        masks: bool = True,
        nms_method: str = "fast",
        pixel_scale: float | None = None,
    ) -> None:
        for name, v in (
            ("conf_thresh", conf_thresh),
            ("iou_thresh", iou_thresh),
            ("score_threshold", score_threshold),
            ("mask_threshold", mask_threshold),
        ):
            if not 0 <= v <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {v}")
        if top_k < 1 or max_detections < 1:
            raise ValueError(f"top_k and max_detections must be >= 1, got {top_k} and {max_detections}")
        if nms_method not in NMS_METHODS:
            raise ModelError(
                f"NMS method {nms_method!r} is not known here; expected one of {', '.join(NMS_METHODS)} "
                "(re-export the model with this version of segstream)"
            )
        if pixel_scale is not None and not pixel_scale > 0:
            raise ValueError(f"pixel_scale must be > 0, got {pixel_scale}")
        self.class_names = tuple(class_names)
        self.conf_thresh = conf_thresh
        self.iou_thresh = iou_thresh
        self.top_k = top_k
        self.max_detections = max_detections
        self.score_threshold = score_threshold
        self.mask_threshold = float(mask_threshold)
        self.masks = masks
        self.nms_method = nms_method
        self.pixel_scale = 550.0 if pixel_scale is None else float(pixel_scale)
        settings = {"conf_thresh": conf_thresh, "iou_thresh": iou_thresh, "max_detections": max_detections}
        if nms_method == "fast":
            settings["top_k"] = top_k
        else:
            settings["pixel_scale"] = self.pixel_scale
        self._nms = partial(NMS_METHODS[nms_method], **settings)
        self._taps: dict[tuple[int, int], tuple] = {}

    @classmethod
    def from_metadata(cls, meta: ArtifactMetadata, **overrides) -> YolactPostprocess:
        """Settings from ``meta.extra["nms"]`` (its "method" is ``nms_method``), then ``overrides``."""
        nms = dict(meta.extra.get("nms", {}))
        if "method" in nms:
            nms["nms_method"] = nms.pop("method")
        if "pixel_scale" not in nms and meta.input_size_hw is not None:
            nms["pixel_scale"] = float(max(meta.input_size_hw))
        nms.update(overrides)
        return cls(meta.class_names, **nms)

    def __call__(self, outputs: dict[str, np.ndarray], info: YolactFrameInfo) -> Instances:
        """Args:
        outputs: the backend's outputs (see the module docstring), batch of one.
        info: from ``YolactPreprocess``.
        """
        missing = [n for n in OUTPUT_NAMES if n not in outputs]
        if missing:
            raise ModelError(
                f"YOLACT outputs lack {missing}; expected {list(OUTPUT_NAMES)} (export with 'segstream export')"
            )
        boxes, scores, coeffs, protos = (outputs[n][0] for n in OUTPUT_NAMES)
        det = self._nms(boxes, scores, coeffs)
        if self.score_threshold > 0:
            sel = det.scores > self.score_threshold
            det = Detections(det.boxes[sel], det.scores[sel], det.labels[sel], det.coeffs[sel])
        return self.assemble(det, protos, info.size_hw)

    def assemble(self, det: Detections, protos: np.ndarray, size_hw: tuple[int, int]) -> Instances:
        """Boxes to pixels and masks to the image size.

        Args:
            det: detections (normalised boxes). protos: (Hp, Wp, K) float32. size_hw: (H, W) pixels.
        """
        h, w = size_hw
        n = len(det.scores)
        boxes_px = np.zeros((n, 4), np.float32)
        for _j, (lo, hi, size) in enumerate(((0, 2, w), (1, 3, h))):
            a = det.boxes[:, lo] * np.float32(size)
            b = det.boxes[:, hi] * np.float32(size)
            boxes_px[:, lo] = np.clip(np.minimum(a, b), 0, size)
            boxes_px[:, hi] = np.clip(np.maximum(a, b), 0, size)
        boxes_px = np.trunc(boxes_px).astype(np.float32)
        masks = None
        if self.masks:
            masks = self._masks(det, protos, h, w)
        return Instances(
            boxes_xyxy=boxes_px,
            scores=det.scores.astype(np.float32),
            labels=det.labels.astype(np.int64),
            masks=masks,
            class_names=self.class_names,
        )

    def _masks(self, det: Detections, protos: np.ndarray, h: int, w: int) -> np.ndarray:
        hp, wp, k = protos.shape
        n = len(det.scores)
        out = np.zeros((n, h, w), dtype=bool)
        if n == 0:
            return out
        coeffs = np.ascontiguousarray(det.coeffs, dtype=np.float32).reshape(n, k, 1)
        wy, y0, y1 = self._axis_matrix(h, hp)
        wx, x0, x1 = self._axis_matrix(w, wp)
        xa, xb = _crop_ranges(det.boxes[:, 0], det.boxes[:, 2], wp)
        ya, yb = _crop_ranges(det.boxes[:, 1], det.boxes[:, 3], hp)
        # Output pixels whose taps reach the kept cells; every other pixel is exactly 0.
        ra, rb = np.searchsorted(y1, ya, side="left"), np.searchsorted(y0, yb, side="left")
        ca, cb = np.searchsorted(x1, xa, side="left"), np.searchsorted(x0, xb, side="left")
        for i in range(n):
            if xa[i] >= xb[i] or ya[i] >= yb[i] or ra[i] >= rb[i] or ca[i] >= cb[i]:
                continue
            region = protos[ya[i] : yb[i], xa[i] : xb[i]]
            flat = np.ascontiguousarray(region).reshape(-1, k)
            logits = cv2.gemm(flat, coeffs[i], 1.0, None, 0.0).reshape(region.shape[:2])  # type: ignore[call-overload]  # cv2 stubs reject src3=None, which OpenCV accepts
            cells = 1.0 / (1.0 + np.exp(-logits))
            # Bilinear upsampling as two small matrix products; cells outside the crop are zero,
            # so their taps are simply left out. OpenCV's gemm: numpy's threaded BLAS spends more
            # time waking threads than multiplying matrices this small.
            tmp = cv2.gemm(wy[ra[i] : rb[i], ya[i] : yb[i]], cells, 1.0, None, 0.0)  # type: ignore[call-overload]  # cv2 stubs reject src3=None, which OpenCV accepts
            block = cv2.gemm(tmp, wx[ca[i] : cb[i], xa[i] : xb[i]], 1.0, None, 0.0, flags=cv2.GEMM_2_T)  # type: ignore[call-overload]  # cv2 stubs reject src3=None, which OpenCV accepts
            out[i, ra[i] : rb[i], ca[i] : cb[i]] = block > self.mask_threshold
        return out

    def _axis_matrix(self, out_size: int, in_size: int):
        """(out, in) float32 interpolation matrix of torch's bilinear resize, with its tap indices."""
        key = (out_size, in_size)
        if key not in self._taps:
            self._taps[key] = bilinear_matrix(out_size, in_size)
        return self._taps[key]


def _crop_ranges(lo: np.ndarray, hi: np.ndarray, size: int, padding: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Integer [a, b) of cells kept by the official ``crop``: ``lo*size - pad <= c < hi*size + pad``,
    computed in float32 as torch does."""
    s = np.float32(size)
    a, b = np.minimum(lo * s, hi * s), np.maximum(lo * s, hi * s)
    a = np.maximum(a - np.float32(padding), np.float32(0))
    b = np.minimum(b + np.float32(padding), s)
    return np.ceil(a).astype(np.int64), np.ceil(b).astype(np.int64)


class YolactRunner:
    """Pre-processing, the backend call and post-processing for one BGR image. No threads.

    Args:
        backend: a ``Backend`` running an exported YOLACT artifact (with segstream metadata).
        score_threshold / max_detections / mask_threshold / nms_method: override the artifact's
            post-processing settings (None: the artifact's).
    """

    def __init__(
        self,
        backend: Backend,
        *,
        score_threshold: float | None = None,
        max_detections: int | None = None,
        mask_threshold: float | None = None,
        nms_method: str | None = None,
    ) -> None:
        meta = instance_artifact(backend, "yolact", "YOLACT", [INPUT_NAME], OUTPUT_NAMES)
        self.backend = backend
        self.metadata = meta
        self.preprocess = YolactPreprocess.from_metadata(meta)
        overrides = {
            k: v
            for k, v in (
                ("score_threshold", score_threshold),
                ("max_detections", max_detections),
                ("mask_threshold", mask_threshold),
                ("nms_method", nms_method),
            )
            if v is not None
        }
        self.postprocess = YolactPostprocess.from_metadata(meta, **overrides)

    def __call__(self, image_bgr: np.ndarray) -> Instances:
        """Args:
        image_bgr: (H, W, 3) uint8. Returns: Instances in its pixel coordinates."""
        feeds, info = self.preprocess(image_bgr)
        return self.postprocess(self.backend.run(feeds), info)
