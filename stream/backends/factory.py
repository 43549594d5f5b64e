"""Chooses a backend class from the artifact type."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from segstream.stream.backends.base import Backend
from segstream.stream.backends.onnxruntime import OnnxRuntimeBackend
from segstream.stream.errors import ConfigError


def _tensorrt_backend(path: str, **options: Any) -> Backend:
    # Imported lazily: TensorRT and CUDA bindings exist only on GPU machines. An engine has
    # its precision and providers built in; of the runtime options only the device applies.
    from segstream.stream.backends.tensorrt import TensorRTBackend

    return TensorRTBackend(path, device=int(options.get("device_id", 0)))


def _triton_backend(uri: str, **options: Any) -> Backend:
    # Imported lazily: tritonclient is an optional extra. The model runs on the server, so of
    # the runtime options only the call timeout applies.
    from segstream.stream.backends.triton import TritonBackend

    return TritonBackend(uri, **{k: v for k, v in options.items() if k == "timeout_s"})


#: URI scheme -> backend, for models served elsewhere (checked before the suffix).
BACKENDS_BY_SCHEME: dict[str, Callable[..., Backend]] = {
    "triton://": _triton_backend,
}

BACKENDS_BY_SUFFIX: dict[str, Callable[..., Backend]] = {
    ".onnx": OnnxRuntimeBackend,
    ".engine": _tensorrt_backend,
    ".plan": _tensorrt_backend,
}


def is_remote(path: str) -> bool:
    """True for a served model (``triton://...``): no file to check, the server has it."""
    return str(path).startswith(tuple(BACKENDS_BY_SCHEME))


def open_backend(path: str, **options: Any) -> Backend:
    """Opens an artifact with the backend its suffix calls for.

    Args:
        path: .onnx (ONNX Runtime), .engine/.plan (TensorRT) or triton://host:port/model[/version].
        **options: passed to the backend's constructor.
    """
    for scheme, remote in BACKENDS_BY_SCHEME.items():
        if str(path).startswith(scheme):
            return remote(str(path), **options)
    suffix = os.path.splitext(str(path))[1].lower()
    factory = BACKENDS_BY_SUFFIX.get(suffix)
    if factory is None:
        raise ConfigError(
            f"{path}: unknown artifact type {suffix!r}; expected one of {sorted(BACKENDS_BY_SUFFIX)} "
            f"or a URI starting {' or '.join(BACKENDS_BY_SCHEME)}"
        )
    return factory(str(path), **options)
