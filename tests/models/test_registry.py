"""The torch half of the model-family registry: every model name has one family whose runtime
half recognises its artifacts; commands, runners and bench builders resolve; the registry itself
imports no torch; which restricted CLI options each family takes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from segstream.models.registry import (
    FAMILIES,
    MODEL_FAMILIES,
    RESTRICTED_OPTIONS,
    ModelFamily,
    _by_model,
    family_named,
    family_of,
)
from segstream.pipelines.tasks.families import family_of_model, runtime_family
from segstream.stream.errors import ConfigError
from tests.conftest import ROOT


@pytest.mark.parametrize("model", sorted(MODEL_FAMILIES))
def test_the_runtime_gives_each_models_artifacts_to_its_family(model):
    family = family_of(model)
    assert family_of_model(model, family.task) is family.runtime


def test_commands_and_bench_builders_resolve():
    for family in FAMILIES:
        for name in ("predict", "evaluate", "train", "export", "verify", "make_runner", "bench_subject"):
            assert callable(family.command(name)), (family.name, name)
        assert family.bench_builder() is family.command("bench_subject")


def test_the_registry_imports_no_torch():
    code = (
        "import sys, segstream.models.registry as r; r.family_of('yolact_tiny').runtime.runner_class(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


# Who takes which restricted option (what the CLI checked with `family ==` before the registry).
OPTION_TABLE = {
    "predict --input-size": {"semantic"},
    "eval --input-size": {"semantic"},
    "predict --mask-threshold": {"yolact", "maskrcnn"},
    "eval --mask-threshold": {"yolact", "maskrcnn"},
    "train --val-annotations": {"yolact", "maskrcnn"},
    **{
        f"train {o}": {"semantic"}
        for o in ("--class-weights", "--val-labels", "--scale-range", "--jitter", "--warmup-iters", "--weight-decay")
    },
    **{f"train {o}": {"semantic", "yolact"} for o in ("--resume", "--stop-at", "--val-images", "--eval-every")},
    **{
        f"train {o}": {"yolact"}
        for o in ("--aspect-ratios", "--square-anchors", "--mask-targets", "--proto-skip", "--mask-threshold")
    },
}


@pytest.mark.parametrize("option", sorted(RESTRICTED_OPTIONS))
def test_restricted_options_by_family(option):
    assert {f.name for f in FAMILIES if f.accepts(option)} == OPTION_TABLE[option]


def test_unrestricted_options_apply_to_every_family():
    assert all(f.accepts("train --epochs") and f.accepts("export --opset") for f in FAMILIES)


def test_unknown_models_options_and_duplicates_are_refused():
    with pytest.raises(ConfigError, match="unknown model 'yolact_mobilenet'; did you mean 'yolact_mobilenetv3'"):
        family_of("yolact_mobilenet")
    with pytest.raises(ValueError, match="unknown options"):
        ModelFamily(runtime_family("yolact"), ("yolact_x",), "m", options=frozenset({"train --colour"}))
    twice = ModelFamily(runtime_family("semantic"), ("yolact_tiny",), "m")
    with pytest.raises(ValueError, match="'yolact_tiny' is in both"):
        _by_model((*FAMILIES, twice))
    stray = ModelFamily(runtime_family("maskrcnn"), ("mrcnn_small",), "m")
    with pytest.raises(ValueError, match="would take its artifacts for no family"):
        _by_model((stray,))
    with pytest.raises(KeyError):
        family_named("detr")
