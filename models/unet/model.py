"""U-Net (Ronneberger et al., 2015) with configurable depth, width, normalisation and upsampling.

Input (N, C_in, H, W) -> logits (N, num_classes, H, W). H and W need not be multiples of
2**depth: the decoder resizes to the skip connection's size before concatenating, so any
input size works (and exports with dynamic height and width). The semantic family (``unet*``
in models/semantic/zoo.py) pads frames to a multiple of 2**depth instead, so every level lines
up and the exported graph needs no resize.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class UNetConfig:
    """Attributes:
    in_channels: input channels (3 for RGB, 1 for CT/MR slices).
    num_classes: output channels; 1 for a binary mask (sigmoid), else softmax classes.
    depth: number of downsampling steps (levels = depth + 1).
    width: channels of the first level; doubled at each level down.
    norm: "batch", "group" (8 groups) or "none".
    upsampling: "transpose" (learned 2x2 transposed convolution) or "bilinear" (+ 1x1 conv).
    """

    in_channels: int = 3
    num_classes: int = 2
    depth: int = 4
    width: int = 64
    norm: str = "batch"
    upsampling: str = "transpose"

    def __post_init__(self) -> None:
        if self.depth < 1 or self.depth > 6:
            raise ValueError(f"depth must be in 1..6, got {self.depth}")
        if self.norm not in ("batch", "group", "none"):
            raise ValueError(f"norm must be batch, group or none, got {self.norm!r}")
        if self.upsampling not in ("transpose", "bilinear"):
            raise ValueError(f"upsampling must be transpose or bilinear, got {self.upsampling!r}")
        if self.num_classes < 1 or self.in_channels < 1 or self.width < 1:
            raise ValueError("num_classes, in_channels and width must be >= 1")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    return nn.Identity()


class DoubleConv(nn.Sequential):
    """(3x3 conv -> norm -> ReLU) x 2."""

    def __init__(self, cin: int, cout: int, norm: str) -> None:
        bias = norm == "none"
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=bias),
            _norm(norm, cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=bias),
            _norm(norm, cout),
            nn.ReLU(inplace=True),
        )


class Up(nn.Module):
    """Upsample x2, resize to the skip's size, concatenate, DoubleConv."""

    def __init__(self, cin: int, cskip: int, cout: int, norm: str, mode: str) -> None:
        super().__init__()
        if mode == "transpose":
            self.up = nn.ConvTranspose2d(cin, cin // 2, kernel_size=2, stride=2)
        else:
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(cin, cin // 2, kernel_size=1),
            )
        self.conv = DoubleConv(cin // 2 + cskip, cout, norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        if x.shape[-2:] != skip.shape[-2:]:
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    def __init__(self, config: UNetConfig = UNetConfig()) -> None:
        super().__init__()
        self.config = config
        c = config
        widths = [c.width * 2**i for i in range(c.depth + 1)]
        self.inc = DoubleConv(c.in_channels, widths[0], c.norm)
        self.down = nn.ModuleList(DoubleConv(widths[i], widths[i + 1], c.norm) for i in range(c.depth))
        self.up = nn.ModuleList(
            Up(widths[i + 1], widths[i], widths[i], c.norm, c.upsampling) for i in reversed(range(c.depth))
        )
        self.head = nn.Conv2d(widths[0], c.num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]
        for block in self.down:
            skips.append(block(F.max_pool2d(skips[-1], 2)))
        y = skips.pop()
        for block in self.up:
            y = block(y, skips.pop())
        return self.head(y)
