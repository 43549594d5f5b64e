"""DeepLabV3+ (Chen et al., ECCV 2018) and DeepLabV3 in the VainF/DeepLabV3Plus-Pytorch state-dict layout.

Atrous backbone (MobileNetV2 or ResNet-50/101) at output stride 16 or 8, ASPP with an
image-pooling branch, and one of VainF's two heads. The module names follow VainF's
(``network/modeling.py``, ``network/_deeplab.py``) so its released checkpoints load with
``strict=True``:

    backbone.low_level_features.{0..3}.* / backbone.high_level_features.{4..17}.*   (MobileNetV2)
    backbone.conv1 / bn1 / layer1..layer4                                          (ResNet)

DeepLabV3+ head (``DeepLabHeadV3Plus``, ``head="v3plus"``):

    classifier.project.{0,1}        1x1 conv to 48 channels on the low-level feature
    classifier.aspp.convs.{0..4}    1x1, three atrous 3x3, image pooling (conv at .1)
    classifier.aspp.project.{0,1}   1x1 conv 5*256 -> 256 (+ ReLU, Dropout(0.1))
    classifier.classifier.{0,1,3}   3x3 conv 304 -> 256, BN, 1x1 conv to the classes

DeepLabV3 head (``DeepLabHead``, ``head="v3"``), at the output stride, no decoder:

    classifier.classifier.0.convs.{0..4} / .0.project.{0,1}   ASPP as above
    classifier.classifier.{1,2,4}   3x3 conv 256 -> 256, BN, 1x1 conv to the classes

VainF's ``--separable_conv`` (``convert_to_separable_conv`` on the head) replaces every head
convolution with a kernel above 1 by a depthwise then a pointwise conv, both without bias:
``<conv>.body.0.weight`` (C_in, 1, k, k) and ``<conv>.body.1.weight`` (C_out, C_in, 1, 1)
(``separable=True``).

Two details matter for numerical faithfulness: VainF's MobileNetV2 pads each inverted
residual's *input* explicitly ("fixed padding", before the 1x1 expansion) and its first
3x3 stride-2 convolution has no padding at all. Both are reproduced here.

Input (N, 3, H, W) float32, RGB normalised with the ImageNet mean/std; output
``{"out": (N, num_classes, H, W)}`` logits, bilinearly upsampled to the input size
(``align_corners=False``), like torchvision's segmentation models.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from segstream.stream.errors import ConfigError

#: ASPP dilation rates per output stride (the paper's and VainF's).
ASPP_RATES = {16: (6, 12, 18), 8: (12, 24, 36)}


@dataclass(frozen=True)
class DeepLabV3PlusConfig:
    """Attributes:
    backbone: "mobilenetv2", "resnet50" or "resnet101".
    num_classes: output channels (19 for Cityscapes train ids).
    output_stride: 16 (VainF's released checkpoints) or 8 (finer, ~3x the compute).
    width_mult: MobileNetV2 width multiplier (1.0 for the published layout).
    aspp_channels: channels of every ASPP branch and of the decoder (256 published).
    low_level_out: channels the low-level feature is projected to (48 published).
    head: "v3plus" (VainF's DeepLabHeadV3Plus, decoder at stride 4) or "v3" (its
        DeepLabHead: ASPP, 3x3 conv, 1x1 conv at the output stride).
    separable: the head's convolutions with a kernel above 1 are depthwise + pointwise
        (VainF's ``convert_to_separable_conv``; none of its released files use it).
    """

    backbone: str = "mobilenetv2"
    num_classes: int = 19
    output_stride: int = 16
    width_mult: float = 1.0
    aspp_channels: int = 256
    low_level_out: int = 48
    head: str = "v3plus"
    separable: bool = False

    def __post_init__(self) -> None:
        if self.backbone not in ("mobilenetv2", "resnet50", "resnet101"):
            raise ConfigError(f"DeepLabV3+ backbone must be mobilenetv2, resnet50 or resnet101, got {self.backbone!r}")
        if self.output_stride not in ASPP_RATES:
            raise ConfigError(f"DeepLabV3+ output_stride must be 8 or 16, got {self.output_stride}")
        if self.num_classes < 1 or self.aspp_channels < 1 or self.low_level_out < 1:
            raise ConfigError("DeepLabV3+ num_classes, aspp_channels and low_level_out must be >= 1")
        if not 0 < self.width_mult <= 2:
            raise ConfigError(f"DeepLabV3+ width_mult must be in (0, 2], got {self.width_mult}")
        if self.backbone != "mobilenetv2" and self.width_mult != 1.0:
            raise ConfigError("DeepLabV3+ width_mult applies to the mobilenetv2 backbone only")
        if self.head not in ("v3plus", "v3"):
            raise ConfigError(f"DeepLab head must be v3plus or v3, got {self.head!r}")


# --- MobileNetV2 with VainF's explicit padding -------------------------------------------------


def _make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class ConvBNReLU6(nn.Sequential):
    """Conv (no padding: callers pad) -> BN -> ReLU6; keys ``0.weight``, ``1.*``."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, stride: int = 1, dilation: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(cin, cout, kernel_size, stride, 0, dilation=dilation, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


def _same_padding(kernel_size: int, dilation: int) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) zero padding that keeps the size of a stride-1 dilated conv."""
    total = kernel_size + (kernel_size - 1) * (dilation - 1) - 1
    beg = total // 2
    return (beg, total - beg, beg, total - beg)


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise 3x3 (dilated) -> project (1x1), residual when shapes allow.

    The input is zero-padded once, before the expansion, as VainF does; keys ``conv.*``.
    """

    def __init__(self, cin: int, cout: int, stride: int, dilation: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(cin * expand_ratio))
        self.use_residual = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(cin, hidden, kernel_size=1))
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, dilation=dilation, groups=hidden),
            nn.Conv2d(hidden, cout, 1, 1, 0, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.padding = _same_padding(3, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(F.pad(x, self.padding))
        return x + y if self.use_residual else y


#: t (expansion), c (channels), n (repeats), s (first stride): MobileNetV2's table.
_MOBILENETV2_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class MobileNetV2Backbone(nn.Module):
    """MobileNetV2 features split as VainF does: ``low_level_features`` = blocks 0-3 (stride 4,
    24 channels at width 1) and ``high_level_features`` = blocks 4-17, keeping the names 4..17
    (320 channels at width 1).
    The final 1x1 conv to 1280 channels and the ImageNet classifier are not part of it.

    Once the running stride reaches ``output_stride``, strides become dilations.
    """

    def __init__(self, output_stride: int = 16, width_mult: float = 1.0) -> None:
        super().__init__()
        cin = _make_divisible(32 * width_mult)
        blocks: list[nn.Module] = [ConvBNReLU6(3, cin, stride=2)]
        stride_now, dilation = 2, 1
        for t, c, n, s in _MOBILENETV2_SETTING:
            previous_dilation = dilation
            if stride_now == output_stride:
                stride, dilation = 1, dilation * s
            else:
                stride, stride_now = s, stride_now * s
            cout = int(c * width_mult)  # VainF rounds block widths down, not to multiples of 8
            for i in range(n):
                if i == 0:
                    blocks.append(InvertedResidual(cin, cout, stride, previous_dilation, t))
                else:
                    blocks.append(InvertedResidual(cin, cout, 1, dilation, t))
                cin = cout
        # VainF slices ``features[4:-1]``; a slice of an nn.Sequential keeps its children's
        # names, so its files hold high_level_features.4 ... .17 (block 18, the 1x1 conv to
        # 1280 channels, is dropped).
        self.low_level_features = nn.Sequential(*blocks[:4])
        self.high_level_features = nn.Sequential(OrderedDict((str(i), b) for i, b in enumerate(blocks) if i >= 4))
        self.low_level_channels = int(24 * width_mult)
        self.out_channels = cin

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        low = self.low_level_features(x)
        return {"low_level": low, "out": self.high_level_features(low)}


class ResNetBackbone(nn.Module):
    """torchvision's ResNet-50/101 up to ``layer4`` (no pooling, no fc), dilated for the output
    stride: OS16 dilates layer4, OS8 dilates layer3 and layer4. Keys ``conv1``, ``bn1``,
    ``layer1`` ... ``layer4`` as in torchvision and VainF."""

    def __init__(self, depth: int, output_stride: int = 16) -> None:
        super().__init__()
        from torchvision.models import resnet50, resnet101

        dilate = [False, False, True] if output_stride == 16 else [False, True, True]
        net = {50: resnet50, 101: resnet101}[depth](weights=None, replace_stride_with_dilation=dilate)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.low_level_channels = 256
        self.out_channels = 2048

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        low = self.layer1(x)
        return {"low_level": low, "out": self.layer4(self.layer3(self.layer2(low)))}


# --- ASPP and the V3+ head --------------------------------------------------------------------


def _conv_bn_relu(cin: int, cout: int, kernel_size: int = 1, dilation: int = 1) -> list[nn.Module]:
    pad = 0 if kernel_size == 1 else dilation
    return [
        nn.Conv2d(cin, cout, kernel_size, padding=pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class ASPPPooling(nn.Sequential):
    """Image-level branch: global average -> 1x1 conv -> BN -> ReLU -> broadcast back."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(1), *_conv_bn_relu(cin, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        return F.interpolate(super().forward(x), size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1, three atrous 3x3 at ``rates``, image pooling;
    concatenated (5 * cout) and projected to ``cout`` with Dropout(0.1)."""

    def __init__(self, cin: int, rates: tuple[int, int, int], cout: int = 256) -> None:
        super().__init__()
        branches: list[nn.Module] = [nn.Sequential(*_conv_bn_relu(cin, cout))]
        branches += [nn.Sequential(*_conv_bn_relu(cin, cout, 3, r)) for r in rates]
        branches.append(ASPPPooling(cin, cout))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(*_conv_bn_relu(5 * cout, cout), nn.Dropout(0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([b(x) for b in self.convs], dim=1))


class DeepLabV3PlusHead(nn.Module):
    """Decoder: ASPP(out) upsampled to the low-level size, concatenated with the projected
    low-level feature, 3x3 conv, 1x1 conv to the classes. Output at stride 4."""

    def __init__(
        self,
        in_channels: int,
        low_level_channels: int,
        num_classes: int,
        rates,
        aspp_channels: int = 256,
        low_level_out: int = 48,
    ) -> None:
        super().__init__()
        self.project = nn.Sequential(*_conv_bn_relu(low_level_channels, low_level_out))
        self.aspp = ASPP(in_channels, rates, aspp_channels)
        self.classifier = nn.Sequential(
            nn.Conv2d(low_level_out + aspp_channels, aspp_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(aspp_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(aspp_channels, num_classes, 1),
        )

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        low = self.project(features["low_level"])
        high = F.interpolate(self.aspp(features["out"]), size=low.shape[2:], mode="bilinear", align_corners=False)
        return self.classifier(torch.cat([low, high], dim=1))


class DeepLabV3Head(nn.Module):
    """VainF's DeepLabHead: ASPP, 3x3 conv, BN, ReLU, 1x1 conv to the classes, at the output
    stride (no decoder). Keys ``classifier.{0 (ASPP), 1, 2, 4}``."""

    def __init__(self, in_channels: int, num_classes: int, rates, aspp_channels: int = 256) -> None:
        super().__init__()
        self.classifier = nn.Sequential(
            ASPP(in_channels, rates, aspp_channels),
            nn.Conv2d(aspp_channels, aspp_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(aspp_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(aspp_channels, num_classes, 1),
        )

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.classifier(features["out"])


class SeparableConv2d(nn.Module):
    """Depthwise k x k (same stride, padding and dilation as the conv it replaces) then
    pointwise 1x1, both without bias, as VainF's AtrousSeparableConvolution: keys
    ``body.0.weight`` (C_in, 1, k, k) and ``body.1.weight`` (C_out, C_in, 1, 1)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        cin, cout = conv.in_channels, conv.out_channels
        self.body = nn.Sequential(
            nn.Conv2d(cin, cin, conv.kernel_size, conv.stride, conv.padding, conv.dilation, groups=cin, bias=False),
            nn.Conv2d(cin, cout, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def make_separable(module: nn.Module) -> None:
    """Replaces, in place, every nn.Conv2d with a kernel above 1 under ``module`` by a
    SeparableConv2d (VainF's ``--separable_conv``; its head's such convs have no bias)."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Conv2d) and child.kernel_size[0] > 1:
            setattr(module, name, SeparableConv2d(child))
        else:
            make_separable(child)


class DeepLabV3Plus(nn.Module):
    """(N, 3, H, W) -> {"out": (N, num_classes, H, W)} logits. See the module docstring.

    ``config.head`` picks VainF's DeepLabV3+ head or its DeepLabV3 head; the backbone and the
    module names are the same for both.
    """

    def __init__(self, config: DeepLabV3PlusConfig) -> None:
        super().__init__()
        self.config = config
        if config.backbone == "mobilenetv2":
            self.backbone = MobileNetV2Backbone(config.output_stride, config.width_mult)
        else:
            self.backbone = ResNetBackbone(int(config.backbone[6:]), config.output_stride)
        rates = ASPP_RATES[config.output_stride]
        if config.head == "v3plus":
            self.classifier = DeepLabV3PlusHead(
                self.backbone.out_channels,
                self.backbone.low_level_channels,
                config.num_classes,
                rates,
                config.aspp_channels,
                config.low_level_out,
            )
        else:
            self.classifier = DeepLabV3Head(self.backbone.out_channels, config.num_classes, rates, config.aspp_channels)
        if config.separable:
            make_separable(self.classifier)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        size = x.shape[-2:]
        logits = self.classifier(self.backbone(x))
        return OrderedDict(out=F.interpolate(logits, size=size, mode="bilinear", align_corners=False))
