"""FCN-32s/16s/8s (Long, Shelhamer and Darrell, 2015): learned upsampling by transposed
convolutions initialised to bilinear interpolation, and skip fusion from the stride-16 and
stride-8 features through 1x1 score layers.

torchvision's ``fcn_resnet50`` (in the zoo) is a different model under the same name: a dilated
backbone at stride 8 with one bilinear upsampling at the end. These are the paper's nets:

- ``vgg16``: the paper's layout (Caffe's ``voc-fcn*``, as in wkentaro/pytorch-fcn): conv1_1
  padded by 100, ceil-mode pooling, fc6 as a 7x7 conv and fc7 as a 1x1 conv (4096 channels,
  dropout), transposed convolutions without padding, and the crops at the published offsets
  (32s: 19; 16s: 5 and 27; 8s: 5, 9 and 31) that align every map with the input.
- ``resnet18``: torchvision's ResNet-18 (stride 8 = layer2, 16 = layer3, 32 = layer4) for the
  CPU. Its convolutions are padded, so each map is ``ceil(H / stride)``; the transposed
  convolutions are padded by ``stride / 2`` (exactly ``stride x`` larger) and the upsampled map
  is cropped at offset 0 to the finer one (or the input).

Initialisation as in the paper: score layers zero, every upsampling bilinear; the intermediate
ones (``upscore2``, ``upscore_pool4``) are learned, the final one is fixed. Any input size
works; forward returns ``{"out": (N, C, H, W) logits}`` like torchvision's models.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

BACKBONES = ("vgg16", "resnet18")
VARIANTS = ("32s", "16s", "8s")


@dataclass(frozen=True)
class FCNConfig:
    """Attributes:
    backbone: "vgg16" (the paper's) or "resnet18" (light, for the CPU).
    variant: "32s", "16s" or "8s": which skips are fused.
    num_classes: output channels.
    """

    backbone: str = "vgg16"
    variant: str = "8s"
    num_classes: int = 21

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}, got {self.backbone!r}")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")


def bilinear_kernel(channels: int, size: int) -> torch.Tensor:
    """(channels, channels, size, size) float32 weights that make a ConvTranspose2d with
    ``stride = size // 2`` upsample each channel bilinearly (and mix no channels)."""
    factor = (size + 1) // 2
    centre = factor - 1 if size % 2 == 1 else factor - 0.5
    og = torch.arange(size, dtype=torch.float32)
    filt1d = 1 - (og - centre).abs() / factor
    weight = torch.zeros(channels, channels, size, size)
    weight[range(channels), range(channels)] = filt1d[:, None] * filt1d[None, :]
    return weight


def _upsampling(channels: int, stride: int, padded: bool, learned: bool) -> nn.ConvTranspose2d:
    up = nn.ConvTranspose2d(
        channels, channels, kernel_size=2 * stride, stride=stride, padding=stride // 2 if padded else 0, bias=False
    )
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(channels, 2 * stride))
    up.weight.requires_grad_(learned)
    return up


def _crop(x: torch.Tensor, offset: int, size_hw) -> torch.Tensor:
    return x[:, :, offset : offset + size_hw[0], offset : offset + size_hw[1]]


class VGG16Taps(nn.Module):
    """The paper's VGG16: torchvision's ``vgg16().features`` (same keys, ``features.N.*``) with
    conv1_1 padded by 100 and ceil-mode pools, then fc6 (7x7, 4096) and fc7 (1x1, 4096).

    forward: (N, 3, H, W) -> {"pool3": (N, 256, .), "pool4": (N, 512, .), "fr": (N, 4096, .)}.
    """

    padded_input = True
    channels = {"pool3": 256, "pool4": 512, "fr": 4096}
    #: Caffe's crop offsets: score_pool4 (into upscore2), score_pool3 (into upscore_pool4), and
    #: the final crop of each variant.
    offsets = {"pool4": 5, "pool3": 9, "32s": 19, "16s": 27, "8s": 31}

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import vgg16

        features = vgg16(weights=None).features
        features[0].padding = (100, 100)
        for m in features:
            if isinstance(m, nn.MaxPool2d):
                m.ceil_mode = True
        self.features = features
        self.fc6 = nn.Conv2d(512, 4096, 7)
        self.fc7 = nn.Conv2d(4096, 4096, 1)
        self.drop = nn.Dropout2d(0.5)
        # indices of pool3 / pool4 / pool5 in torchvision's vgg16.features
        self._taps = {16: "pool3", 23: "pool4"}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self._taps:
                out[self._taps[i]] = x
        x = self.drop(torch.relu(self.fc6(x)))
        out["fr"] = self.drop(torch.relu(self.fc7(x)))
        return out


