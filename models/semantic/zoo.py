"""Semantic models by name: torchvision's segmentation builders used as they are, DeepLabV3+
and DeepLabV3 in the VainF layout, ``deeplab_tiny``, U-Net (``unet*``) and the paper's FCN-32s/16s/8s with
transposed-convolution decoding (``fcn*s_vgg16``, ``fcn*s_resnet18``); plus the checkpoint loader.

Checkpoints are read with ``torch.load(weights_only=True)`` and accepted in three layouts:
- a plain state dict (torchvision's released ``*.pth`` files);
- a dict with ``model_state`` (VainF's files, and the files ``segstream train`` writes, which
  add a ``segstream`` dict with the model name, classes and output stride);
- a dict with ``state_dict`` or ``model`` holding a state dict (common trainer layouts).
A ``module.`` prefix from DataParallel is removed. The number of classes is read from the
file's final classifier, so the same loader handles 21-class COCO/VOC files and 19-class
Cityscapes files.

``deeplabv3_resnet50`` / ``deeplabv3_resnet101`` name both torchvision's models and VainF's
DeepLabV3 (another head layout, ``classifier.classifier.*``, and output stride 16 or 8): the
file's keys say which one is built. Without a file they are torchvision's.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from segstream.models.checkpoint_io import read_checkpoint, unwrap_state_dict
from segstream.models.semantic.deeplab_lite import DeepLabLiteConfig, DeepLabV3PlusLite
from segstream.models.semantic.deeplabv3plus import DeepLabV3Plus, DeepLabV3PlusConfig
from segstream.models.semantic.efficientnet_lite import LITE_MEAN_255, LITE_STD_255
from segstream.models.semantic.fcn import FCN, FCNConfig
from segstream.models.state_dict import mismatch_summary
from segstream.models.unet.model import UNet, UNetConfig
from segstream.pipelines.tasks.road import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE_BGR, SizePolicy, default_palette_bgr
from segstream.stream.errors import ConfigError, ModelError

#: torchvision's 21 COCO-with-VOC-labels categories (its released weights).
VOC_CLASSES = (
    "__background__",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)

IMAGENET_MEAN_255 = (123.675, 116.28, 103.53)
IMAGENET_STD_255 = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class SemanticSpec:
    """How to build one named model and what its weights expect.

    Attributes:
        name: registry name.
        kind: "torchvision", "vainf" (VainF's DeepLabV3+ / DeepLabV3 layout), "unet" or "fcn".
        classifier_key: state-dict key of the final conv weight (num_classes = its dim 0).
        layout: one line naming the expected key layout, for error messages.
        has_aux: the architecture can carry torchvision's aux head (FCNHead on a middle layer).
        size_policy: how frames are resized for this model's published weights.
        default_classes: class names for a checkpoint with that many classes.
        num_classes: output channels of random weights when none are asked for.
        plus: VainF DeepLab settings (kind "vainf" only; ``plus.head`` is "v3plus" or "v3").
        unet / fcn: their settings (kinds "unet" / "fcn"; the class count is replaced).
        lite: DeepLabV3+ on EfficientNet-Lite0 settings (kind "lite", the CamVid road model).
        mean / std: per-channel RGB input scaling (0..255 pixels) the weights expect.
    """

    name: str
    kind: str
    classifier_key: str
    layout: str
    has_aux: bool = False
    size_policy: SizePolicy = field(default_factory=SizePolicy)
    default_classes: tuple[str, ...] = CITYSCAPES_CLASSES
    num_classes: int = 19
    plus: DeepLabV3PlusConfig | None = None
    unet: UNetConfig | None = None
    fcn: FCNConfig | None = None
    lite: DeepLabLiteConfig | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN_255
    std: tuple[float, float, float] = IMAGENET_STD_255


_TV_LAYOUT = "torchvision state dict: backbone.*, classifier.*{extra}, optional aux_classifier.*"
_PLUS_LAYOUT = (
    "VainF DeepLabV3+ state dict (plain or under 'model_state'): backbone.{bb}*, classifier.project.*, "
    "classifier.aspp.convs.*, classifier.classifier.3.weight"
)
_V3_LAYOUT = (
    "VainF DeepLabV3 state dict (plain or under 'model_state'): backbone.{bb}*, "
    "classifier.classifier.0.convs.* (ASPP), classifier.classifier.4.weight"
)

SPECS: dict[str, SemanticSpec] = {}


def _tv(name: str, classifier_key: str, has_aux: bool, extra: str = "", also: str = "") -> None:
    SPECS[name] = SemanticSpec(
        name=name,
        kind="torchvision",
        classifier_key=classifier_key,
        layout=_TV_LAYOUT.format(extra=extra) + also,
        has_aux=has_aux,
        size_policy=SizePolicy(kind="short_side", short_side=520),
        default_classes=VOC_CLASSES,
    )


def _vainf(name: str, backbone: str, head: str) -> SemanticSpec:
    prefix = "low_level_features.0-3/high_level_features.4-17." if backbone == "mobilenetv2" else "conv1/bn1/layer1-4."
    plus = head == "v3plus"
    return SemanticSpec(
        name=name,
        kind="vainf",
        classifier_key=f"classifier.classifier.{3 if plus else 4}.weight",
        layout=(_PLUS_LAYOUT if plus else _V3_LAYOUT).format(bb=prefix),
        size_policy=SizePolicy(kind="native"),
        plus=DeepLabV3PlusConfig(backbone=backbone, head=head),
    )


#: VainF's layout of the names torchvision's models also use; ``load_model`` picks it when the
#: file's keys are VainF's (``classifier.classifier.*``).
VAINF_ALTERNATIVES: dict[str, SemanticSpec] = {
    "deeplabv3_resnet50": _vainf("deeplabv3_resnet50", "resnet50", "v3"),
    "deeplabv3_resnet101": _vainf("deeplabv3_resnet101", "resnet101", "v3"),
}

_tv("deeplabv3_mobilenet_v3_large", "classifier.4.weight", True, " (classifier.0.convs = ASPP)")
for _name in ("deeplabv3_resnet50", "deeplabv3_resnet101"):
    _tv(
        _name,
        "classifier.4.weight",
        True,
        " (classifier.0.convs = ASPP)",
        also=f"; or a {VAINF_ALTERNATIVES[_name].layout}",
    )
_tv("fcn_resnet50", "classifier.4.weight", True)
_tv("fcn_resnet101", "classifier.4.weight", True)
_tv("lraspp_mobilenet_v3_large", "classifier.high_classifier.weight", False, " (classifier.cbr, low/high_classifier)")

for _name, _bb, _head in (
    ("deeplabv3plus_mobilenet", "mobilenetv2", "v3plus"),
    ("deeplabv3plus_resnet50", "resnet50", "v3plus"),
    ("deeplabv3plus_resnet101", "resnet101", "v3plus"),
    ("deeplabv3_mobilenet", "mobilenetv2", "v3"),
):
    SPECS[_name] = _vainf(_name, _bb, _head)
#: A DeepLabV3+ a few hundred kB large: tests, and the demo model trained on synthetic scenes.
SPECS["deeplab_tiny"] = SemanticSpec(
    name="deeplab_tiny",
    kind="vainf",
    classifier_key="classifier.classifier.3.weight",
    layout=_PLUS_LAYOUT.format(bb="low_level_features."),
    size_policy=SizePolicy(kind="native"),
    plus=DeepLabV3PlusConfig(backbone="mobilenetv2", width_mult=0.25, aspp_channels=32, low_level_out=8),
)
#: The road model: DeepLabV3+ on ImageNet EfficientNet-Lite0, trained on CamVid (Cityscapes train
#: ids out). Frames are resized to a short side of 360 px (CamVid's own 480x360 unchanged, 720p
#: to 640x360: objects at the scale it was trained at, and a third of 720p's cost), then padded
#: to a multiple of 16 (the stride-2 convolutions' TensorFlow padding is exact on even sizes).
SPECS["deeplabv3plus_lite0"] = SemanticSpec(
    name="deeplabv3plus_lite0",
    kind="lite",
    classifier_key="classifier.classifier.weight",
    layout="segstream DeepLabV3+ Lite0 state dict: backbone._conv_stem/_bn0/_blocks.0-15.*, classifier.aspp.*, "
    "classifier.project.*, classifier.fuse.*, classifier.classifier.weight",
    size_policy=SizePolicy(kind="short_side", short_side=360, pad_multiple=16),
    lite=DeepLabLiteConfig(),
    mean=LITE_MEAN_255,
    std=LITE_STD_255,
)

#: Two-class models (``*_binary``) for masks: class 0 background, 1 foreground, softmax + argmax
#: like every other model (train them with ``--layout binary`` on 0/255 or 0/1 mask PNGs).
BINARY_CLASSES = ("background", "foreground")
_UNET_LAYOUT = "segstream U-Net state dict: inc.*, down.N.*, up.N.up.*, up.N.conv.*, head.weight"
# U-Net halves the map depth times, so frames are padded (bottom/right, after normalisation:
# the mean colour) to a multiple of 2**depth and the logits cropped back.
for _name, _unet in (
    ("unet", UNetConfig(depth=4, width=64)),
    ("unet_small", UNetConfig(depth=4, width=16)),
    ("unet_tiny", UNetConfig(depth=3, width=8)),
):
    for _suffix, _classes in (("", CITYSCAPES_CLASSES), ("_binary", BINARY_CLASSES)):
        SPECS[_name + _suffix] = SemanticSpec(
            name=_name + _suffix,
            kind="unet",
            classifier_key="head.weight",
            layout=_UNET_LAYOUT,
            size_policy=SizePolicy(kind="native", pad_multiple=2**_unet.depth),
            default_classes=_classes,
            num_classes=len(_classes),
            unet=_unet,
        )

_FCN_LAYOUT = "segstream FCN-{v} state dict: backbone.{bb}*, score_fr.*, upscore* (transposed convs){skips}"
for _bb, _bb_keys in (("vgg16", "features.N.*, backbone.fc6.*, backbone.fc7."), ("resnet18", "layer1..4.")):
    for _v, _skips in (("32s", ""), ("16s", ", score_pool4.*"), ("8s", ", score_pool4.*, score_pool3.*")):
        SPECS[f"fcn{_v}_{_bb}"] = SemanticSpec(
            name=f"fcn{_v}_{_bb}",
            kind="fcn",
            classifier_key="score_fr.weight",
            layout=_FCN_LAYOUT.format(v=_v, bb=_bb_keys, skips=_skips),
            size_policy=SizePolicy(kind="native"),
            fcn=FCNConfig(backbone=_bb, variant=_v),
        )


def spec_of(name: str, layout: str | None = None) -> SemanticSpec:
    """The spec of ``name``; ``layout="vainf"``: VainF's layout of a name torchvision also uses
    (``deeplabv3_resnet50/101``), or the name's own spec where that is already VainF's."""
    try:
        spec = SPECS[name]
    except KeyError:
        raise ConfigError(f"unknown semantic model {name!r}; expected one of {', '.join(sorted(SPECS))}") from None
    if layout is None or (layout == "vainf" and spec.kind == "vainf"):
        return spec
    if layout == "vainf" and name in VAINF_ALTERNATIVES:
        return VAINF_ALTERNATIVES[name]
    raise ConfigError(
        f"{name}: no {layout!r} layout; VainF's exists for "
        f"{', '.join(sorted([*VAINF_ALTERNATIVES, *(n for n, s in SPECS.items() if s.kind == 'vainf')]))}"
    )


def spec_for_state(spec: SemanticSpec, state: dict) -> SemanticSpec:
    """``spec``, or VainF's layout of the same name when the file's keys are VainF's."""
    alt = VAINF_ALTERNATIVES.get(spec.name)
    if alt is not None and any(k.startswith("classifier.classifier.") for k in state):
        return alt
    return spec


def is_separable(state: dict) -> bool:
    """True for a VainF file trained with ``--separable_conv`` (``...body.0.weight`` in the head)."""
    return any(k.startswith("classifier.") and k.endswith(".body.0.weight") for k in state)


_HIGH = "backbone.high_level_features."


def renumber_early_mobilenet_blocks(state: dict) -> dict:
    """Reads segstream checkpoints written before the MobileNetV2 DeepLabV3+ kept VainF's block
    names: those numbered ``high_level_features`` 0..13 (re-indexed after the four
    ``low_level_features``), VainF's files and today's 4..17. Same tensors, keys shifted by 4;
    any other state dict is returned as it is."""
    nums = {int(k[len(_HIGH) :].split(".", 1)[0]) for k in state if k.startswith(_HIGH)}
    low = {
        k[len("backbone.low_level_features.") :].split(".", 1)[0]
        for k in state
        if k.startswith("backbone.low_level_features.")
    }
    if not nums or min(nums) != 0 or not low:
        return state
    shift = len(low)
    out = {}
    for k, v in state.items():
        if k.startswith(_HIGH):
            i, rest = k[len(_HIGH) :].split(".", 1)
            k = f"{_HIGH}{int(i) + shift}.{rest}"
        out[k] = v
    return out


def guess_vainf_model(state: dict) -> str | None:
    """The VainF architecture a state dict's keys say (e.g. ``deeplabv3plus_resnet101``), or None."""
    if any(k.startswith("classifier.aspp.") for k in state):
        head = "deeplabv3plus"
    elif any(k.startswith("classifier.classifier.0.convs.") for k in state):
        head = "deeplabv3"
    else:
        return None
    if any(k.startswith("backbone.high_level_features.") for k in state):
        return f"{head}_mobilenet"
    if any(k.startswith("backbone.layer3.22.") for k in state):
        return f"{head}_resnet101"
    if any(k.startswith("backbone.layer3.5.") for k in state):
        return f"{head}_resnet50"
    return None


def _wrong_model_hint(name: str, state: dict) -> str:
    guess = guess_vainf_model(state)
    return f" (it looks like VainF's {guess}: pass --model {guess})" if guess and guess != name else ""


def output_stride_from_filename(path: str) -> int | None:
    """16 or 8 from an ``..._os16.pth`` / ``..._os8.pth`` file name, else None."""
    m = re.search(r"os(8|16)(?!\d)", os.path.basename(path).lower())
    return int(m.group(1)) if m else None


@dataclass
class LoadedModel:
    """A built model with what the runtime needs to know about it.

    Attributes:
        model: the nn.Module (eval mode); forward returns {"out": logits, ["aux": logits]}.
        spec: the model's spec.
        num_classes: output channels.
        class_names: one name per output channel.
        output_stride: DeepLabV3+ output stride (None for torchvision models).
        checkpoint: extra fields of a segstream checkpoint (model, class_names, ...), else {}.
    """

    model: nn.Module
    spec: SemanticSpec
    num_classes: int
    class_names: tuple[str, ...]
    output_stride: int | None = None
    checkpoint: dict = field(default_factory=dict)


class UNetSegmenter(UNet):
    """``UNet`` whose forward returns ``{"out": (N, C, H, W) logits}`` like the zoo's other
    models, so training, export and the torch backend treat it the same. Same keys as UNet."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": super().forward(x)}


def build_model(
    name: str,
    *,
    num_classes: int = 19,
    aux: bool = False,
    output_stride: int | None = None,
    layout: str | None = None,
    separable: bool = False,
) -> nn.Module:
    """Builds a randomly initialised model (no download: torchvision weights are never fetched).

    Args:
        name: registry name.
        num_classes: output channels.
        aux: add torchvision's aux head (ignored where the architecture has none).
        output_stride: VainF layouts only: 16 or 8 (default 16).
        layout: None (the name's own) or "vainf" (VainF's DeepLabV3 for ``deeplabv3_resnet50/101``).
        separable: VainF layouts only: the head as after VainF's ``--separable_conv``.
    """
    return _build(
        spec_of(name, layout), num_classes=num_classes, aux=aux, output_stride=output_stride, separable=separable
    )


def _build(spec: SemanticSpec, *, num_classes: int, aux: bool, output_stride: int | None, separable: bool) -> nn.Module:
    name = spec.name
    if spec.kind not in ("vainf", "lite") and output_stride is not None:
        raise ConfigError(
            f"{name}: output stride is fixed by the architecture (only the VainF DeepLab layouts take 8 "
            "or 16); drop the option"
        )
    if spec.kind != "vainf" and separable:
        raise ConfigError(f"{name}: separable convolutions exist in the VainF DeepLab layouts only")
    if spec.kind == "lite":
        return DeepLabV3PlusLite(
            replace(spec.lite, num_classes=num_classes, output_stride=output_stride or spec.lite.output_stride)
        )
    if spec.kind == "unet":
        return UNetSegmenter(replace(spec.unet, num_classes=num_classes))
    if spec.kind == "fcn":
        return FCN(replace(spec.fcn, num_classes=num_classes))
    if spec.kind == "torchvision":
        from torchvision.models import segmentation as tvseg

        builder = getattr(tvseg, name)
        kwargs = dict(weights=None, weights_backbone=None, num_classes=num_classes)
        if spec.has_aux:
            kwargs["aux_loss"] = bool(aux)
        return builder(**kwargs)
    cfg = replace(
        spec.plus, num_classes=num_classes, output_stride=output_stride or spec.plus.output_stride, separable=separable
    )
    return DeepLabV3Plus(cfg)


#: torchvision's released file names (COCO_WITH_VOC_LABELS_V1), as they sit in the hub cache.
TORCHVISION_FILES = {
    "deeplabv3_mobilenet_v3_large": "deeplabv3_mobilenet_v3_large-fc3c493d.pth",
    "deeplabv3_resnet50": "deeplabv3_resnet50_coco-cd0a2569.pth",
    "deeplabv3_resnet101": "deeplabv3_resnet101_coco-586e9e4e.pth",
    "fcn_resnet50": "fcn_resnet50_coco-1167a1af.pth",
    "fcn_resnet101": "fcn_resnet101_coco-7ecb50ca.pth",
    "lraspp_mobilenet_v3_large": "lraspp_mobilenet_v3_large-d234d4ea.pth",
}


def resolve_weights(path: str, spec: SemanticSpec) -> str:
    """The checkpoint file for ``--weights``: the path itself, or, for the word ``torchvision``
    or a bare file name, that file in torch's hub cache (``$TORCH_HOME/hub/checkpoints``).
    Nothing is downloaded."""
    if os.path.isfile(path) or os.path.dirname(path):
        return path
    name = TORCHVISION_FILES.get(spec.name) if path == "torchvision" else path
    if name is None:
        raise ModelError(f"{spec.name}: torchvision publishes no weights for it; give a checkpoint path")
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", name)
    if not os.path.isfile(cached):
        raise ModelError(
            f"{path}: not a file, and {cached} is not in the torch hub cache; download {name} from "
            "https://download.pytorch.org/models/ and give its path"
        )
    return cached


def _numpy_scalar_globals() -> list:
    """numpy scalars and dtypes, allowed in ``weights_only`` loads: VainF's files store
    ``best_score`` as a numpy float. Rebuilding a scalar from its bytes runs no code."""
    import numpy as np

    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    allowed: list = [
        scalar,
        (scalar, "numpy.core.multiarray.scalar"),
        (scalar, "numpy._core.multiarray.scalar"),
        np.dtype,
    ]
    for name in ("Float64DType", "Float32DType", "Int64DType", "Int32DType", "BoolDType"):
        if hasattr(getattr(np, "dtypes", None), name):
            allowed.append(getattr(np.dtypes, name))
    return allowed


def _read_state_dict(path: str, spec: SemanticSpec) -> tuple[dict, dict]:
    """Returns (state dict, segstream info) from a checkpoint file, or raises ModelError."""
    obj = read_checkpoint(
        path, kind=f"a {spec.name}", expected=f"; expected a {spec.layout}", safe_globals=_numpy_scalar_globals()
    )
    return unwrap_state_dict(obj, path, f"a {spec.layout}")


def load_model(
    name: str,
    weights: str | None = None,
    *,
    num_classes: int | None = None,
    aux: bool | None = None,
    output_stride: int | None = None,
    strict_classes: bool = True,
) -> LoadedModel:
    """Builds ``name`` and loads ``weights`` into it.

    Args:
        name: registry name.
        weights: checkpoint path (or ``torchvision`` / a bare file name: from the torch hub
            cache, see ``resolve_weights``); None gives random weights (tests, export checks).
        num_classes: wanted output channels. None: the file's (or 19 without a file). If it
            differs from the file's and ``strict_classes`` is False, every layer but the final
            classifier(s) is loaded (fine-tuning a 21-class file to 19 classes).
        aux: keep torchvision's aux head. None: keep it where the file has it.
        output_stride: VainF layouts (DeepLabV3+, VainF's DeepLabV3): 16 or 8; None: the
            segstream checkpoint's, else the file name's ``_os16`` / ``_os8``, else 16 (VainF's
            released files are all OS16).
        strict_classes: raise if ``num_classes`` differs from the file's.

    Returns:
        LoadedModel in eval mode; its ``spec`` is the layout the file had (``deeplabv3_resnet50``
        with a VainF file: VainF's DeepLabV3, native size policy).
    """
    spec = spec_of(name)
    if weights is not None:
        weights = resolve_weights(weights, spec)
    state, info = ({}, {}) if weights is None else _read_state_dict(weights, spec)
    if info.get("model") not in (None, name):
        raise ModelError(
            f"{weights}: a segstream checkpoint of {info['model']!r}, not {name!r}; pass --model {info['model']}"
        )
    if info:
        state = renumber_early_mobilenet_blocks(state)
    spec = spec_for_state(spec, state)
    file_classes = None
    if state:
        w = state.get(spec.classifier_key)
        if w is None or w.dim() != 4:
            sample = ", ".join(list(state)[:3])
            raise ModelError(
                f"{weights}: no {spec.classifier_key} in it (first keys: {sample}){_wrong_model_hint(name, state)}; "
                f"expected a {spec.layout}"
            )
        file_classes = int(w.shape[0])
    want_classes = num_classes or file_classes or spec.num_classes
    if file_classes is not None and want_classes != file_classes and strict_classes:
        raise ModelError(
            f"{weights}: has {file_classes} classes, {want_classes} asked for; drop --num-classes or fine-tune with 'segstream train'"
        )
    file_aux = any(k.startswith("aux_classifier.") for k in state)
    keep_aux = spec.has_aux and (file_aux if aux is None else bool(aux))
    stride = None
    if spec.kind in ("vainf", "lite"):
        stride = (
            output_stride
            or info.get("output_stride")
            or (output_stride_from_filename(weights) if weights else None)
            or 16
        )
    with torch.random.fork_rng(devices=[]):
        # Random weights (no file) are seeded so an export and a later verify see the same model.
        torch.manual_seed(0)
        model = _build(
            spec,
            num_classes=want_classes,
            aux=keep_aux,
            output_stride=stride,
            separable=spec.kind == "vainf" and is_separable(state),
        )
    if state:
        _load_into(
            model,
            state,
            weights,
            spec,
            drop_aux=not keep_aux,
            same_classes=want_classes == file_classes,
            new_aux=keep_aux and not file_aux,
        )
    names = tuple(info.get("class_names") or ())
    if len(names) != want_classes:
        # VainF trains on Cityscapes (19 train ids) and Pascal VOC (21, background first).
        known = (spec.default_classes, CITYSCAPES_CLASSES) + ((VOC_CLASSES,) if spec.kind == "vainf" else ())
        names = next((c for c in known if len(c) == want_classes), tuple(f"class_{i}" for i in range(want_classes)))
    return LoadedModel(
        model=model.eval(),
        spec=spec,
        num_classes=want_classes,
        class_names=names,
        output_stride=stride,
        checkpoint=info,
    )


def _load_into(
    model: nn.Module,
    state: dict,
    path: str,
    spec: SemanticSpec,
    *,
    drop_aux: bool,
    same_classes: bool,
    new_aux: bool = False,
) -> None:
    """Loads ``state`` strictly, except: the aux head is dropped (``drop_aux``) or left random
    (``new_aux``: training adds one the file lacks), and with another class count every tensor
    whose shape follows the classes is left random."""
    if drop_aux:
        state = {k: v for k, v in state.items() if not k.startswith("aux_classifier.")}
    own = model.state_dict()
    if not same_classes:
        # Fine-tuning to other classes: leave the layers whose shape follows the class count.
        state = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        missing = [k for k in own if k not in state]
        if len(missing) > 9:  # FCN-8s has 9 tensors shaped by the classes (score and upscore layers)
            raise ModelError(
                f"{path}: only {len(state)} of {len(own)} tensors fit {spec.name}; expected a {spec.layout}"
            )
        model.load_state_dict(state, strict=False)
        return
    mismatch = mismatch_summary(own, state, ignore_missing=lambda k: new_aux and k.startswith("aux_classifier."))
    if mismatch:
        raise ModelError(
            f"{path}: does not fit {spec.name}: {mismatch}{_wrong_model_hint(spec.name, state)}; "
            f"expected a {spec.layout}"
        )
    model.load_state_dict(state, strict=not new_aux)


def save_checkpoint(path: str, loaded: LoadedModel, *, extra: dict | None = None) -> str:
    """Writes a checkpoint ``load_model`` reads back: {"model_state": ..., "segstream": {...}}.

    Only tensors, strings and numbers: loadable with ``weights_only=True``.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    info = {"model": loaded.spec.name, "num_classes": loaded.num_classes, "class_names": list(loaded.class_names)}
    if loaded.output_stride is not None:
        info["output_stride"] = int(loaded.output_stride)
    info.update(extra or {})
    torch.save({"model_state": loaded.model.state_dict(), "segstream": info}, path)
    return path


class LogitsOnly(nn.Module):
    """Wraps a segmentation model so forward returns ``out`` only: (N, C, H, W) float32 logits.

    The export and the torch backend use it; the aux head, if any, is not run.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if hasattr(model, "aux_classifier"):
            model.aux_classifier = None
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


class LogitsAndLabels(LogitsOnly):
    """``LogitsOnly`` plus the per-pixel argmax as a second output: (N, H, W) uint8 class ids.

    Exported artifacts carry both, so the runtime takes the class map from the graph (ONNX
    Runtime's ArgMax, outside Python's GIL, about twice as fast as numpy's here) and reads the
    logits only when it smooths them or keeps probabilities.
    """

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(x)["out"]
        return logits, logits.argmax(1).to(torch.uint8)


def artifact_metadata(
    loaded: LoadedModel, *, input_size_hw: tuple[int, int] | None = None, size_policy: SizePolicy | None = None
):
    """The ArtifactMetadata an export of ``loaded`` carries (classes, palette, mean/std, size policy)."""
    from segstream.stream.backends.base import ArtifactMetadata

    policy = size_policy or loaded.spec.size_policy
    if input_size_hw is not None:
        policy = SizePolicy(kind="fixed", size_hw=tuple(input_size_hw))
    # A model that needs sizes divisible by 2**depth (U-Net) keeps its padding under any resize.
    policy = replace(policy, pad_multiple=max(policy.pad_multiple, loaded.spec.size_policy.pad_multiple))
    palette = (
        CITYSCAPES_PALETTE_BGR if loaded.class_names == CITYSCAPES_CLASSES else default_palette_bgr(loaded.num_classes)
    )
    return ArtifactMetadata(
        model=loaded.spec.name,
        task="semantic",
        class_names=tuple(loaded.class_names),
        input_size_hw=tuple(input_size_hw) if input_size_hw is not None else None,
        mean=tuple(loaded.spec.mean),
        std=tuple(loaded.spec.std),
        color_order="RGB",
        palette_bgr=tuple(tuple(int(c) for c in p) for p in palette),
        extra={
            "size_policy": policy.to_dict(),
            "input_name": "image",
            "output_name": "logits",
            "labels_output": "labels",
            "output_stride": loaded.output_stride,
        },
        versions={"torch": torch.__version__},
    )
