"""Inference backends: one class per runtime behind a small base, chosen by artifact type.

``open_backend(path)`` picks the class from the file suffix through ``BACKENDS_BY_SUFFIX``;
nothing here imports torch.
"""

from segstream.stream.backends.base import METADATA_KEY, ArtifactMetadata, Backend
from segstream.stream.backends.factory import BACKENDS_BY_SUFFIX, open_backend
from segstream.stream.backends.onnxruntime import OnnxRuntimeBackend

__all__ = [
    "Backend",
    "ArtifactMetadata",
    "METADATA_KEY",
    "OnnxRuntimeBackend",
    "open_backend",
    "BACKENDS_BY_SUFFIX",
]
