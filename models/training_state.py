"""Reading back the resumable state a training run wrote (``<out>.last.pth``), for ``--resume``."""

from __future__ import annotations

import os
from collections.abc import Callable

import torch

from segstream.stream.errors import ConfigError


def read_resumable(
    path: str, settings: dict, find_state: Callable[[dict], object], saved_key: str
) -> tuple[dict, dict]:
    """Loads ``path`` (``weights_only``) and returns (the whole file, its training state).

    Args:
        settings: what the resumed run must share with the one it continues.
        find_state: where the family keeps the training state in the file's dict.
        saved_key: the key of the saved settings inside the training state.

    Raises:
        ConfigError: no such file, no training state in it, or other settings (each one named).
    """
    if not os.path.isfile(path):
        raise ConfigError(f"--resume {path}: no such file; give the .last.pth an earlier run wrote")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    state = find_state(obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict):
        raise ConfigError(
            f"--resume {path}: holds no training state (optimiser, iteration); give a .last.pth "
            "that 'segstream train' wrote, or start from it with --weights"
        )
    saved = state[saved_key]
    diff = {k: (v, saved.get(k)) for k, v in settings.items() if saved.get(k) != v}
    if diff:
        shown = ", ".join(f"{k} {old!r} in the file, {new!r} now" for k, (new, old) in diff.items())
        raise ConfigError(f"--resume {path}: the run it continues had other settings ({shown}); use the same ones")
    return obj, state
