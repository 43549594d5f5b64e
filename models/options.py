"""The typed parameters of the family commands (``segstream predict | eval | train | export | verify``).

One frozen dataclass per command, shared by every family: ``segstream/cli.py`` builds it once from
its parsed arguments (field names are the options' destinations), and a family's ``commands``
module reads the fields that apply to it. Which options apply to which family is declared in
``segstream.models.registry``; sizes stay text here because each family parses its own form
("550" for YOLACT, "HxW" for semantic models) and says what it expected.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PredictOptions:
    """``segstream predict``: run a model on image files.

    Attributes:
        model / weights / backend: model name, checkpoint (.pth) or artifact (.onnx), "torch" or "onnxruntime".
        images: image files.
        input_size: semantic: "HxW" the images are resized to for the model.
        score_threshold / top_k / mask_threshold: instances: post-processing.
        json_out: instances: detections JSON to write. mask_dir: semantic: class-id PNG folder.
        overlay: folder for rendered overlays.
    """

    model: str
    weights: str | None
    images: tuple[str, ...]
    backend: str = "torch"
    input_size: str | None = None
    score_threshold: float = 0.05
    top_k: int | None = 100
    mask_threshold: float | None = None
    json_out: str | None = None
    mask_dir: str | None = None
    overlay: str | None = None


@dataclass(frozen=True)
class EvalOptions:
    """``segstream eval``: score a model on a dataset.

    Attributes:
        annotations: instances: COCO JSON. images: image folder.
        labels / layout: semantic: label PNG folder and its layout ("plain", "cityscapes", "camvid", "binary").
        json_out: file the figures are written to.
    """

    model: str
    weights: str | None
    backend: str = "torch"
    input_size: str | None = None
    mask_threshold: float | None = None
    annotations: str | None = None
    images: str | None = None
    labels: str | None = None
    layout: str = "plain"
    json_out: str | None = None


@dataclass(frozen=True)
class TrainOptions:
    """``segstream train``: train or fine-tune; see ``segstream train --help`` for each option."""

    model: str
    out: str
    weights: str | None = None
    annotations: str | None = None
    images: str | None = None
    labels: str | None = None
    layout: str = "plain"
    epochs: int = 10
    iters: int | None = None
    batch_size: int = 4
    lr: float | None = None
    input_size: str | None = None
    num_classes: int | None = None
    seed: int = 0
    optimizer: str = "sgd"
    checkpoint_every: int = 0
    aspect_ratios: str | None = None
    square_anchors: str | None = None
    mask_targets: str | None = None
    proto_skip: str | None = None
    mask_threshold: float | None = None
    class_weights: str = "none"
    val_images: str | None = None
    val_labels: str | None = None
    val_annotations: str | None = None
    eval_every: int = 0
    resume: str | None = None
    stop_at: int | None = None
    warmup_iters: int = 0
    scale_range: str | None = None
    jitter: str = "basic"
    weight_decay: float | None = None
    backbone_init: str = "imagenet"
    threads: int | None = None


@dataclass(frozen=True)
class ExportOptions:
    """``segstream export``: write an ONNX artifact (or a TensorRT engine built from it).

    Attributes:
        weights: checkpoint; None for random initialisation (tests).
        format: "onnx" or "tensorrt". fp16 / int8 / calibration: TensorRT precision.
        input_size: "HxW" (or "S" for YOLACT) export size. dynamic: dynamic height and width.
        dynamic_batch: a dynamic batch axis, so the runtime can batch frames (YOLACT, semantic models).
    """

    model: str
    out: str
    weights: str | None = None
    format: str = "onnx"
    fp16: bool = False
    int8: bool = False
    calibration: str | None = None
    input_size: str | None = None
    dynamic: bool = False
    opset: int = 18
    num_classes: int | None = None
    dynamic_batch: bool = False


@dataclass(frozen=True)
class VerifyOptions:
    """``segstream verify``: compare an exported artifact with the torch model.

    Attributes:
        artifact: the exported file. weights: the checkpoint it came from (None: the seeded random model).
        input_size: "HxW" to test at.
    """

    artifact: str
    model: str
    weights: str | None = None
    input_size: str | None = None


#: command name -> its parameters' type.
OPTIONS_BY_COMMAND = {
    "predict": PredictOptions,
    "eval": EvalOptions,
    "train": TrainOptions,
    "export": ExportOptions,
    "verify": VerifyOptions,
}
