"""The published YOLACT losses (official ``layers/modules/multibox_loss.py``).

- B: smooth-L1 on matched priors' box regressions, x ``bbox_alpha`` (1.5);
- C: softmax cross-entropy with online hard-negative mining, 3 negatives per positive;
- M: per positive, BCE between sigmoid(protos @ coeffs) cropped by the matched GT box and the
  GT mask downsampled to prototype size (``mask_targets`` "hard": bilinear then > 0.5, official;
  "soft": the area average, each cell's covered fraction), normalised by the GT box area (``emulate ROI pooling``),
  x ``mask_alpha`` (6.125) / (Hp * Wp);
- S: semantic auxiliary loss, BCE-with-logits of the P3 class maps against the per-class union
  of GT masks, / (h * w).
B, C and M are divided by the number of positives in the batch, S by the batch size.
Matching: IoU of GT boxes with point-form priors; every GT first takes its best prior; IoU >= 0.5
positive, < 0.4 background, in between neutral; non-positives covering a crowd region > 0.7 neutral.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from segstream.models.yolact.config import YolactConfig
from segstream.models.yolact.detect import crop, encode, jaccard


@dataclass
class Target:
    """Ground truth of one training image, at the network input.

    Attributes:
        boxes: (n, 4) float32 x1 y1 x2 y2 normalised to [0, 1] (crowd boxes last).
        labels: (n,) int64 0-based foreground classes.
        masks: (n, S, S) float32 0/1 at the input size.
        num_crowds: how many of the last entries are crowd regions (no masks/labels trained).
    """

    boxes: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor
    num_crowds: int = 0


def point_form(priors: torch.Tensor) -> torch.Tensor:
    return torch.cat([priors[:, :2] - priors[:, 2:] / 2, priors[:, :2] + priors[:, 2:] / 2], 1)


def match(
    cfg: YolactConfig,
    truths: torch.Tensor,
    labels: torch.Tensor,
    crowd_boxes: torch.Tensor | None,
    priors: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Assigns every prior a GT (official ``box_utils.match``).

    Returns:
        loc_t (P, 4) regression targets, conf_t (P,) int64 (0 bg, -1 neutral, c+1 class c),
        idx_t (P,) index of the matched GT, box_t (P, 4) matched GT boxes.
    """
    pf = point_form(priors)
    overlaps = jaccard(truths, pf)  # (n, P)
    best_truth_overlap, best_truth_idx = overlaps.max(0)
    overlaps = overlaps.clone()
    for _ in range(overlaps.shape[0]):
        best_prior_overlap, best_prior_idx = overlaps.max(1)
        j = int(best_prior_overlap.argmax())
        i = int(best_prior_idx[j])
        overlaps[:, i] = -1
        overlaps[j, :] = -1
        best_truth_overlap[i] = 2
        best_truth_idx[i] = j
    matches = truths[best_truth_idx]
    conf = labels[best_truth_idx] + 1
    conf[best_truth_overlap < cfg.positive_iou] = -1
    conf[best_truth_overlap < cfg.negative_iou] = 0
    if crowd_boxes is not None and len(crowd_boxes) and cfg.crowd_iou < 1:
        lt = torch.max(pf[:, None, :2], crowd_boxes[None, :, :2])
        rb = torch.min(pf[:, None, 2:], crowd_boxes[None, :, 2:])
        inter = (rb - lt).clamp(min=0).prod(-1)
        area = ((pf[:, 2] - pf[:, 0]) * (pf[:, 3] - pf[:, 1]))[:, None]
        crowd_overlap = (inter / area).max(1).values
        conf[(conf <= 0) & (crowd_overlap > cfg.crowd_iou)] = -1
    return encode(matches, priors), conf, best_truth_idx, matches


def mask_targets(masks: torch.Tensor, size_hw: tuple[int, int], mode: str = "hard") -> torch.Tensor:
    """(n, H, W) 0/1 masks at the network input -> (n, h, w) mask-loss targets at prototype size.

    "hard": the official bilinear resize thresholded at 0.5 (a 4x downsample samples 2 of every
    4 rows and columns, so a part thinner than a cell can vanish or break up); "soft": the
    fraction of each cell the mask covers (an area average)."""
    if mode == "soft":
        return F.interpolate(masks[None], size_hw, mode="area")[0]
    if mode != "hard":
        raise ValueError(f"mask targets must be 'hard' or 'soft', got {mode!r}")
    return (F.interpolate(masks[None], size_hw, mode="bilinear", align_corners=False)[0] > 0.5).float()


