"""Which family of code handles each model name. Kept import-free so the CLI stays fast."""

from __future__ import annotations

import difflib

from segstream.stream.errors import ConfigError

#: model name -> family package under models/ (its ``commands`` module does predict/eval/train/export).
MODEL_FAMILIES: dict[str, str] = {
    # instances
    "yolact_base": "yolact",
    "yolact_resnet50": "yolact",
    "yolact_darknet53": "yolact",
    "yolact_im700": "yolact",
    "yolact_mobilenetv3": "yolact",
    "yolact_tiny": "yolact",
    "yolact_edge": "yolact",  # YolactEdge: YOLACT with a split FPN and per-class standard NMS
    "yolact_edge_resnet50": "yolact",
    "yolact_edge_mobilenetv2": "yolact",
    "yolact_edge_vid": "yolact",  # YouTube-VIS video models (keyframe path; flow net weights kept)
    "yolact_edge_vid_resnet50": "yolact",
    "yolact_edge_vid_minimal": "yolact",
    "yolact_edge_youtubevis": "yolact",
    "yolact_edge_youtubevis_resnet50": "yolact",
    "yolact_lite0": "yolact",  # YOLACT on EfficientNet-Lite0 (the CamVid road instance model)
    "maskrcnn_resnet50_fpn": "maskrcnn",
    "maskrcnn_resnet50_fpn_v2": "maskrcnn",
    "maskrcnn_tiny": "maskrcnn",
    # road semantics
    "deeplabv3_mobilenet_v3_large": "semantic",
    "deeplabv3_resnet50": "semantic",
    "deeplabv3_resnet101": "semantic",
    "lraspp_mobilenet_v3_large": "semantic",
    "fcn_resnet50": "semantic",
    "fcn_resnet101": "semantic",
    "deeplabv3plus_mobilenet": "semantic",
    "deeplabv3plus_resnet50": "semantic",
    "deeplabv3plus_resnet101": "semantic",
    "deeplabv3_mobilenet": "semantic",  # VainF's DeepLabV3 on MobileNetV2
    "deeplab_tiny": "semantic",
    "deeplabv3plus_lite0": "semantic",  # DeepLabV3+ on EfficientNet-Lite0 (the CamVid road model)
    # U-Net and the paper's FCNs (transposed-convolution decoding), through the semantic family
    **{f"{n}{b}": "semantic" for n in ("unet", "unet_small", "unet_tiny") for b in ("", "_binary")},
    **{f"fcn{v}_{bb}": "semantic" for v in ("32s", "16s", "8s") for bb in ("vgg16", "resnet18")},
}


def family_of(model: str) -> str:
    """Returns the family package name for a model, or raises ConfigError with a suggestion."""
    try:
        return MODEL_FAMILIES[model]
    except KeyError:
        close = difflib.get_close_matches(model, MODEL_FAMILIES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown model {model!r}{hint} (known: {', '.join(sorted(MODEL_FAMILIES))})") from None
