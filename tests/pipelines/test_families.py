"""The runtime half of the model-family registry: artifact matching and runners, torch-free."""

from __future__ import annotations

import pytest

from segstream.pipelines.tasks.families import (
    RUNTIME_FAMILIES,
    RuntimeFamily,
    _check_unique,
    family_of_model,
    instance_families,
    runtime_family,
)
from segstream.pipelines.tasks.maskrcnn import MaskRCNNRunner
from segstream.pipelines.tasks.road import SemanticRunner
from segstream.pipelines.tasks.yolact import YolactRunner


@pytest.mark.parametrize(
    "model, task, family",
    [
        ("yolact", "instances", "yolact"),
        ("yolact_tiny", None, "yolact"),
        ("yolact_edge_mobilenetv2", "instances", "yolact"),  # YolactEdge
        ("yolact_lite0", "instances", "yolact"),
        ("maskrcnn", "instances", "maskrcnn"),
        ("maskrcnn_resnet50_fpn_v2", None, "maskrcnn"),
        ("deeplabv3plus_lite0", "semantic", "semantic"),  # the semantic family takes every semantic artifact
        ("unet_tiny_binary", "semantic", "semantic"),
    ],
)
def test_model_names_find_their_family(model, task, family):
    assert family_of_model(model, task).name == family


@pytest.mark.parametrize(
    "model, task",
    [
        ("detr", "instances"),
        ("yolactx", "instances"),
        ("deeplab_tiny", "instances"),
        ("deeplab_tiny", None),  # the semantic family has no prefixes: a semantic name is its only by the task
    ],
)
def test_names_of_no_family_find_none(model, task):
    assert family_of_model(model, task) is None


def test_runners_resolve_lazily_to_the_task_classes():
    assert runtime_family("yolact").runner_class() is YolactRunner
    assert runtime_family("maskrcnn").runner_class() is MaskRCNNRunner
    assert runtime_family("semantic").runner_class() is SemanticRunner
    assert [f.name for f in instance_families()] == ["yolact", "maskrcnn"]


def test_registry_refuses_duplicates_and_bad_entries():
    with pytest.raises(ValueError, match="both declare prefix 'yolact'"):
        _check_unique((*RUNTIME_FAMILIES, RuntimeFamily("edge", "instances", "E", "m:C", model_prefixes=("yolact",))))
    with pytest.raises(ValueError, match="both declare name 'semantic'"):
        _check_unique((*RUNTIME_FAMILIES, RuntimeFamily("semantic", "semantic", "S", "m:C")))
    with pytest.raises(ValueError, match="task must be one of"):
        RuntimeFamily("x", "detection", "X", "m:C")
    with pytest.raises(KeyError, match="no model family 'detr'"):
        runtime_family("detr")
