"""YOLACT configurations: one frozen dataclass per model name, values as in the official
``data/config.py`` (``yolact_base_config`` and its variants) and in YolactEdge's
``yolact_edge/data/config.py`` (``yolact_edge_config`` and its variants)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from segstream.stream.errors import ConfigError, ModelError

COCO_CLASSES = (
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
)

#: COCO category ids of the 80 classes, in label order (official ``COCO_LABEL_MAP`` inverted).
COCO_CATEGORY_IDS = (
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
    13,
    14,
    15,
    16,
    17,
    18,
    19,
    20,
    21,
    22,
    23,
    24,
    25,
    27,
    28,
    31,
    32,
    33,
    34,
    35,
    36,
    37,
    38,
    39,
    40,
    41,
    42,
    43,
    44,
    46,
    47,
    48,
    49,
    50,
    51,
    52,
    53,
    54,
    55,
    56,
    57,
    58,
    59,
    60,
    61,
    62,
    63,
    64,
    65,
    67,
    70,
    72,
    73,
    74,
    75,
    76,
    77,
    78,
    79,
    80,
    81,
    82,
    84,
    85,
    86,
    87,
    88,
    89,
    90,
)

#: YouTube-VIS 2019 classes, in label order (YolactEdge's ``YOUTUBE_VIS_CLASSES``).
YOUTUBE_VIS_CLASSES = (
    "person",
    "giant_panda",
    "lizard",
    "parrot",
    "skateboard",
    "sedan",
    "ape",
    "dog",
    "snake",
    "monkey",
    "hand",
    "rabbit",
    "duck",
    "cat",
    "cow",
    "fish",
    "train",
    "horse",
    "turtle",
    "bear",
    "motorbike",
    "giraffe",
    "leopard",
    "fox",
    "deer",
    "owl",
    "surfboard",
    "airplane",
    "truck",
    "zebra",
    "tiger",
    "elephant",
    "snowboard",
    "boat",
    "shark",
    "mouse",
    "frog",
    "eagle",
    "earless_seal",
    "tennis_racket",
)

#: ImageNet statistics on 0-255 values, RGB order (the official BGR MEANS/STD reversed).
RGB_MEAN = (123.68, 116.78, 103.94)
RGB_STD = (58.40, 57.12, 57.38)

_BASE_SCALES = (24, 48, 96, 192, 384)

#: NMS methods an artifact may ask for: "fast" (YOLACT's eval.py default) and "standard"
#: (YolactEdge's ``Detect`` with ``use_fast_nms=False``: per-class traditional NMS).
NMS_METHODS = ("fast", "standard")


@dataclass(frozen=True)
class FlowNetSettings:
    """The flow network of YolactEdge's video checkpoints (``yolact_edge_vid_config.flow``).

    Attributes:
        reduce_channels: ``flow_net_pre_convs``: 3x3 conv + LeakyReLU(0.1) from the FPN width to this.
        encode_channels: FlowNetMini's base width; its three stages have 1x, 2x and 4x of it.
        spa: whether the checkpoint has the ``spa`` refinement convs (off in ``_vid_minimal``).
    """

    reduce_channels: int = 64
    encode_channels: int = 64
    spa: bool = True


@dataclass(frozen=True)
class YolactConfig:
    """Everything that shapes a YOLACT network and its pre/post-processing.

    Attributes:
        name: model name ("yolact_base", "yolact_edge_mobilenetv2", ...).
        backbone: "resnet101", "resnet50", "darknet53", "mobilenetv2" (YolactEdge), "mobilenetv3_large" or "tiny".
        selected_layers: backbone outputs fed to the FPN (C3, C4, C5).
        class_names: foreground classes; ``num_classes`` = len + 1 (background is 0).
        max_size: square input size in pixels (550 for the released models).
        pred_scales: anchor sizes in pixels per FPN level (P3..P7).
        aspect_ratios: anchor aspect ratios (shared by every level).
        square_anchors: the released models' ``use_square_anchors`` (h = w).
        fpn_features: FPN channels (256). proto_channels: ProtoNet hidden channels (256).
        mask_dim: number of prototypes k (32). head_channels: prediction-head "upfeature" channels.
        num_downsample: extra FPN levels by stride-2 convs (P6, P7).
        mean / std: normalisation on 0-255 values in ``color_order``; DarkNet uses 0 / 255.
        color_order: channel order of the network input.
        tiny_widths: channel widths of the "tiny" backbone stages.
        mask_threshold: mask probability above which a pixel belongs to the instance (0.5, as the
            official ``postprocess``); artifacts carry it with the NMS settings.
        proto_skip_layer: -1 (the published architecture) or the index of a backbone output at the
            prototypes' stride (4): a zero-initialised 3x3 conv of it is added to the prototypes
            before their ReLU, giving them edges the stride-8 P3 they are upsampled from lacks.
        mask_targets: training targets of the mask loss at prototype size: "hard" (the official
            bilinear downsample thresholded at 0.5) or "soft" (each cell's covered fraction, an
            area average; keeps objects a few cells wide from being eroded or broken).
        fpn_split: YolactEdge's layout of the same FPN: ``fpn_phase_1.lat_layers`` and
            ``fpn_phase_2.{pred,downsample}_layers`` instead of ``fpn.*``.
        flow: YolactEdge video checkpoints' flow network (``flow_net_pre_convs``, ``flow_net``,
            ``spa``); None for image models.
        nms: "fast" (YOLACT) or "standard" (YolactEdge); recorded in the artifact for the runtime.
    """

    name: str
    backbone: str
    selected_layers: tuple[int, ...]
    class_names: tuple[str, ...] = COCO_CLASSES
    max_size: int = 550
    pred_scales: tuple[float, ...] = _BASE_SCALES
    aspect_ratios: tuple[float, ...] = (1.0, 0.5, 2.0)
    square_anchors: bool = True
    fpn_features: int = 256
    proto_channels: int = 256
    mask_dim: int = 32
    head_channels: int = 256
    num_downsample: int = 2
    mean: tuple[float, float, float] = RGB_MEAN
    std: tuple[float, float, float] = RGB_STD
    color_order: str = "RGB"
    tiny_widths: tuple[int, ...] = field(default=(16, 24, 32, 48, 64))
    mask_threshold: float = 0.5
    proto_skip_layer: int = -1
    # Training settings (official yolact_base_config values).
    positive_iou: float = 0.5
    negative_iou: float = 0.4
    crowd_iou: float = 0.7
    negpos_ratio: int = 3
    bbox_alpha: float = 1.5
    conf_alpha: float = 1.0
    mask_alpha: float = 6.125
    semantic_alpha: float = 1.0
    masks_to_train: int = 100
    mask_targets: str = "hard"
    # YolactEdge.
    fpn_split: bool = False
    flow: FlowNetSettings | None = None
    nms: str = "fast"

    @property
    def num_classes(self) -> int:
        """Classes including background."""
        return len(self.class_names) + 1

    @property
    def num_anchors(self) -> int:
        """Anchors per location."""
        return len(self.aspect_ratios)

    def artifact_metadata(self, num_priors: int, versions: dict | None = None):
        """What an artifact of this configuration says about itself (``YolactRunner`` reads it)."""
        from segstream.pipelines.tasks.yolact import OUTPUT_NAMES
        from segstream.stream.backends.base import ArtifactMetadata

        return ArtifactMetadata(
            model=self.name,
            task="instances",
            class_names=tuple(self.class_names),
            input_size_hw=(self.max_size, self.max_size),
            mean=tuple(float(v) for v in self.mean),
            std=tuple(float(v) for v in self.std),
            color_order=self.color_order,
            extra={
                "outputs": list(OUTPUT_NAMES),
                "boxes": "decoded, x1y1x2y2 normalised; priors and variances (0.1, 0.2) baked in",
                "num_priors": int(num_priors),
                "num_prototypes": int(self.mask_dim),
                "anchors": {
                    "scales_px": list(self.pred_scales),
                    "aspect_ratios": list(self.aspect_ratios),
                    "square": bool(self.square_anchors),
                    "max_size": int(self.max_size),
                },
                "nms": self.nms_settings(),
            },
            versions=dict(versions or {}),
        )

    def nms_settings(self) -> dict:
        """What the runtime's post-processing needs (``YolactPostprocess.from_metadata`` reads it).

        "fast": YOLACT's per-class Fast NMS over each class's ``top_k`` best boxes. "standard":
        YolactEdge's per-class traditional NMS on boxes scaled by ``pixel_scale`` (its
        ``max_size``) with the +1-pixel area convention, IoU >= ``iou_thresh`` suppresses, no top-k.
        """
        nms = {
            "method": self.nms,
            "conf_thresh": 0.05,
            "iou_thresh": 0.5,
            "top_k": 200,
            "max_detections": 100,
            "mask_threshold": float(self.mask_threshold),
        }
        if self.nms == "standard":
            nms["pixel_scale"] = float(self.max_size)
        return nms

    def layout(self) -> str:
        """The state-dict layout a checkpoint of this configuration has, in one line (for errors)."""
        fpn = (
            "fpn_phase_1.lat_layers, fpn_phase_2.pred_layers/downsample_layers"
            if self.fpn_split
            else "fpn.lat_layers/pred_layers/downsample_layers"
        )
        video = ""
        if self.flow is not None:
            video = ", flow_net_pre_convs, flow_net" + (", spa" if self.flow.spa else "")
        return (
            f"{_BACKBONE_LAYOUTS.get(self.backbone, self.backbone)}, {fpn}, proto_net, "
            f"prediction_layers.0 ({self.num_classes} classes), semantic_seg_conv{video}"
        )

    def with_classes(self, class_names) -> YolactConfig:
        names = tuple(class_names)
        if not names:
            raise ConfigError(f"{self.name}: class_names is empty; give at least one class")
        return replace(self, class_names=names)


_BACKBONE_LAYOUTS = {
    "resnet101": "ResNet-101 backbone.conv1/bn1/layers.0-3",
    "resnet50": "ResNet-50 backbone.conv1/bn1/layers.0-3",
    "darknet53": "DarkNet-53 backbone._preconv/layers.0-4",
    "mobilenetv2": "MobileNetV2 backbone.layers.0-8",
    "mobilenetv3_large": "MobileNetV3-Large backbone.features.*",
    "tiny": "tiny backbone.layers.0-4",
}


def _scaled(size: int) -> tuple[int, ...]:
    return tuple(int(s / 550 * size) for s in _BASE_SCALES)


CONFIGS: dict[str, YolactConfig] = {
    "yolact_base": YolactConfig("yolact_base", "resnet101", (1, 2, 3)),
    "yolact_resnet50": YolactConfig("yolact_resnet50", "resnet50", (1, 2, 3)),
    "yolact_im700": YolactConfig(
        "yolact_im700", "resnet101", (1, 2, 3), max_size=700, pred_scales=_scaled(700), masks_to_train=300
    ),
    "yolact_darknet53": YolactConfig(
        "yolact_darknet53", "darknet53", (2, 3, 4), mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0)
    ),
    # Edge model: torchvision MobileNetV3-Large features (stride 8/16/32 taps), the same head.
    "yolact_mobilenetv3": YolactConfig("yolact_mobilenetv3", "mobilenetv3_large", (6, 12, 16)),
    # YolactEdge (Liu et al., ICRA 2021): the same network with the FPN stored in two phases (so
    # TensorRT can convert them apart), its per-class traditional NMS, and a MobileNetV2 backbone
    # for the smallest model. COCO: 81 classes; the YouTube-VIS models: 41.
    "yolact_edge": YolactConfig("yolact_edge", "resnet101", (1, 2, 3), fpn_split=True, nms="standard"),
    "yolact_edge_resnet50": YolactConfig("yolact_edge_resnet50", "resnet50", (1, 2, 3), fpn_split=True, nms="standard"),
    "yolact_edge_mobilenetv2": YolactConfig(
        "yolact_edge_mobilenetv2", "mobilenetv2", (3, 4, 6), fpn_split=True, nms="standard"
    ),
    # Video models: their keyframe path is the image model's; the flow net warps features between keyframes.
    "yolact_edge_vid": YolactConfig(
        "yolact_edge_vid",
        "resnet101",
        (1, 2, 3),
        YOUTUBE_VIS_CLASSES,
        fpn_split=True,
        flow=FlowNetSettings(),
        nms="standard",
    ),
    "yolact_edge_vid_resnet50": YolactConfig(
        "yolact_edge_vid_resnet50",
        "resnet50",
        (1, 2, 3),
        YOUTUBE_VIS_CLASSES,
        fpn_split=True,
        flow=FlowNetSettings(),
        nms="standard",
    ),
    "yolact_edge_vid_minimal": YolactConfig(
        "yolact_edge_vid_minimal",
        "resnet101",
        (1, 2, 3),
        YOUTUBE_VIS_CLASSES,
        fpn_split=True,
        flow=FlowNetSettings(spa=False),
        nms="standard",
    ),
    # The image model the video models start from (no flow net).
    "yolact_edge_youtubevis": YolactConfig(
        "yolact_edge_youtubevis", "resnet101", (1, 2, 3), YOUTUBE_VIS_CLASSES, fpn_split=True, nms="standard"
    ),
    "yolact_edge_youtubevis_resnet50": YolactConfig(
        "yolact_edge_youtubevis_resnet50", "resnet50", (1, 2, 3), YOUTUBE_VIS_CLASSES, fpn_split=True, nms="standard"
    ),
    # The road instance model: ImageNet EfficientNet-Lite0 (stride 8/16/32 taps), narrower FPN and
    # head for two CPU cores, 512 px input, ratio-shaped anchors (wide cars, tall pedestrians),
    # the stride-4 prototype skip, soft mask targets; classes from the training data (CamVid:
    # car, person, cyclist).
    "yolact_lite0": YolactConfig(
        "yolact_lite0",
        "efficientnet_lite0",
        (4, 10, 15),
        ("car", "person", "cyclist"),
        max_size=512,
        pred_scales=_scaled(512),
        aspect_ratios=(1.0, 0.5, 2.0),
        square_anchors=False,
        fpn_features=128,
        proto_channels=128,
        head_channels=128,
        mean=(127.0, 127.0, 127.0),
        std=(128.0, 128.0, 128.0),
        proto_skip_layer=2,
        mask_targets="soft",
    ),
    # Tests and the embedded demo: a few plain conv stages, 160 px input, narrow FPN and head.
    "yolact_tiny": YolactConfig(
        "yolact_tiny",
        "tiny",
        (2, 3, 4),
        max_size=160,
        pred_scales=_scaled(160),
        fpn_features=48,
        proto_channels=48,
        mask_dim=16,
        head_channels=48,
    ),
}


def get_config(name: str) -> YolactConfig:
    """The configuration of a model name, or ConfigError listing the known ones."""
    try:
        return CONFIGS[name]
    except KeyError:
        raise ConfigError(f"unknown YOLACT model {name!r}; expected one of {', '.join(sorted(CONFIGS))}") from None


_CKPT_NAME = re.compile(r"^(?P<name>.+?)_(?P<epoch>\d+)_(?P<iter>\d+)$")


def config_name_from_path(path: str) -> str | None:
    """The configuration a checkpoint file name implies, as the official ``SavePath.from_str``:
    ``yolact_base_54_800000.pth`` -> "yolact_base"; ``yolact_tiny.pth`` -> "yolact_tiny"; else None."""
    import os

    stem = os.path.splitext(os.path.basename(path))[0]
    m = _CKPT_NAME.match(stem)
    name = m.group("name") if m else stem
    return name if name in CONFIGS else None


def resolve_config(model: str | None, weights: str | None) -> YolactConfig:
    """The configuration for ``--model`` and ``--weights``: they must agree when both name one (a
    YolactEdge ``--model`` also takes a YOLACT file, whose keys the loader renames)."""
    from_file = config_name_from_path(weights) if weights else None
    if model is None and from_file is None:
        raise ConfigError(
            f"cannot tell the YOLACT configuration of {weights!r}; pass --model (one of {', '.join(sorted(CONFIGS))})"
        )
    # YolactEdge runs YOLACT files (its README: --config=yolact_edge_config with yolact_base_54_800000.pth).
    converts = (
        model in CONFIGS and from_file in CONFIGS and CONFIGS[model].fpn_split and not CONFIGS[from_file].fpn_split
    )
    if model is not None and from_file is not None and model != from_file and not converts:
        raise ModelError(
            f"{weights}: the file name says configuration {from_file!r} but --model is {model!r}; "
            "pass the matching --model or rename the file"
        )
    return get_config(model or from_file)
