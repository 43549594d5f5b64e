"""Reading checkpoint files, for every family: ``torch.load(..., weights_only=True)`` (nothing in a
file is executed) with one-line errors that say what was expected, and the unwrapping of the
common layouts (a plain state dict, or one under ``model_state`` / ``state_dict`` / ``model``,
with segstream's own settings under ``segstream``)."""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch

from segstream.stream.errors import ModelError


def read_checkpoint(path: str, *, kind: str, expected: str, safe_globals: Iterable = ()) -> object:
    """The object a checkpoint file holds.

    Args:
        path: the ``.pth`` file.
        kind: what the file should be for, in the missing-file error ("a YOLACT", "a Mask R-CNN").
        expected: the tail of the errors that names the layout (e.g. "; expected a VainF ...
            state dict" or " (expected yolact_base: ...)").
        safe_globals: extra types ``weights_only`` may build (numpy scalars in old files).

    Raises:
        ModelError: no such file, or not readable as a torch checkpoint (damaged, truncated, another
            format).
    """
    if not os.path.isfile(path):
        raise ModelError(f"{path}: no such checkpoint file; give the path of {kind} .pth file{expected}")
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip, pickle and torch errors all mean "not a loadable checkpoint"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"{path}: cannot read it as a torch checkpoint ({first[:160]}); the file is damaged or truncated "
            f"(download or train it again) or not a checkpoint{expected}"
        ) from None


def unwrap_state_dict(
    obj: object, path: str, layout: str, keys: tuple[str, ...] = ("model_state", "state_dict", "model")
) -> tuple[dict, dict]:
    """(state dict of tensors, segstream settings) from a checkpoint's object: the first of ``keys``
    holding a dict, else the object itself; a DataParallel ``module.`` prefix is dropped.

    Raises:
        ModelError: not a dict, or no state dict of tensors in it ("..., expected {layout}").
    """
    if not isinstance(obj, dict):
        raise ModelError(f"{path}: holds a {type(obj).__name__}, expected {layout}")
    info = obj.get("segstream") if isinstance(obj.get("segstream"), dict) else {}
    for key in keys:
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not obj or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise ModelError(f"{path}: no state dict of tensors found, expected {layout}")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return obj, info
