"""DeepLabV3+ on EfficientNet-Lite0, sized for two CPU cores: the road model trained on CamVid.

Architecture (Chen et al., ECCV 2018, with depthwise-separable ASPP and decoder as in the
paper's Xception variant, and narrower widths):

- backbone: ``EfficientNetLiteFeatures`` (ImageNet-initialised), atrous at output stride 16
  (or 8): the stride-4 feature (24 ch) and the last block (320 ch);
- ASPP: a 1x1 branch, three separable atrous 3x3 branches at rates (6, 12, 18) (x2 at OS8),
  image pooling; ``aspp_channels`` each, concatenated and projected to ``aspp_channels``;
- decoder: the ASPP output upsampled to stride 4 and concatenated with the low-level feature
  projected to ``low_level_out`` channels, two separable 3x3 convs of ``decoder_channels``,
  a 1x1 conv to the classes; logits bilinearly upsampled to the input size.

Keys: ``backbone.*`` (efficientnet_pytorch names, see efficientnet_lite.py), ``classifier.*``;
the final conv is ``classifier.classifier.weight``.

Input (N, 3, H, W) float32 RGB scaled as ``(x - 127) / 128`` with H, W multiples of 16 (of 8
at OS8; the runtime pads frames); output ``{"out": (N, num_classes, H, W)}`` logits.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from segstream.models.semantic.efficientnet_lite import EfficientNetLiteFeatures
from segstream.stream.errors import ConfigError

ASPP_RATES = {16: (6, 12, 18), 8: (12, 24, 36)}


@dataclass(frozen=True)
class DeepLabLiteConfig:
    """Attributes:
    num_classes: output channels (19: Cityscapes train ids).
    output_stride: 16 or 8.
    aspp_channels: width of every ASPP branch and of its projection.
    low_level_out: channels the stride-4 feature is projected to.
    decoder_channels: width of the decoder's two separable 3x3 convs.
    """

    num_classes: int = 19
    output_stride: int = 16
    aspp_channels: int = 128
    low_level_out: int = 32
    decoder_channels: int = 96

    def __post_init__(self) -> None:
        if self.output_stride not in ASPP_RATES:
            raise ConfigError(f"DeepLabV3+ Lite output_stride must be 8 or 16, got {self.output_stride}")
        if min(self.num_classes, self.aspp_channels, self.low_level_out, self.decoder_channels) < 1:
            raise ConfigError("DeepLabV3+ Lite channel counts and num_classes must be >= 1")


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SeparableConvBNReLU(nn.Sequential):
    """Depthwise 3x3 (dilated) -> BN -> ReLU -> pointwise 1x1 -> BN -> ReLU; keys ``0..5``."""

    def __init__(self, cin: int, cout: int, dilation: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cin, 3, padding=dilation, dilation=dilation, groups=cin, bias=False),
            nn.BatchNorm2d(cin),
            nn.ReLU(inplace=True),
            nn.Conv2d(cin, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class ImagePooling(nn.Module):
    """Global average -> 1x1 conv -> BN -> ReLU, broadcast back to the feature's size."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = _conv_bn_relu(cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x.mean(dim=(2, 3), keepdim=True))
        return y.expand(-1, -1, x.shape[2], x.shape[3])


class SeparableASPP(nn.Module):
    def __init__(self, cin: int, rates: tuple[int, int, int], cout: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            [_conv_bn_relu(cin, cout), *(SeparableConvBNReLU(cin, cout, r) for r in rates), ImagePooling(cin, cout)]
        )
        self.project = nn.Sequential(
            nn.Conv2d(5 * cout, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True), nn.Dropout(0.1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))


class LiteDecoder(nn.Module):
    def __init__(self, cfg: DeepLabLiteConfig, in_channels: int, low_level_channels: int) -> None:
        super().__init__()
        self.aspp = SeparableASPP(in_channels, ASPP_RATES[cfg.output_stride], cfg.aspp_channels)
        self.project = _conv_bn_relu(low_level_channels, cfg.low_level_out)
        self.fuse = nn.Sequential(
            SeparableConvBNReLU(cfg.aspp_channels + cfg.low_level_out, cfg.decoder_channels),
            SeparableConvBNReLU(cfg.decoder_channels, cfg.decoder_channels),
        )
        self.classifier = nn.Conv2d(cfg.decoder_channels, cfg.num_classes, 1)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        low = self.project(features["low_level"])
        high = F.interpolate(self.aspp(features["out"]), size=low.shape[2:], mode="bilinear", align_corners=False)
        return self.classifier(self.fuse(torch.cat([high, low], dim=1)))


class DeepLabV3PlusLite(nn.Module):
    """(N, 3, H, W) -> {"out": (N, num_classes, H, W)} logits. See the module docstring."""

    def __init__(self, config: DeepLabLiteConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = EfficientNetLiteFeatures(config.output_stride)
        self.classifier = LiteDecoder(config, self.backbone.out_channels, self.backbone.low_level_channels)
        for m in self.classifier.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        logits = self.classifier(self.backbone(x))
        return OrderedDict(out=F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False))