class ResNet18Taps(nn.Module):
    """torchvision's ResNet-18 without its classifier (same keys: ``conv1``, ``bn1``, ``layer1..4``).

    forward: (N, 3, H, W) -> {"pool3": layer2 (N, 128, H/8), "pool4": layer3 (N, 256, H/16),
    "fr": layer4 (N, 512, H/32)}, sizes rounded up.
    """

    padded_input = False
    channels = {"pool3": 128, "pool4": 256, "fr": 512}
    offsets = {"pool4": 0, "pool3": 0, "32s": 0, "16s": 0, "8s": 0}

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import resnet18

        net = resnet18(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x)))))
        pool3 = self.layer2(x)
        pool4 = self.layer3(pool3)
        return {"pool3": pool3, "pool4": pool4, "fr": self.layer4(pool4)}


_BACKBONES = {"vgg16": VGG16Taps, "resnet18": ResNet18Taps}


class FCN(nn.Module):
    """FCN-32s, -16s or -8s on a backbone; layer names are the paper's.

    32s: score_fr -> upscore (x32). 16s: score_fr -> upscore2 (x2) + score_pool4 -> upscore16.
    8s: ... + score_pool4 -> upscore_pool4 (x2) + score_pool3 -> upscore8.
    """

    def __init__(self, config: FCNConfig = FCNConfig()) -> None:
        super().__init__()
        self.config = config
        c = config.num_classes
        self.backbone = _BACKBONES[config.backbone]()
        ch = self.backbone.channels
        pad = not self.backbone.padded_input
        self.score_fr = nn.Conv2d(ch["fr"], c, 1)
        if config.variant == "32s":
            self.upscore = _upsampling(c, 32, pad, learned=False)
        else:
            self.upscore2 = _upsampling(c, 2, pad, learned=True)
            self.score_pool4 = nn.Conv2d(ch["pool4"], c, 1)
        if config.variant == "16s":
            self.upscore16 = _upsampling(c, 16, pad, learned=False)
        if config.variant == "8s":
            self.upscore_pool4 = _upsampling(c, 2, pad, learned=True)
            self.score_pool3 = nn.Conv2d(ch["pool3"], c, 1)
            self.upscore8 = _upsampling(c, 8, pad, learned=False)
        for name in ("score_fr", "score_pool4", "score_pool3"):
            if hasattr(self, name):
                nn.init.zeros_(getattr(self, name).weight)
                nn.init.zeros_(getattr(self, name).bias)

    def _fuse(self, up: torch.Tensor, skip: torch.Tensor, name: str) -> torch.Tensor:
        """up + skip at one stride. Padded VGG: the skip is larger, cropped at the paper's
        offset to the upsampled size; padded backbones: the upsampled map is the larger one."""
        if self.backbone.padded_input:
            return up + _crop(skip, self.backbone.offsets[name], up.shape[-2:])
        return _crop(up, 0, skip.shape[-2:]) + skip

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.backbone(x)
        h = self.score_fr(feats["fr"])
        variant = self.config.variant
        if variant == "32s":
            h = self.upscore(h)
        else:
            h = self._fuse(self.upscore2(h), self.score_pool4(feats["pool4"]), "pool4")
            if variant == "16s":
                h = self.upscore16(h)
            else:
                h = self._fuse(self.upscore_pool4(h), self.score_pool3(feats["pool3"]), "pool3")
                h = self.upscore8(h)
        return {"out": _crop(h, self.backbone.offsets[variant], x.shape[-2:])}