class YolactLoss(torch.nn.Module):
    """Total loss and its parts for a batch (official MultiBoxLoss with the yolact_base settings)."""

    def __init__(self, cfg: YolactConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def forward(self, out: dict[str, torch.Tensor], targets: list[Target]) -> dict[str, torch.Tensor]:
        """Args:
            out: training-mode ``Yolact`` outputs (loc, conf logits, mask, proto, priors, segm).
            targets: one Target per image.

        Returns:
            {"B", "C", "M", "S", "total"} scalar tensors.
        """
        cfg = self.cfg
        loc, conf, coeff, proto, priors = out["loc"], out["conf"], out["mask"], out["proto"], out["priors"]
        b, p = loc.shape[:2]
        loc_t = loc.new_zeros((b, p, 4))
        conf_t = torch.zeros((b, p), dtype=torch.long, device=loc.device)
        idx_t = torch.zeros((b, p), dtype=torch.long, device=loc.device)
        box_t = loc.new_zeros((b, p, 4))
        gts = []
        for i, t in enumerate(targets):
            n = len(t.boxes) - t.num_crowds
            truths, labels, masks = t.boxes[:n], t.labels[:n], t.masks[:n]
            crowds = t.boxes[n:] if t.num_crowds else None
            gts.append((labels, masks))
            if n == 0:
                conf_t[i] = 0
                continue
            loc_t[i], conf_t[i], idx_t[i], box_t[i] = match(cfg, truths, labels, crowds, priors)
        pos = conf_t > 0
        num_pos = pos.sum().clamp(min=1).float()
        losses = {}
        losses["B"] = F.smooth_l1_loss(loc[pos], loc_t[pos], reduction="sum") * cfg.bbox_alpha / num_pos
        losses["C"] = self._ohem_conf(conf, conf_t, pos) * cfg.conf_alpha / num_pos
        losses["M"] = self._mask_loss(pos, idx_t, box_t, coeff, proto, gts) / num_pos
        losses["S"] = self._semantic(out["segm"], gts) / b
        losses["total"] = losses["B"] + losses["C"] + losses["M"] + losses["S"]
        return losses

    def _ohem_conf(self, conf: torch.Tensor, conf_t: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        b, p, c = conf.shape
        with torch.no_grad():
            flat = conf.reshape(-1, c)
            mining = (torch.logsumexp(flat, 1) - flat[:, 0]).reshape(b, p)
            mining[pos] = 0
            mining[conf_t < 0] = 0
            _, loss_idx = mining.sort(1, descending=True)
            _, rank = loss_idx.sort(1)
            num_neg = torch.clamp(self.cfg.negpos_ratio * pos.long().sum(1, keepdim=True), max=p - 1)
            neg = rank < num_neg
            neg[pos] = False
            neg[conf_t < 0] = False
        sel = pos | neg
        return F.cross_entropy(conf[sel], conf_t[sel], reduction="sum")

    def _mask_loss(self, pos, idx_t, box_t, coeff, proto, gts) -> torch.Tensor:
        cfg = self.cfg
        hp, wp = proto.shape[1:3]
        total = proto.new_zeros(())
        for i, (_labels, masks) in enumerate(gts):
            cur = pos[i]
            if not bool(cur.any()) or len(masks) == 0:
                continue
            with torch.no_grad():
                down = mask_targets(masks, (hp, wp), cfg.mask_targets).permute(1, 2, 0)  # (hp, wp, n)
            gt_idx = idx_t[i, cur]
            gt_box = box_t[i, cur]
            c = coeff[i, cur]
            old = c.shape[0]
            if old > cfg.masks_to_train:
                sel = torch.randperm(old, device=c.device)[: cfg.masks_to_train]
                c, gt_idx, gt_box = c[sel], gt_idx[sel], gt_box[sel]
            pred = torch.sigmoid(proto[i] @ c.t())
            pred = crop(pred, gt_box)
            bce = F.binary_cross_entropy(pred.clamp(0, 1), down[:, :, gt_idx], reduction="none")
            w = (gt_box[:, 2] - gt_box[:, 0]) * wp
            h = (gt_box[:, 3] - gt_box[:, 1]) * hp
            per = bce.sum(dim=(0, 1)) / w / h * (hp * wp)
            if old > c.shape[0]:
                per = per * (old / c.shape[0])
            total = total + per.sum()
        return total * cfg.mask_alpha / hp / wp

    def _semantic(self, segm: torch.Tensor, gts) -> torch.Tensor:
        _, _, h, w = segm.shape
        total = segm.new_zeros(())
        for i, (labels, masks) in enumerate(gts):
            with torch.no_grad():
                target = torch.zeros_like(segm[i])
                if len(masks):
                    down = F.interpolate(masks[None], (h, w), mode="bilinear", align_corners=False)[0] > 0.5
                    for k in range(len(labels)):
                        target[labels[k]] = torch.maximum(target[labels[k]], down[k].float())
            total = total + F.binary_cross_entropy_with_logits(segm[i], target, reduction="sum")
        return total / h / w * self.cfg.semantic_alpha
