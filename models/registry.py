"""The model families on the torch side: each family's model names, the CLI options that apply
to it, its commands and its benchmark builder. Kept import-free (torch-side parts are import
paths, resolved on use) so the CLI stays fast.

A family is one ``ModelFamily`` in ``FAMILIES``, built on the runtime family of the same name in
``segstream.pipelines.tasks.families`` (task, torch-free runner, artifact match). Adding a family:
  - runtime side: its runner in ``pipelines/tasks/`` and one ``RuntimeFamily`` entry there;
  - torch side: a package ``models/<family>/`` whose ``commands`` module has ``predict``,
    ``evaluate``, ``train``, ``export``, ``verify`` (each taking the dataclass of
    ``segstream.models.options``), ``make_runner(model, weights, backend, **settings)`` and,
    for ``segstream bench``, ``bench_subject(model, weights, size_hw)``; and one entry below.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass

from segstream.pipelines.tasks.families import RuntimeFamily, family_of_model, runtime_family
from segstream.stream.errors import ConfigError

#: Options of ``segstream predict`` / ``eval`` / ``train`` that only some families take. An option
#: not listed here applies to every family. A family declares the ones it takes as "<command> <flag>".
RESTRICTED_OPTIONS = frozenset(
    {
        "predict --input-size",
        "eval --input-size",
        "predict --mask-threshold",
        "eval --mask-threshold",
        "train --class-weights",
        "train --val-labels",
        "train --scale-range",
        "train --jitter",
        "train --warmup-iters",
        "train --weight-decay",
        "train --val-annotations",
        "train --resume",
        "train --stop-at",
        "train --val-images",
        "train --eval-every",
        "train --aspect-ratios",
        "train --square-anchors",
        "train --mask-targets",
        "train --proto-skip",
        "train --mask-threshold",
    }
)

_INSTANCE_EVAL = frozenset({"predict --mask-threshold", "eval --mask-threshold", "train --val-annotations"})
_RESUMABLE = frozenset({"train --resume", "train --stop-at", "train --val-images", "train --eval-every"})


@dataclass(frozen=True)
class ModelFamily:
    """One family of models on the torch side.

    Attributes:
        runtime: the torch-free half (name, task, runner, artifact match).
        models: every model name the family builds.
        commands: import path of the module with the family's commands (see the module docstring).
        options: the restricted CLI options (``RESTRICTED_OPTIONS``) this family takes.
        bench_subject: "module:function" building a ``segstream.export.bench.BenchSubject``; empty
            when ``segstream bench`` cannot build the family's models.
    """

    runtime: RuntimeFamily
    models: tuple[str, ...]
    commands: str
    options: frozenset[str] = frozenset()
    bench_subject: str = ""

    def __post_init__(self) -> None:
        unknown = self.options - RESTRICTED_OPTIONS
        if unknown:
            raise ValueError(
                f"family {self.name!r}: unknown options {sorted(unknown)} (known: {sorted(RESTRICTED_OPTIONS)})"
            )

    @property
    def name(self) -> str:
        return self.runtime.name

    @property
    def task(self) -> str:
        return self.runtime.task

    def accepts(self, option: str) -> bool:
        """Whether ``option`` ("train --proto-skip") applies to this family's models."""
        return option not in RESTRICTED_OPTIONS or option in self.options

    def command(self, name: str) -> Callable:
        """A function of the family's commands module ("predict", "evaluate", "make_runner", ...), imported now."""
        return getattr(importlib.import_module(self.commands), name)

    def bench_builder(self) -> Callable | None:
        """``(model, weights, size_hw) -> BenchSubject``, imported now; None without one."""
        if not self.bench_subject:
            return None
        module, _, fn = self.bench_subject.partition(":")
        return getattr(importlib.import_module(module), fn)


