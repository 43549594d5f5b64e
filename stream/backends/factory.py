"""Chooses a backend class from the artifact type."""

from __future__ import annotations

import os
from typing import Any

from segstream.stream.backends.base import Backend
from segstream.stream.backends.onnxruntime import OnnxRuntimeBackend
from segstream.stream.errors import ConfigError


def _tensorrt_backend(path: str, **options: Any) -> Backend:
    # Imported lazily: TensorRT and CUDA bindings exist only on GPU machines. An engine has
    # its precision and providers built in; of the runtime options only the device applies.
    from segstream.stream.backends.tensorrt import TensorRTBackend

    return TensorRTBackend(path, device=int(options.get("device_id", 0)))


BACKENDS_BY_SUFFIX = {
    ".onnx": OnnxRuntimeBackend,
    ".engine": _tensorrt_backend,
    ".plan": _tensorrt_backend,
}


def open_backend(path: str, **options: Any) -> Backend:
    """Opens an artifact with the backend its suffix calls for.

    Args:
        path: .onnx (ONNX Runtime) or .engine/.plan (TensorRT).
        **options: passed to the backend's constructor.
    """
    suffix = os.path.splitext(str(path))[1].lower()
    factory = BACKENDS_BY_SUFFIX.get(suffix)
    if factory is None:
        raise ConfigError(f"{path}: unknown artifact type {suffix!r}; expected one of {sorted(BACKENDS_BY_SUFFIX)}")
    return factory(str(path), **options)
