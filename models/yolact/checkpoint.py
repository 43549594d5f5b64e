"""Loading and saving YOLACT checkpoints.

Reads the official ``.pth`` files (a plain state dict, e.g. ``yolact_base_54_800000.pth``)
and the ones ``segstream train`` writes (``{"state_dict": ..., "segstream": {...}}``, which add
the class names). Always ``torch.load(..., weights_only=True)``: nothing in a file is executed.
As the official ``Yolact.load_weights``, legacy ``backbone.layerN.*`` keys and
``fpn.downsample_layers.N`` beyond the configured count are dropped; anything else that does
not match is an error naming the configuration, the layout it expects and a few of the keys.
YolactEdge configurations also take YOLACT files, renamed as YolactEdge's ``load_weights`` does
(``fpn.lat_layers`` -> ``fpn_phase_1.lat_layers``, other ``fpn.*`` -> ``fpn_phase_2.*``).
"""

from __future__ import annotations

import os
import re

import torch

from segstream.models.checkpoint_io import read_checkpoint
from segstream.models.state_dict import mismatch_summary
from segstream.models.yolact.config import CONFIGS, YolactConfig, config_name_from_path, resolve_config
from segstream.models.yolact.model import Yolact
from segstream.stream.errors import ModelError

_LEGACY_BACKBONE = re.compile(r"^backbone\.layer(?!s\.)")
_DOWNSAMPLE = re.compile(r"^fpn\.downsample_layers\.(\d+)\.")


def _read(path: str, expected: str = "") -> dict:
    """The file's object; ``expected`` (a configuration's name and layout) goes into the errors."""
    obj = read_checkpoint(path, kind="a YOLACT", expected=f" (expected {expected})" if expected else "")
    if not isinstance(obj, dict):
        raise ModelError(f"{path}: expected a state dict (a dict of tensors), found {type(obj).__name__}")
    return obj


def _class_names_from(meta: dict | None, state: dict, cfg: YolactConfig) -> tuple[str, ...]:
    if meta and isinstance(meta.get("class_names"), (list, tuple)):
        return tuple(str(c) for c in meta["class_names"])
    conf = state.get("prediction_layers.0.conf_layer.weight")
    if conf is not None and conf.shape[0] % cfg.num_anchors == 0:
        n = conf.shape[0] // cfg.num_anchors - 1
        if n != len(cfg.class_names) and n > 0:
            return tuple(f"class_{i}" for i in range(n))
    return cfg.class_names


def with_checkpoint_settings(cfg: YolactConfig, meta: dict | None) -> YolactConfig:
    """The configuration with the input size, anchors and mask settings a checkpoint's ``segstream`` metadata
    records (``train --input-size``, ``--aspect-ratios``, ``--square-anchors``, ``--mask-targets``,
    ``--mask-threshold``, ``--proto-skip``); unchanged without."""
    from dataclasses import replace

    if meta is not None and "max_size" in meta:
        cfg = replace(
            cfg,
            max_size=int(meta["max_size"]),
            pred_scales=tuple(int(v) for v in meta.get("pred_scales", cfg.pred_scales)),
        )
    if meta is not None and "aspect_ratios" in meta:
        cfg = replace(
            cfg,
            aspect_ratios=tuple(float(v) for v in meta["aspect_ratios"]),
            square_anchors=bool(meta.get("square_anchors", cfg.square_anchors)),
        )
    if meta is not None and meta.get("mask_targets") in ("hard", "soft"):
        cfg = replace(cfg, mask_targets=str(meta["mask_targets"]))
    if meta is not None and "proto_skip_layer" in meta:
        cfg = replace(cfg, proto_skip_layer=int(meta["proto_skip_layer"]))
    if meta is not None and "mask_threshold" in meta:
        cfg = replace(cfg, mask_threshold=float(meta["mask_threshold"]))
    return cfg


def checkpoint_metadata(path: str) -> dict | None:
    """A segstream checkpoint's ``segstream`` dict, or None (other layouts, ImageNet backbones)."""
    obj = _read(path)
    return obj["segstream"] if isinstance(obj.get("segstream"), dict) else None


def load_yolact(path: str, model: str | None = None) -> tuple[Yolact, YolactConfig]:
    """Builds the configuration's network and loads a checkpoint into it (eval mode).

    Args:
        path: .pth file. model: configuration name; taken from the file name when None.

    Returns:
        (network, configuration with the checkpoint's class names).

    Raises:
        ModelError: unreadable file, or keys/shapes that do not fit the configuration.
    """
    named = model or config_name_from_path(path)
    obj = _read(path, f"{named}: {CONFIGS[named].layout()}" if named in CONFIGS else "")
    meta = obj.get("segstream") if isinstance(obj.get("segstream"), dict) else None
    if model is None and config_name_from_path(path) is None and meta and meta.get("model") in CONFIGS:
        model = str(meta["model"])
    cfg = resolve_config(model, path)
    state = obj["state_dict"] if meta is not None and isinstance(obj.get("state_dict"), dict) else obj
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path}: expected a dict of tensors, found other values; it is not a YOLACT checkpoint")
    cfg = cfg.with_classes(_class_names_from(meta, state, cfg))
    cfg = with_checkpoint_settings(cfg, meta)
    state = {
        k: v
        for k, v in state.items()
        if not _LEGACY_BACKBONE.match(k) and not ((m := _DOWNSAMPLE.match(k)) and int(m.group(1)) >= cfg.num_downsample)
    }
    if cfg.fpn_split:
        state = {split_fpn_key(k): v for k, v in state.items()}
    net = Yolact(cfg)
    expected = net.state_dict()
    mismatch = mismatch_summary(expected, state, ignore_missing=lambda k: k.endswith("num_batches_tracked"))
    if mismatch:
        raise ModelError(
            f"{path}: does not fit configuration {cfg.name!r} (expected {cfg.layout()}): {mismatch}; "
            "pass the --model the file was trained with"
        )
    net.load_state_dict(state, strict=False)
    return net.eval(), cfg


