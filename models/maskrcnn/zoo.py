"""Mask R-CNN models by name, the checkpoint loader, and the graph that is exported.

- ``maskrcnn_resnet50_fpn`` and ``maskrcnn_resnet50_fpn_v2``: torchvision's builders used as
  they are (``weights=None, weights_backbone=None``): the published architectures of He et al.
  (ICCV 2017) with a ResNet-50-FPN backbone, and the improved recipe of Li et al. ("Benchmarking
  detection transfer learning with vision transformers", 2021: BatchNorm in FPN and heads, a
  4-conv + 1-fc box head, a 2-conv RPN head). torchvision's released files load into them.
- ``maskrcnn_tiny``: the same ``torchvision.models.detection.MaskRCNN`` class (same transform,
  RPN, RoIAlign, box and mask heads, 28x28 masks) around a small 5-conv backbone with 16 FPN
  channels and small heads, at 128..224 px. Not a published model: for tests only.

Checkpoints are read with ``torch.load(..., weights_only=True)`` as a plain state dict
(torchvision's ``maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth``, ``maskrcnn_resnet50_fpn_v2_coco-
73cbd019.pth``) or a dict holding one under ``model``, ``state_dict`` or ``model_state`` (the
files ``save_maskrcnn`` writes add a ``segstream`` dict with the model name and class names).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from segstream.models.checkpoint_io import read_checkpoint, unwrap_state_dict
from segstream.models.state_dict import mismatch_summary
from segstream.stream.errors import ConfigError, ModelError

#: torchvision's normalisation, on 0-255 values, RGB (GeneralizedRCNNTransform's defaults).
IMAGENET_MEAN_255 = (123.675, 116.28, 103.53)
IMAGENET_STD_255 = (58.395, 57.12, 57.375)

_LAYOUT = "torchvision MaskRCNN state dict (backbone.body.*, backbone.fpn.*, rpn.*, roi_heads.*)"
_CLASSIFIER_KEY = "roi_heads.box_predictor.cls_score.weight"


def coco_class_names() -> tuple[str, ...]:
    """torchvision's 90 COCO names (label 1..90 = COCO category id; some are "N/A"), without
    the background. Read from the weights enum's metadata: nothing is downloaded."""
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_Weights

    return tuple(MaskRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"][1:])


def _tiny_backbone():
    """Five stride-2 conv layers (8..32 channels; strides 4, 8, 16, 32 at layer1..4) + a
    16-channel FPN with the max-pool level, as torchvision's ``BackboneWithFPN`` builds it."""
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    def conv(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    body = nn.Sequential(
        OrderedDict(stem=conv(3, 8), layer1=conv(8, 8), layer2=conv(8, 16), layer3=conv(16, 24), layer4=conv(24, 32))
    )
    return BackboneWithFPN(
        body,
        {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"},
        [8, 16, 24, 32],
        16,
        extra_blocks=LastLevelMaxPool(),
    )


def _build_tiny(num_classes: int, **kwargs) -> nn.Module:
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

    backbone = _tiny_backbone()
    anchors = AnchorGenerator(((8,), (16,), (32,), (64,), (128,)), ((0.5, 1.0, 2.0),) * 5)
    settings = dict(
        min_size=128,
        max_size=224,
        rpn_pre_nms_top_n_test=200,
        rpn_post_nms_top_n_test=100,
        rpn_pre_nms_top_n_train=200,
        rpn_post_nms_top_n_train=100,
        box_batch_size_per_image=64,
    )
    settings.update(kwargs)
    return MaskRCNN(
        backbone,
        rpn_anchor_generator=anchors,
        box_head=TwoMLPHead(16 * 7 * 7, 64),
        box_predictor=FastRCNNPredictor(64, num_classes),
        mask_head=MaskRCNNHeads(16, (16, 16), 1),
        mask_predictor=MaskRCNNPredictor(16, 16, num_classes),
        **settings,
    )


def _torchvision_builder(name: str):
    def build(num_classes: int, **kwargs) -> nn.Module:
        from torchvision.models import detection

        return getattr(detection, name)(weights=None, weights_backbone=None, num_classes=num_classes, **kwargs)

    return build


#: model name -> builder(num_classes, **MaskRCNN keyword overrides).
BUILDERS = {
    "maskrcnn_resnet50_fpn": _torchvision_builder("maskrcnn_resnet50_fpn"),
    "maskrcnn_resnet50_fpn_v2": _torchvision_builder("maskrcnn_resnet50_fpn_v2"),
    "maskrcnn_tiny": _build_tiny,
}


def build_maskrcnn(name: str, num_classes: int = 91, **kwargs) -> nn.Module:
    """A randomly initialised model (seeded by the caller), eval mode. Never downloads.

    Args:
        name: a key of ``BUILDERS``.
        num_classes: including the background (91 for torchvision's COCO models).
        kwargs: ``MaskRCNN`` settings, e.g. ``min_size``, ``max_size``, ``box_score_thresh``.
    """
    if name not in BUILDERS:
        raise ConfigError(f"unknown Mask R-CNN model {name!r}; expected one of {', '.join(BUILDERS)}")
    if num_classes < 2:
        raise ConfigError(f"num_classes counts the background and must be >= 2, got {num_classes}")
    return BUILDERS[name](num_classes, **kwargs).eval()


@dataclass
class LoadedMaskRCNN:
    """A built model and what the runtime needs to know about it.

    Attributes:
        name: registry name. model: torchvision ``MaskRCNN`` in eval mode.
        class_names: foreground names; label k (1-based in torchvision) is ``class_names[k - 1]``.
    """

    name: str
    model: nn.Module
    class_names: tuple[str, ...]


def _default_names(num_classes: int) -> tuple[str, ...]:
    coco = coco_class_names()
    return coco if num_classes - 1 == len(coco) else tuple(f"class_{i}" for i in range(num_classes - 1))


def _read_state(path: str) -> tuple[dict, dict]:
    """(state dict, segstream info) from a checkpoint file, or a one-line ModelError."""
    obj = read_checkpoint(path, kind="a Mask R-CNN", expected=f"; expected a {_LAYOUT}")
    return unwrap_state_dict(obj, path, f"a {_LAYOUT}", keys=("model", "state_dict", "model_state"))


def load_maskrcnn(path: str | None, name: str, *, num_classes: int | None = None, **kwargs) -> LoadedMaskRCNN:
    """Builds ``name`` and loads ``path`` into it.

    Args:
        path: checkpoint, or None for random weights (seeded with 0, so an export and a later
            check see the same model).
        name: registry name.
        num_classes: with random weights, classes including the background (default 91); with a
            file, must equal the file's if given.
        kwargs: ``MaskRCNN`` settings (``min_size``, ``box_score_thresh``, ...).

    Raises:
        ModelError: unreadable file, another model's file (with what is missing or extra).
    """
    state, info = ({}, {}) if path is None else _read_state(path)
    if info.get("model") not in (None, name):
        raise ModelError(
            f"{path}: a segstream checkpoint of {info['model']!r}, not {name!r}; pass --model {info['model']}"
        )
    file_classes = None
    if state:
        w = state.get(_CLASSIFIER_KEY)
        if w is None or w.dim() != 2:
            raise ModelError(
                f"{path}: no {_CLASSIFIER_KEY} in it (first keys: {', '.join(list(state)[:3])}); "
                f"expected a {_LAYOUT} of {name}"
            )
        file_classes = int(w.shape[0])
        if num_classes is not None and num_classes != file_classes:
            raise ModelError(
                f"{path}: has {file_classes} classes (with background), {num_classes} asked for; drop --num-classes"
            )
    classes = file_classes or num_classes or 91
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_maskrcnn(name, classes, **kwargs)
    if state:
        own = model.state_dict()
        # torchvision's v1 file was saved from FrozenBatchNorm2d, which keeps no batch counter.
        mismatch = mismatch_summary(own, state, ignore_missing=lambda k: k.endswith("num_batches_tracked"))
        if mismatch:
            raise ModelError(f"{path}: does not fit {name}: {mismatch}; expected a {_LAYOUT} of {name}")
        model.load_state_dict(state, strict=False)
    names = tuple(str(n) for n in info.get("class_names") or ())
    if len(names) != classes - 1:
        names = _default_names(classes)
    return LoadedMaskRCNN(name=name, model=model.eval(), class_names=names)


def save_maskrcnn(loaded: LoadedMaskRCNN, path: str) -> str:
    """Writes ``{"model_state": ..., "segstream": {"model", "class_names"}}`` (tensors, strings
    only: loadable with ``weights_only=True``)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save(
        {
            "model_state": loaded.model.state_dict(),
            "segstream": {"model": loaded.name, "class_names": list(loaded.class_names)},
        },
        path,
    )
    return path


class MaskRCNNGraph(nn.Module):
    """What is exported: torchvision's ``MaskRCNN.forward`` without the transform's normalise,
    resize and paste steps, which the runtime does on numpy (``pipelines/tasks/maskrcnn.py``).

    Input ``image`` (1, 3, h, w) float32: the frame resized by the model's min/max size rule
    and normalised (RGB). Inside: zero padding to a multiple of 32 (torchvision's
    ``batch_images``), backbone + FPN, RPN, RoIAlign box head with per-class NMS, RoIAlign mask
    head. Outputs for N <= ``box_detections_per_img`` detections, in input pixels:
    ``boxes`` (N, 4) float32 x1 y1 x2 y2, ``labels`` (N,) int64 (1-based, 0 is background),
    ``scores`` (N,) float32, ``mask_probs`` (N, 28, 28) float32 sigmoid of each box's class mask.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.eval()

    def forward(self, image: torch.Tensor):
        from torchvision.models.detection.image_list import ImageList

        m = self.model
        size = image.shape[-2:]
        batched = m.transform.batch_images([image[0]], size_divisible=m.transform.size_divisible)
        images = ImageList(batched, [(size[0], size[1])])
        features = m.backbone(batched)
        proposals, _ = m.rpn(images, features)
        detections, _ = m.roi_heads(features, proposals, images.image_sizes)
        d = detections[0]
        return d["boxes"], d["labels"], d["scores"], d["masks"][:, 0]


def artifact_metadata(loaded: LoadedMaskRCNN, versions: dict | None = None):
    """The self-description of an export: classes, resize rule, mean/std, colour order, outputs."""
    from segstream.pipelines.tasks.maskrcnn import INPUT_NAME, OUTPUT_NAMES
    from segstream.stream.backends.base import ArtifactMetadata

    t = loaded.model.transform
    rh = loaded.model.roi_heads
    return ArtifactMetadata(
        model=loaded.name,
        task="instances",
        class_names=tuple(loaded.class_names),
        input_size_hw=None,
        mean=IMAGENET_MEAN_255,
        std=IMAGENET_STD_255,
        color_order="RGB",
        extra={
            "resize": {
                "min_size": int(t.min_size[-1]),
                "max_size": int(t.max_size),
                "size_divisible": int(t.size_divisible),
            },
            "input_name": INPUT_NAME,
            "output_names": list(OUTPUT_NAMES),
            "mask_size": 28,
            "mask_threshold": 0.5,
            "labels": "1-based (0 is background)",
            "box_score_thresh": float(rh.score_thresh),
            "box_nms_thresh": float(rh.nms_thresh),
            "detections_per_img": int(rh.detections_per_img),
        },
        versions=dict(versions or {"torch": torch.__version__}),
    )