FAMILIES: tuple[ModelFamily, ...] = (
    ModelFamily(
        runtime_family("yolact"),
        models=(
            "yolact_base",
            "yolact_resnet50",
            "yolact_darknet53",
            "yolact_im700",
            "yolact_mobilenetv3",
            "yolact_tiny",
            "yolact_edge",  # YolactEdge: YOLACT with a split FPN and per-class standard NMS
            "yolact_edge_resnet50",
            "yolact_edge_mobilenetv2",
            "yolact_edge_vid",  # YouTube-VIS video models (keyframe path; flow net weights kept)
            "yolact_edge_vid_resnet50",
            "yolact_edge_vid_minimal",
            "yolact_edge_youtubevis",
            "yolact_edge_youtubevis_resnet50",
            "yolact_lite0",  # YOLACT on EfficientNet-Lite0 (the CamVid road instance model)
        ),
        commands="segstream.models.yolact.commands",
        options=_INSTANCE_EVAL
        | _RESUMABLE
        | {
            "train --aspect-ratios",
            "train --square-anchors",
            "train --mask-targets",
            "train --proto-skip",
            "train --mask-threshold",
        },
        bench_subject="segstream.models.yolact.commands:bench_subject",
    ),
    ModelFamily(
        runtime_family("maskrcnn"),
        models=("maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2", "maskrcnn_tiny"),
        commands="segstream.models.maskrcnn.commands",
        options=_INSTANCE_EVAL,
        bench_subject="segstream.models.maskrcnn.commands:bench_subject",
    ),
    ModelFamily(
        runtime_family("semantic"),
        models=(
            # road semantics
            "deeplabv3_mobilenet_v3_large",
            "deeplabv3_resnet50",
            "deeplabv3_resnet101",
            "lraspp_mobilenet_v3_large",
            "fcn_resnet50",
            "fcn_resnet101",
            "deeplabv3plus_mobilenet",
            "deeplabv3plus_resnet50",
            "deeplabv3plus_resnet101",
            "deeplabv3_mobilenet",  # VainF's DeepLabV3 on MobileNetV2
            "deeplab_tiny",
            "deeplabv3plus_lite0",  # DeepLabV3+ on EfficientNet-Lite0 (the CamVid road model)
            # U-Net and the paper's FCNs (transposed-convolution decoding)
            *(f"{n}{b}" for n in ("unet", "unet_small", "unet_tiny") for b in ("", "_binary")),
            *(f"fcn{v}_{bb}" for v in ("32s", "16s", "8s") for bb in ("vgg16", "resnet18")),
        ),
        commands="segstream.models.semantic.commands",
        options=_RESUMABLE
        | {
            "predict --input-size",
            "eval --input-size",
            "train --class-weights",
            "train --val-labels",
            "train --scale-range",
            "train --jitter",
            "train --warmup-iters",
            "train --weight-decay",
        },
        bench_subject="segstream.models.semantic.commands:bench_subject",
    ),
)


def _by_model(families: tuple[ModelFamily, ...]) -> dict[str, ModelFamily]:
    """Model name -> family; refuses a name claimed twice, or one whose artifacts the runtime
    would give to another family by its name prefixes."""
    out: dict[str, ModelFamily] = {}
    for f in families:
        for m in f.models:
            if m in out:
                raise ValueError(f"model {m!r} is in both the {out[m].name!r} and the {f.name!r} family")
            claimed = family_of_model(m)
            if claimed is not (f.runtime if f.runtime.model_prefixes else None):
                raise ValueError(
                    f"model {m!r} of the {f.name!r} family: the runtime would take its artifacts for "
                    f"{claimed.name if claimed else 'no family'}'s (model name prefixes)"
                )
            out[m] = f
    return out


#: model name -> its family.
MODEL_FAMILIES: dict[str, ModelFamily] = _by_model(FAMILIES)


def family_of(model: str) -> ModelFamily:
    """Returns the family of a model name, or raises ConfigError with a suggestion."""
    try:
        return MODEL_FAMILIES[model]
    except KeyError:
        close = difflib.get_close_matches(model, MODEL_FAMILIES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown model {model!r}{hint} (known: {', '.join(sorted(MODEL_FAMILIES))})") from None


def family_named(name: str) -> ModelFamily:
    """The family called ``name`` ("yolact", "maskrcnn", "semantic").

    Raises:
        KeyError: no such family.
    """
    for f in FAMILIES:
        if f.name == name:
            return f
    raise KeyError(f"no model family {name!r} (known: {', '.join(f.name for f in FAMILIES)})")
