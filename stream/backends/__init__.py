"""Inference backends: one class per runtime behind a small base, chosen by artifact type.

``open_backend(path)`` picks the class from the file suffix through ``BACKENDS_BY_SUFFIX``;
nothing here imports torch.
"""

from stream.backends.base import Backend, ArtifactMetadata, METADATA_KEY
from stream.backends.onnxruntime import OnnxRuntimeBackend
from stream.backends.factory import open_backend, BACKENDS_BY_SUFFIX

__all__ = [
    "Backend",
    "ArtifactMetadata",
    "METADATA_KEY",
    "OnnxRuntimeBackend",
    "open_backend",
    "BACKENDS_BY_SUFFIX",
]
