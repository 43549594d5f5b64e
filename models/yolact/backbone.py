"""YOLACT backbones with the official state-dict layouts.

Every backbone returns the list of its stage outputs; the configuration's ``selected_layers``
pick C3, C4 and C5 from it. Key names:

- ResNet: ``conv1``, ``bn1``, ``layers.{0..3}.{block}.{conv1,bn1,conv2,bn2,conv3,bn3,downsample}``
  (torchvision's Bottleneck has exactly the official block layout; its ``layerN`` become
  ``layers.N-1``).
- DarkNet53: ``_preconv.{0,1}``, ``layers.{i}.0.{0,1}`` (stride-2 conv + BN), then blocks
  ``layers.{i}.{b}.conv{1,2}.{0,1}``, as the official ``DarkNetBackbone``.
- MobileNetV2 (YolactEdge): ``layers.0`` stem, ``layers.1..7`` the inverted-residual stages
  (``layers.{stage}.{block}.conv.*``, torchvision's block layout), ``layers.8`` the 1x1 conv.
- MobileNetV3-Large: torchvision's ``features.*`` (so torchvision ImageNet weights load as they are).
- Tiny: ``layers.{i}`` of conv-BN-ReLU pairs; for tests and the embedded demo model.
"""

from __future__ import annotations

import torch
from torch import nn


class ResNetBackbone(nn.Module):
    """ResNet v1.5 (stride on the 3x3 conv) with the official ``layers`` list.

    Args:
        depth: 50 or 101.

    Attributes:
        channels: output channels of ``layers[0..3]`` (256, 512, 1024, 2048).
    """

    def __init__(self, depth: int) -> None:
        super().__init__()
        import torchvision

        if depth not in (50, 101):
            raise ValueError(f"ResNet depth must be 50 or 101, got {depth}")
        tv = getattr(torchvision.models, f"resnet{depth}")(weights=None)
        # ``layers`` first: the official class registers it before the stem, so state dicts list
        # their keys in the same order.
        self.layers = nn.ModuleList([tv.layer1, tv.layer2, tv.layer3, tv.layer4])
        self.conv1, self.bn1, self.relu, self.maxpool = tv.conv1, tv.bn1, tv.relu, tv.maxpool
        self.channels = [256, 512, 1024, 2048]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) -> stage outputs at strides 4, 8, 16, 32."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for layer in self.layers:
            x = layer(x)
            outs.append(x)
        return outs


def _darknet_conv(cin: int, cout: int, kernel: int = 1, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(0.1, inplace=True),
    )


