"""ONNX Runtime backend (CPU, CUDA and TensorRT execution providers)."""

from __future__ import annotations

import logging
import os

import numpy as np

from stream.backends.base import METADATA_KEY, ArtifactMetadata, Backend, TensorSpec
from stream.errors import BackendError, ModelError

log = logging.getLogger(__name__)

_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(bool)": np.bool_,
}

#: Short names accepted in config, mapped to ONNX Runtime provider names.
PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}

_PROVIDER_PACKAGES = {
    "CUDAExecutionProvider": "onnxruntime-gpu (pip install 'segstream[gpu]')",
    "TensorrtExecutionProvider": "onnxruntime-gpu built with TensorRT, plus TensorRT 10",
}

_OPT_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


class OnnxRuntimeBackend(Backend):
    """Runs an ONNX file with ONNX Runtime.

    Args:
        path: the .onnx file.
        providers: provider names or aliases ("cpu", "cuda", "tensorrt") in order of preference.
        allow_fallback: if False, a missing provider is an error; if True the next one is tried.
        intra_op_threads: threads inside one operator (0: ONNX Runtime's default).
        inter_op_threads: threads across operators (0: default).
        optimization: "disable", "basic", "extended" or "all".
    """

    name = "onnxruntime"

    def __init__(
        self,
        path: str,
        providers: tuple[str, ...] | list[str] = ("cpu",),
        allow_fallback: bool = True,
        intra_op_threads: int = 0,
        inter_op_threads: int = 0,
        optimization: str = "all",
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendError("onnxruntime is not installed: pip install onnxruntime (or onnxruntime-gpu)") from None
        self.path = str(path)
        if not os.path.isfile(self.path):
            raise ModelError(f"{self.path}: no such ONNX file; export one with 'segstream export'")
        if optimization not in _OPT_LEVELS:
            raise BackendError(f"optimization must be one of {sorted(_OPT_LEVELS)}, got {optimization!r}")
        available = set(ort.get_available_providers())
        chosen = []
        for p in providers:
            full = PROVIDER_ALIASES.get(p, p)
            if full in available:
                chosen.append(full)
            elif not allow_fallback:
                need = _PROVIDER_PACKAGES.get(full, "an onnxruntime build that has it")
                raise BackendError(
                    f"execution provider {full} is not available (have {sorted(available)}); install {need} "
                    "or set allow_fallback = true"
                )
            else:
                log.warning("execution provider %s not available, trying the next one", full)
        if not chosen:
            if not allow_fallback:
                raise BackendError(f"none of the providers {list(providers)} is available (have {sorted(available)})")
            chosen = ["CPUExecutionProvider"]
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(intra_op_threads)
        so.inter_op_num_threads = int(inter_op_threads)
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT_LEVELS[optimization])
        so.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(self.path, sess_options=so, providers=chosen)
        except Exception as exc:  # ORT raises its own untyped errors; say which file and why
            raise ModelError(f"{self.path}: ONNX Runtime cannot load it ({str(exc).splitlines()[0]})") from exc
        used = self._session.get_providers()
        self.providers = used
        self.device = "cuda" if used and used[0] in ("CUDAExecutionProvider", "TensorrtExecutionProvider") else "cpu"
        log.info("onnxruntime: %s runs on %s", os.path.basename(self.path), used[0] if used else "?")
        self.inputs = [
            TensorSpec(i.name, tuple(i.shape), np.dtype(_ORT_TYPES.get(i.type, np.float32)))
            for i in self._session.get_inputs()
        ]
        self.outputs = [
            TensorSpec(o.name, tuple(o.shape), np.dtype(_ORT_TYPES.get(o.type, np.float32)))
            for o in self._session.get_outputs()
        ]
        props = self._session.get_modelmeta().custom_metadata_map
        self.metadata = ArtifactMetadata.from_json(props[METADATA_KEY], origin=self.path) if METADATA_KEY in props else None
        self._output_names = [o.name for o in self.outputs]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self._session.run(self._output_names, feeds)
        return dict(zip(self._output_names, values))

    def close(self) -> None:
        self._session = None
