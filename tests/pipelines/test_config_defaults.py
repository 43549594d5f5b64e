"""One source of truth for the configuration: config.toml lists every key of the dataclasses with
their defaults, except the repository's declared choices."""

from __future__ import annotations

import dataclasses
import os

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import pytest

from segstream.pipelines.apps.config import REPOSITORY_CHOICES, AppConfig, load_config
from segstream.stream.errors import ConfigError
from tests.conftest import ROOT


def _defaults() -> dict:
    return dataclasses.asdict(AppConfig())


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= _flat(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
    return out


def test_config_toml_lists_every_key_with_the_dataclass_default_or_a_declared_choice():
    with open(os.path.join(ROOT, "config.toml"), "rb") as f:
        toml = _flat(tomllib.load(f))
    defaults = _flat(_defaults())
    assert sorted(toml) == sorted(defaults), "config.toml and the dataclasses list different keys"
    differ = {k: toml[k] for k in toml if toml[k] != defaults[k]}
    assert differ == REPOSITORY_CHOICES


def test_the_repository_config_loads_to_the_defaults_plus_its_choices():
    cfg = load_config(os.path.join(ROOT, "config.toml"))
    got = _flat(dataclasses.asdict(cfg))
    want = _flat(_defaults()) | REPOSITORY_CHOICES
    assert got == want


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("schedule.cpu_share=0", "schedule.cpu_share must be in (0, 1], got 0"),
        ("tracking.iou_threshold=1.0", "tracking.iou_threshold must be in (0, 1), got 1.0"),
        ("semantic.smoothing='blur'", "semantic.smoothing must be 'off', 'ema' or 'hysteresis', got 'blur'"),
        ("runtime.queue_size=0", "runtime.queue_size must be in 1..1024, got 0"),
        ("instances.workers=0", "instances.workers must be in 1..64, got 0"),
        ("overlay.mask_alpha=2", "overlay.mask_alpha must be in [0, 1], got 2"),
    ],
)
def test_declared_ranges_reach_the_user_as_one_line_config_errors(assignment, message):
    with pytest.raises(ConfigError) as e:
        load_config(os.path.join(ROOT, "config.toml"), [assignment])
    assert message in str(e.value)
    assert "\n" not in str(e.value)
