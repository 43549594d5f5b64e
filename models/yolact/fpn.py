"""YOLACT's feature pyramid: the top-down sums and the output convolutions, shared by YOLACT's
FPN and YolactEdge's split one (models/yolact/edge.py)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def fpn_top_down(
    lat_layers: nn.ModuleList, convouts: list[torch.Tensor]
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The FPN's lateral 1x1 convs and top-down path (YolactEdge's ``fpn_phase_1``).

    ``lat_layers`` are stored in reverse level order (index 0 is C5). Each coarser sum is
    upsampled bilinearly *to the size of the next level* (align_corners=False; 18 -> 35 -> 69 at
    550 px, not an exact x2) and added to that level's lateral.

    Args:
        lat_layers: one 1x1 conv per level, C5 first. convouts: [C3, C4, C5].

    Returns:
        ([sum3, sum4, sum5], [lateral3, lateral4, lateral5]), each (B, features, h, w).
    """
    n = len(convouts)
    out: list[torch.Tensor] = [convouts[0]] * n
    laterals: list[torch.Tensor] = [convouts[0]] * n
    x = None
    for k, lat in enumerate(lat_layers):
        j = n - 1 - k
        laterals[j] = lat(convouts[j])
        if x is None:
            x = laterals[j]
        else:
            x = F.interpolate(x, size=convouts[j].shape[-2:], mode="bilinear", align_corners=False) + laterals[j]
        out[j] = x
    return out, laterals


def fpn_outputs(
    pred_layers: nn.ModuleList, downsample_layers: nn.ModuleList, sums: list[torch.Tensor]
) -> list[torch.Tensor]:
    """The FPN's 3x3 convs + ReLU per level (``pred_layers``, stored reversed) and the extra
    levels by stride-2 3x3 convs without ReLU (YolactEdge's ``fpn_phase_2``): [P3, ..., P7]."""
    n = len(sums)
    out = list(sums)
    for k, pred in enumerate(pred_layers):
        j = n - 1 - k
        out[j] = F.relu(pred(out[j]))
    for down in downsample_layers:
        out.append(down(out[-1]))
    return out


class FPN(nn.Module):
    """Feature pyramid with the official layout: ``lat_layers`` and ``pred_layers`` are stored
    in reverse level order (index 0 is C5/P5); top-down path upsamples bilinearly *to the size
    of the next level* (align_corners=False); ReLU after the 3x3 pred convs; P6, P7 by stride-2
    3x3 convs without ReLU.

    Args:
        in_channels: channels of C3, C4, C5. features: output channels. num_downsample: extra levels.
    """

    def __init__(self, in_channels: list[int], features: int = 256, num_downsample: int = 2) -> None:
        super().__init__()
        self.lat_layers = nn.ModuleList([nn.Conv2d(c, features, 1) for c in reversed(in_channels)])
        self.pred_layers = nn.ModuleList([nn.Conv2d(features, features, 3, padding=1) for _ in in_channels])
        self.downsample_layers = nn.ModuleList(
            [nn.Conv2d(features, features, 3, padding=1, stride=2) for _ in range(num_downsample)]
        )

    def forward(self, convouts: list[torch.Tensor]) -> list[torch.Tensor]:
        """[C3, C4, C5] -> [P3, P4, P5, P6, P7], each (B, features, h, w)."""
        sums, _ = fpn_top_down(self.lat_layers, convouts)
        return fpn_outputs(self.pred_layers, self.downsample_layers, sums)
