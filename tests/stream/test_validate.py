"""Declared ranges and choices give the same one-line errors for every configuration section."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

import pytest

from segstream.stream.validate import Checked, Range, check_fields


@dataclass
class _Section(Checked):
    SECTION: ClassVar[str] = "demo"
    mode: Literal["off", "ema", "hysteresis"] = "off"
    count: Annotated[int, Range(ge=1, le=64)] = 1
    share: Annotated[float, Range(gt=0, le=1)] = 0.5
    rate: Annotated[float, Range(ge=0)] = 0.0
    lo: int = 1
    hi: int = 2

    def check(self) -> None:
        if self.hi < self.lo:
            raise ValueError("demo.hi must be >= demo.lo")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mode": "fast"}, "demo.mode must be 'off', 'ema' or 'hysteresis', got 'fast'"),
        ({"count": 0}, "demo.count must be in 1..64, got 0"),
        ({"count": 65}, "demo.count must be in 1..64, got 65"),
        ({"share": 0.0}, "demo.share must be in (0, 1], got 0.0"),
        ({"share": 1.5}, "demo.share must be in (0, 1], got 1.5"),
        ({"rate": -1.0}, "demo.rate must be >= 0, got -1.0"),
        ({"rate": "fast"}, "demo.rate must be a number, got 'fast'"),
        ({"lo": 3}, "demo.hi must be >= demo.lo"),
    ],
)
def test_each_declaration_gives_its_one_line_error(kwargs, message):
    with pytest.raises(ValueError) as e:
        _Section(**kwargs)
    assert str(e.value) == message


def test_values_inside_the_declarations_pass_including_the_bounds():
    s = _Section(mode="hysteresis", count=64, share=1.0, rate=0.0, lo=2, hi=2)
    check_fields(s, "demo")


def test_range_descriptions():
    assert Range(gt=0).describe(False) == "> 0"
    assert Range(ge=0, le=1).describe(False) == "in [0, 1]"
    assert Range(ge=0, lt=1).describe(False) == "in [0, 1)"
    assert Range(ge=16).describe(True) == ">= 16"
    with pytest.raises(TypeError):
        Range(ge=0, gt=0)
