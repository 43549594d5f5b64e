"""Typed configuration from TOML: dataclasses filled from dicts, with errors that name the file
and the key, and a "did you mean" for unknown keys. Generic; the pipeline's sections live in
pipelines/apps/config.py."""

from __future__ import annotations

import dataclasses
import difflib
import sys
import types
import typing
from typing import Any, get_args, get_origin, get_type_hints

from segstream.stream.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def read_toml(path: str) -> dict:
    """Parses a TOML file; syntax errors become ConfigError with the file and line."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: TOML syntax error: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None


def _type_name(tp) -> str:
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin in (list, tuple):
        return "a list"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false", type(None): "none"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _coerce(value: Any, tp, where: str, origin_file: str) -> Any:
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in get_args(tp):
            try:
                return _coerce(value, arg, where, origin_file)
            except ConfigError as exc:
                errors.append(exc)
        raise ConfigError(f"{origin_file}: {where} must be {_type_name(tp)}, got {value!r}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{origin_file}: {where} must be none, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{origin_file}: [{where}] must be a table, got {value!r}")
        return from_dict(tp, value, origin_file, prefix=where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{origin_file}: {where} must be a list, got {value!r}")
        args = get_args(tp)
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{where}[{i}]", origin_file) for i, v in enumerate(value)]
        return list(items) if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{origin_file}: {where} must be a table, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        return value
    raise ConfigError(f"{origin_file}: {where} must be {_type_name(tp)}, got {value!r}")


def from_dict(cls, data: dict, origin_file: str = "config", prefix: str = ""):
    """Builds dataclass ``cls`` from ``data``, rejecting unknown keys with a suggestion.

    Dataclasses validate ranges in ``__post_init__`` by raising ValueError; that becomes a
    ConfigError naming the file and section.
    """
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs = {}
    for key, value in data.items():
        where = f"{prefix}.{key}" if prefix else key
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(names)}"
            raise ConfigError(f"{origin_file}: unknown key '{where}'{hint}")
        kwargs[key] = _coerce(value, hints[key], where, origin_file)
    try:
        return cls(**kwargs)
    except ValueError as exc:
        section = f"[{prefix}] " if prefix else ""
        raise ConfigError(f"{origin_file}: {section}{exc}") from None


def apply_override(data: dict, assignment: str) -> None:
    """Applies ``section.key=value`` (value parsed as TOML, else taken as a string) to a dict."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. runtime.queue_size=8")
    key, raw = assignment.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    node = data
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {assignment!r}: {part} is not a section")
    node[parts[-1]] = value


def parse_size_hw(text: str | None, what: str = "--input-size") -> tuple[int, int] | None:
    """ "HxW" -> (H, W) pixels; None or "" stays None. Both sides must be >= 16."""
    if not text:
        return None
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"{what} must look like 512x1024 (height x width), got {text!r}") from None
    if h < 16 or w < 16:
        raise ConfigError(f"{what} must be at least 16x16, got {text!r}")
    return h, w