def split_fpn_key(key: str) -> str:
    """A YOLACT key in YolactEdge's layout: ``fpn.lat_layers.*`` -> ``fpn_phase_1.lat_layers.*``,
    any other ``fpn.*`` -> ``fpn_phase_2.*`` (YolactEdge's ``load_weights``); others unchanged."""
    if key.startswith("fpn.lat_layers."):
        return "fpn_phase_1." + key[len("fpn.") :]
    if key.startswith("fpn."):
        return "fpn_phase_2." + key[len("fpn.") :]
    return key


def save_yolact(net: Yolact, path: str, extra: dict | None = None) -> str:
    """Writes a checkpoint ``load_yolact`` reads back (state dict, class names, input size, anchors
    and mask settings; no code)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    cfg = net.cfg
    meta = {
        "model": cfg.name,
        "class_names": list(cfg.class_names),
        "max_size": int(cfg.max_size),
        "pred_scales": [int(v) for v in cfg.pred_scales],
        "aspect_ratios": [float(v) for v in cfg.aspect_ratios],
        "square_anchors": bool(cfg.square_anchors),
        "mask_targets": cfg.mask_targets,
        "mask_threshold": float(cfg.mask_threshold),
        "proto_skip_layer": int(cfg.proto_skip_layer),
    }
    meta.update(extra or {})
    tmp = path + ".tmp"
    torch.save({"state_dict": net.state_dict(), "segstream": meta}, tmp)
    os.replace(tmp, path)
    return path


def copy_with_metadata(src: str, dst: str, **updates) -> str:
    """Copies a segstream YOLACT checkpoint to ``dst`` with ``updates`` merged into its metadata
    (weights untouched): how a setting tuned after training, the mask threshold, is recorded."""
    obj = _read(src)
    if not isinstance(obj.get("segstream"), dict) or not isinstance(obj.get("state_dict"), dict):
        raise ModelError(
            f"{src}: not a segstream YOLACT checkpoint (no metadata); train or fine-tune it with "
            "'segstream train' first"
        )
    obj["segstream"] = {**obj["segstream"], **updates}
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    tmp = dst + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, dst)
    return dst


_TV_LAYER = re.compile(r"^layer(\d)\.")
_TV_FEATURE = re.compile(r"^features\.(\d+)\.")


def _mobilenetv2_feature_prefixes() -> dict[int, str]:
    """torchvision MobileNetV2 ``features`` index -> YolactEdge ``layers`` prefix: the stem, each
    inverted-residual block by (stage, block), the last 1x1 conv."""
    from segstream.models.yolact.backbone import MOBILENETV2_STAGES

    prefixes = {0: "layers.0."}
    f = 1
    for stage, (_t, _c, n, _s) in enumerate(MOBILENETV2_STAGES, start=1):
        for block in range(n):
            prefixes[f] = f"layers.{stage}.{block}."
            f += 1
    prefixes[f] = f"layers.{len(MOBILENETV2_STAGES) + 1}."
    return prefixes


def backbone_keys_from(state: dict, kind: str) -> dict:
    """Maps an ImageNet backbone file to ``backbone.*`` keys, as the official ``init_backbone``:
    torchvision ResNets (``resnet50-19c8e357.pth``, ``resnet101_reducedfc.pth``) have ``layerN`` ->
    ``layers.N-1`` and their ``fc`` dropped; torchvision MobileNetV2 (``mobilenet_v2-b0353104.pth``,
    which YolactEdge maps by key order) has ``features.i`` -> ``layers.{stage}.{block}``;
    ``darknet53.pth`` and torchvision MobileNetV3 (``features.*``, classifier dropped) keep their names."""
    out = {}
    mnv2 = _mobilenetv2_feature_prefixes() if kind == "mobilenetv2" else {}
    for k, v in state.items():
        if k.startswith(("fc.", "classifier.")):
            continue
        if kind.startswith("resnet"):
            k = _TV_LAYER.sub(lambda m: f"layers.{int(m.group(1)) - 1}.", k)
        elif kind == "mobilenetv2":
            k = _TV_FEATURE.sub(lambda m: mnv2.get(int(m.group(1)), m.group(0)), k)
        out["backbone." + k] = v
    return out


def load_backbone(net: Yolact, path: str) -> int:
    """Loads ImageNet backbone weights into ``net.backbone``; returns the number of tensors loaded.

    Raises:
        ModelError: unreadable file, or a backbone tensor missing or of another shape.
    """
    state = backbone_keys_from(_read(path), net.cfg.backbone)
    own = {k: v for k, v in net.state_dict().items() if k.startswith("backbone.")}
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    unexpected = [k for k in state if k not in own]
    if missing or wrong or unexpected:
        raise ModelError(
            f"{path}: not a {net.cfg.backbone} backbone for {net.cfg.name!r}: {len(missing)} missing "
            f"(e.g. {', '.join(missing[:2])}), {len(wrong)} with other shapes (e.g. {', '.join(wrong[:2])}), "
            f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:2])}); give the backbone's ImageNet file"
        )
    net.load_state_dict({k: state[k] for k in own if k in state}, strict=False)
    return len([k for k in own if k in state])
