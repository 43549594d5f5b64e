"""The model families as the runtime sees them: which exported artifacts a family owns and the
torch-free runner that runs them.

Each family is one ``RuntimeFamily`` entry in ``RUNTIME_FAMILIES``; the torch side
(``segstream.models.registry``) adds its commands, builders and model names to the same family
by its ``name``. Runners are referenced by import path and imported on use, so this module
imports nothing but the standard library (the task modules import it, not the other way round).

Adding a family here: write its runner in ``pipelines/tasks/`` (constructor ``(backend, **settings)``,
``preprocess``, ``postprocess``, ``__call__(image_bgr)``) and add one ``RuntimeFamily`` below.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

TASKS = ("instances", "semantic")


@dataclass(frozen=True)
class RuntimeFamily:
    """One family of models on the runtime side.

    Attributes:
        name: the family's id, also the first word of its instance model names ("yolact").
        task: what its artifacts produce, "instances" or "semantic" (their metadata's ``task``).
        display_name: the family in messages ("YOLACT", "Mask R-CNN").
        runner: "module:Class" of the torch-free runner of an exported artifact.
        model_prefixes: a model name belongs to the family when it equals one of these or starts
            with one and "_" ("yolact" owns "yolact_edge_resnet50"); empty: every model of ``task``
            that no other family claims (the semantic models have many names and one runner).
    """

    name: str
    task: str
    display_name: str
    runner: str
    model_prefixes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"family {self.name!r}: task must be one of {TASKS}, got {self.task!r}")
        if ":" not in self.runner:
            raise ValueError(f"family {self.name!r}: runner must be 'module:Class', got {self.runner!r}")

    def owns_name(self, model: str) -> bool:
        """True when ``model`` (a model name or this family's name) is one of this family's by its prefix."""
        return any(model == p or model.startswith(p + "_") for p in self.model_prefixes)

    def runner_class(self) -> type:
        """The runner class, imported now."""
        module, _, cls = self.runner.partition(":")
        return getattr(importlib.import_module(module), cls)


#: Every family, once. A model name is matched against the families in this order.
RUNTIME_FAMILIES: tuple[RuntimeFamily, ...] = (
    RuntimeFamily(
        "yolact", "instances", "YOLACT", "segstream.pipelines.tasks.yolact:YolactRunner", model_prefixes=("yolact",)
    ),  # YOLACT, YolactEdge, yolact_lite0
    RuntimeFamily(
        "maskrcnn",
        "instances",
        "Mask R-CNN",
        "segstream.pipelines.tasks.maskrcnn:MaskRCNNRunner",
        model_prefixes=("maskrcnn",),
    ),
    RuntimeFamily("semantic", "semantic", "semantic", "segstream.pipelines.tasks.road:SemanticRunner"),
)


def _check_unique(families: tuple[RuntimeFamily, ...]) -> None:
    """Refuses two families with one name or one model prefix (a name would match both)."""
    seen: dict[str, str] = {}
    for f in families:
        for key in (f"name {f.name!r}", *(f"prefix {p!r}" for p in f.model_prefixes)):
            if key in seen:
                raise ValueError(f"model families {seen[key]!r} and {f.name!r} both declare {key}")
            seen[key] = f.name


_check_unique(RUNTIME_FAMILIES)


def runtime_family(name: str) -> RuntimeFamily:
    """The family called ``name`` ("yolact", "maskrcnn", "semantic").

    Raises:
        KeyError: no such family.
    """
    for f in RUNTIME_FAMILIES:
        if f.name == name:
            return f
    raise KeyError(f"no model family {name!r} (known: {', '.join(f.name for f in RUNTIME_FAMILIES)})")


def family_of_model(model: str, task: str | None = None) -> RuntimeFamily | None:
    """The family a model name (or a family name) belongs to by its prefix, optionally only among
    the families of ``task``; then a family of ``task`` without prefixes; None when none fits."""
    candidates = [f for f in RUNTIME_FAMILIES if task is None or f.task == task]
    for f in candidates:
        if f.owns_name(model):
            return f
    if task is not None:
        return next((f for f in candidates if not f.model_prefixes), None)
    return None


def instance_families() -> tuple[RuntimeFamily, ...]:
    """The families whose artifacts produce instances, in registry order."""
    return tuple(f for f in RUNTIME_FAMILIES if f.task == "instances")