class DarkNetBlock(nn.Module):
    """1x1 to half the channels, 3x3 back, residual add."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = _darknet_conv(channels, channels // 2, 1)
        self.conv2 = _darknet_conv(channels // 2, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x)) + x


class DarkNetBackbone(nn.Module):
    """DarkNet-53 as the official ``DarkNetBackbone([1, 2, 8, 8, 4])``: outputs 64..1024 channels
    at strides 2, 4, 8, 16, 32."""

    def __init__(self, blocks=(1, 2, 8, 8, 4)) -> None:
        super().__init__()
        self._preconv = _darknet_conv(3, 32, 3)
        self.layers = nn.ModuleList()
        self.channels = []
        cin = 32
        for i, n in enumerate(blocks):
            cout = 64 * 2**i
            self.layers.append(
                nn.Sequential(_darknet_conv(cin, cout, 3, stride=2), *[DarkNetBlock(cout) for _ in range(n)])
            )
            self.channels.append(cout)
            cin = cout

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self._preconv(x)
        outs = []
        for layer in self.layers:
            x = layer(x)
            outs.append(x)
        return outs


#: MobileNetV2's stages (t expansion, c channels, n blocks, s stride), YolactEdge's ``mobilenetv2_arch``.
MOBILENETV2_STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class MobileNetV2Backbone(nn.Module):
    """MobileNetV2 (width 1.0) grouped by stage, as YolactEdge's ``MobileNetV2Backbone``.

    ``layers.0`` is the stride-2 3x3 conv-BN-ReLU6 stem (32 channels), ``layers.1..7`` one
    ``Sequential`` of inverted-residual blocks per row of ``MOBILENETV2_STAGES`` (torchvision's
    block, whose ``conv.*`` layout is the official one), ``layers.8`` the 1x1 conv-BN-ReLU6 to 1280
    channels. Every layer's output is returned; at 550 px the strides are 2, 2, 4, 8, 16, 16, 32,
    32, 32 (275, 275, 138, 69, 35, 35, 18, 18, 18 px; each 3x3 stride-2 conv gives ceil(n / 2)).

    Attributes:
        channels: output channels per layer (32, 16, 24, 32, 64, 96, 160, 320, 1280).
    """

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models.mobilenetv2 import InvertedResidual
        from torchvision.ops.misc import Conv2dNormActivation

        self.layers = nn.ModuleList([Conv2dNormActivation(3, 32, stride=2, activation_layer=nn.ReLU6)])
        self.channels = [32]
        cin = 32
        for t, c, n, s in MOBILENETV2_STAGES:
            blocks = []
            for i in range(n):
                blocks.append(InvertedResidual(cin, c, s if i == 0 else 1, expand_ratio=t))
                cin = c
            self.layers.append(nn.Sequential(*blocks))
            self.channels.append(c)
        self.layers.append(Conv2dNormActivation(cin, 1280, kernel_size=1, activation_layer=nn.ReLU6))
        self.channels.append(1280)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # torchvision's MobileNetV2 initialisation (for training without ImageNet weights).
                nn.init.kaiming_normal_(m.weight, mode="fan_out")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for layer in self.layers:
            x = layer(x)
            outs.append(x)
        return outs


class MobileNetV3Backbone(nn.Module):
    """torchvision MobileNetV3-Large ``features``; every block's output is returned (indices 6,
    12 and 16 are the stride 8, 16 and 32 taps with 40, 112 and 960 channels)."""

    def __init__(self) -> None:
        super().__init__()
        import torchvision

        self.features = torchvision.models.mobilenet_v3_large(weights=None).features
        self.channels = [_out_channels(m) for m in self.features]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for block in self.features:
            x = block(x)
            outs.append(x)
        return outs


def _out_channels(module: nn.Module) -> int:
    if hasattr(module, "out_channels"):
        return int(module.out_channels)
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    return int(convs[-1].out_channels)


class TinyBackbone(nn.Module):
    """Five stride-2 stages of two conv-BN-ReLU each (strides 2..32), for tests and demos."""

    def __init__(self, widths=(16, 24, 32, 48, 64)) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        cin = 3
        for w in widths:
            self.layers.append(
                nn.Sequential(
                    nn.Conv2d(cin, w, 3, stride=2, padding=1, bias=False),
                    nn.BatchNorm2d(w),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(w, w, 3, padding=1, bias=False),
                    nn.BatchNorm2d(w),
                    nn.ReLU(inplace=True),
                )
            )
            cin = w
        self.channels = list(widths)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # He init keeps activations from fading through the stages (there are no
                # pretrained weights for this backbone; torchvision's ResNets do the same).
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for layer in self.layers:
            x = layer(x)
            outs.append(x)
        return outs


def build_backbone(kind: str, tiny_widths=(16, 24, 32, 48, 64)) -> nn.Module:
    """The backbone module for a configuration's ``backbone`` name."""
    if kind == "resnet101":
        return ResNetBackbone(101)
    if kind == "resnet50":
        return ResNetBackbone(50)
    if kind == "darknet53":
        return DarkNetBackbone()
    if kind == "mobilenetv2":
        return MobileNetV2Backbone()
    if kind == "mobilenetv3_large":
        return MobileNetV3Backbone()
    if kind == "efficientnet_lite0":
        from segstream.models.yolact.lite import EfficientNetLiteBackbone

        return EfficientNetLiteBackbone()
    if kind == "tiny":
        return TinyBackbone(tiny_widths)
    raise ValueError(
        f"unknown backbone {kind!r}; expected resnet101, resnet50, darknet53, mobilenetv2, mobilenetv3_large or tiny"
    )
