"""ONNX Runtime backend (CPU, CUDA and TensorRT execution providers)."""

from __future__ import annotations

import logging
import os

import numpy as np

from segstream.stream.backends.base import METADATA_KEY, ArtifactMetadata, Backend, TensorSpec
from segstream.stream.errors import BackendError, ModelError

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


def provider_entry(
    name: str,
    *,
    device_id: int = 0,
    trt_fp16: bool = False,
    trt_engine_cache_path: str | None = None,
) -> str | tuple[str, dict]:
    """The ``providers=`` entry for one provider: its name, or (name, options) for GPU ones.

    Args:
        name: full provider name (``PROVIDER_ALIASES`` values).
        device_id: CUDA device for the CUDA and TensorRT providers.
        trt_fp16: TensorRT provider: allow FP16 kernels.
        trt_engine_cache_path: TensorRT provider: keep built engines in this folder, so the
            next start loads them instead of rebuilding (minutes for big models).
    """
    if name == "CUDAExecutionProvider":
        return name, {"device_id": int(device_id)}
    if name == "TensorrtExecutionProvider":
        opts: dict = {"device_id": int(device_id), "trt_fp16_enable": bool(trt_fp16)}
        if trt_engine_cache_path:
            opts["trt_engine_cache_enable"] = True
            opts["trt_engine_cache_path"] = str(trt_engine_cache_path)
        return name, opts
    return name


class OnnxRuntimeBackend(Backend):
    """Runs an ONNX file with ONNX Runtime.

    The providers are tried in the order given. A missing one is an error naming the
    package to install unless ``allow_fallback``; then the next one is used (finally CPU)
    with a warning. The provider actually used is logged once, when the session opens.
    With CUDA first, inputs are bound from host memory and outputs through an I/O binding
    (``session.io_binding()``), so ONNX Runtime does not stage copies per call.

    Args:
        path: the .onnx file.
        providers: provider names or aliases ("cpu", "cuda", "tensorrt") in order of preference.
        allow_fallback: if False, a missing provider is an error; if True the next one is tried.
        intra_op_threads: threads inside one operator (0: ONNX Runtime's default).
        inter_op_threads: threads across operators (0: default).
        optimization: "disable", "basic", "extended" or "all".
        device_id: CUDA device for the CUDA and TensorRT providers.
        io_binding: None: bind I/O when CUDA is the provider used; True: always (also on CPU);
            False: never.
        outputs_on: with I/O binding, where outputs land before the copy to the host:
            "device" (the provider's device) or "cpu".
        trt_fp16 / trt_engine_cache_path: TensorRT provider options (see ``provider_entry``).
        allow_spinning: let ONNX Runtime's worker threads spin-wait for work between operators
            (its default). Spinning threads burn a core doing nothing, which costs when two
            models and the pipeline's own stages share few cores: off, the threads sleep
            (session config ``session.intra_op.allow_spinning`` / ``inter_op`` = "0").
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
        *,
        device_id: int = 0,
        io_binding: bool | None = None,
        outputs_on: str = "device",
        trt_fp16: bool = False,
        trt_engine_cache_path: str | None = None,
        allow_spinning: bool = True,
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
        if outputs_on not in ("device", "cpu"):
            raise BackendError(f"outputs_on must be 'device' or 'cpu', got {outputs_on!r}")
        if not providers:
            raise BackendError("providers is empty; give at least one of 'cpu', 'cuda', 'tensorrt'")
        available = set(ort.get_available_providers())
        requested = [PROVIDER_ALIASES.get(p, p) for p in providers]
        chosen = []
        for full in requested:
            if full in available:
                chosen.append(full)
                continue
            need = _PROVIDER_PACKAGES.get(full, "an onnxruntime build that has it")
            if not allow_fallback:
                raise BackendError(
                    f"execution provider {full} is not available (have {sorted(available)}); install {need} "
                    "or set allow_fallback = true"
                )
            log.warning("execution provider %s is not available (install %s); trying the next one", full, need)
        if not chosen:
            chosen = ["CPUExecutionProvider"]
        entries = [
            provider_entry(p, device_id=device_id, trt_fp16=trt_fp16, trt_engine_cache_path=trt_engine_cache_path)
            for p in chosen
        ]
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(intra_op_threads)
        so.inter_op_num_threads = int(inter_op_threads)
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT_LEVELS[optimization])
        so.log_severity_level = 3
        if not allow_spinning:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            so.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self.allow_spinning = bool(allow_spinning)
        try:
            self._session = ort.InferenceSession(self.path, sess_options=so, providers=entries)
        except Exception as exc:  # ORT raises its own untyped errors; say which file and why
            raise ModelError(f"{self.path}: ONNX Runtime cannot load it ({str(exc).splitlines()[0]})") from exc
        used = self._session.get_providers()
        self.providers = used
        first = used[0] if used else "CPUExecutionProvider"
        if first != requested[0]:
            # Also catches a GPU provider that is listed but fails to load its CUDA libraries:
            # ONNX Runtime then drops it silently.
            need = _PROVIDER_PACKAGES.get(requested[0], "an onnxruntime build that has it")
            if not allow_fallback:
                raise BackendError(
                    f"{self.path}: asked for {requested[0]} but ONNX Runtime runs it on {first}; install {need} "
                    "(and the CUDA libraries it needs) or set allow_fallback = true"
                )
            log.warning(
                "onnxruntime: %s runs on %s, not the %s asked for (fallback allowed; install %s)",
                os.path.basename(self.path),
                first,
                requested[0],
                need,
            )
        else:
            log.info("onnxruntime: %s runs on %s", os.path.basename(self.path), first)
        on_gpu = first in ("CUDAExecutionProvider", "TensorrtExecutionProvider")
        self.device = f"cuda:{int(device_id)}" if on_gpu else "cpu"
        self.inputs = [
            TensorSpec(i.name, tuple(i.shape), np.dtype(_ORT_TYPES.get(i.type, np.float32)))
            for i in self._session.get_inputs()
        ]
        self.outputs = [
            TensorSpec(o.name, tuple(o.shape), np.dtype(_ORT_TYPES.get(o.type, np.float32)))
            for o in self._session.get_outputs()
        ]
        props = self._session.get_modelmeta().custom_metadata_map
        self.metadata = (
            ArtifactMetadata.from_json(props[METADATA_KEY], origin=self.path) if METADATA_KEY in props else None
        )
        self._output_names = [o.name for o in self.outputs]
        self.io_binding = (first == "CUDAExecutionProvider") if io_binding is None else bool(io_binding)
        if outputs_on == "device" and on_gpu:
            self._output_device = ("cuda", int(device_id))
        else:
            self._output_device = ("cpu", 0)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._session is None:
            raise BackendError(f"{self.path}: run after close")
        if self.io_binding:
            return self._run_bound(feeds)
        values = self._session.run(self._output_names, feeds)
        return dict(zip(self._output_names, values))

    def _run_bound(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One call through an I/O binding: host inputs bound as they are, outputs allocated by
        ONNX Runtime on ``outputs_on`` and copied to the host once at the end."""
        binding = self._session.io_binding()
        for name, arr in feeds.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(arr))
        device_type, device_id = self._output_device
        for name in self._output_names:
            binding.bind_output(name, device_type, device_id)
        self._session.run_with_iobinding(binding)
        values = binding.copy_outputs_to_cpu()
        return dict(zip(self._output_names, values))

    def close(self) -> None:
        self._session = None
