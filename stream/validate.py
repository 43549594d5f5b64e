"""Declarative checks for configuration dataclasses: ranges and choices live in the annotations.

A field says what it accepts where it is declared, and one function turns that into the
one-line error every section gives::

    @dataclass
    class SourceConfig(Checked):
        SECTION: ClassVar[str] = "source"
        policy: Literal["auto", "block", "latest"] = "auto"
        max_in_flight: Annotated[int, Range(ge=0)] = 2

    SourceConfig(max_in_flight=-1)  # ValueError: source.max_in_flight must be >= 0, got -1

Checks that relate two fields stay in a ``check`` method, which runs after the declared ones.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal, get_args, get_origin


@dataclass(frozen=True)
class Range:
    """Bounds of a number: ``ge``/``gt`` below, ``le``/``lt`` above (None: unbounded)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def __post_init__(self) -> None:
        if self.ge is not None and self.gt is not None or self.le is not None and self.lt is not None:
            raise TypeError("Range: give at most one lower (ge/gt) and one upper (le/lt) bound")

    def holds(self, v: float) -> bool:
        return (
            (self.ge is None or v >= self.ge)
            and (self.gt is None or v > self.gt)
            and (self.le is None or v <= self.le)
            and (self.lt is None or v < self.lt)
        )

    def describe(self, integer: bool) -> str:
        """'>= 0', '> 0', 'in [0, 1]', 'in (0, 1]', or for integers with both bounds 'in 1..64'."""
        lo, hi = (self.ge if self.ge is not None else self.gt), (self.le if self.le is not None else self.lt)
        if lo is None:
            return f"{'<=' if self.le is not None else '<'} {_num(hi)}"
        if hi is None:
            return f"{'>=' if self.ge is not None else '>'} {_num(lo)}"
        if integer and self.ge is not None and self.le is not None:
            return f"in {_num(lo)}..{_num(hi)}"
        return f"in {'[' if self.ge is not None else '('}{_num(lo)}, {_num(hi)}{']' if self.le is not None else ')'}"


def _num(v: float | None) -> str:
    return str(int(v)) if v is not None and float(v).is_integer() else str(v)


def choices_text(choices: tuple) -> str:
    """ "'a', 'b' or 'c'" (strings quoted, as a config file spells them)."""
    names = [repr(c) if isinstance(c, str) else str(c) for c in choices]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def check_fields(obj: object, section: str) -> None:
    """Raises ValueError naming ``section.field``, what it accepts and what it got, for the first
    field of the dataclass ``obj`` outside its ``Range`` or ``Literal`` choices."""
    hints = typing.get_type_hints(type(obj), include_extras=True)
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        hint, value = hints[f.name], getattr(obj, f.name)
        ranges: list[Range] = []
        if get_origin(hint) is Annotated:
            hint, *meta = get_args(hint)
            ranges = [m for m in meta if isinstance(m, Range)]
        if get_origin(hint) is Literal:
            choices = get_args(hint)
            if value not in choices:
                raise ValueError(f"{section}.{f.name} must be {choices_text(choices)}, got {value!r}")
        for r in ranges:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{section}.{f.name} must be a number, got {value!r}")
            if not r.holds(value):
                raise ValueError(f"{section}.{f.name} must be {r.describe(hint is int)}, got {value}")


class Checked:
    """Mixin for configuration dataclasses: ``SECTION`` names it in errors; the declared ranges
    and choices are checked on construction, then ``check`` (cross-field rules)."""

    SECTION: ClassVar[str] = ""

    def __post_init__(self) -> None:
        check_fields(self, self.SECTION)
        self.check()

    def check(self) -> None:
        """Rules that relate several fields; the declared ones have passed."""
