"""TensorRT 10 backend: one serialized engine run on one CUDA stream.

Written against the TensorRT 10 Python API (``trt.Runtime``, ``deserialize_cuda_engine``,
named I/O tensors, ``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``) with
CUDA memory and the stream from ``cuda-python``. Neither package is imported at module
level: ``import stream.backends.tensorrt`` works everywhere, and constructing a backend
without them raises a BackendError that says what to install.

The engine's self-description lives in a JSON side file ``<engine>.json`` written by
``export.tensorrt.build_engine``: the ONNX file's segstream metadata plus an ``engine`` block
(precision, TensorRT version, optimisation profiles). It is read with ``json`` only.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
from typing import Any

import numpy as np

from segstream.stream.backends.base import ArtifactMetadata, Backend, TensorSpec
from segstream.stream.errors import BackendError, ModelError

log = logging.getLogger(__name__)

#: What to install, said once for every missing-package error.
INSTALL_HINT = (
    "on a Jetson install JetPack's TensorRT Python bindings (apt install python3-libnvinfer) and "
    "pip install cuda-python matching JetPack's CUDA; on x86 with an NVIDIA GPU: pip install tensorrt cuda-python"
)


def import_tensorrt() -> Any:
    """Returns the ``tensorrt`` module (10.x), or raises BackendError saying what to install."""
    try:
        import tensorrt as trt
    except ImportError:
        raise BackendError(f"TensorRT's Python bindings are not installed: {INSTALL_HINT}") from None
    major = str(getattr(trt, "__version__", "0")).split(".")[0]
    if not major.isdigit() or int(major) < 10:
        raise BackendError(
            f"TensorRT {getattr(trt, '__version__', '?')} found, 10.x needed (named I/O tensors, execute_async_v3); "
            "upgrade TensorRT (JetPack 6 on a Jetson)"
        )
    return trt


def import_cudart() -> Any:
    """Returns cuda-python's runtime module (``cuda.bindings.runtime``, or ``cuda.cudart`` before 12.6)."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            raise BackendError(
                f"cuda-python is not installed (needed for CUDA memory and streams): {INSTALL_HINT}"
            ) from None
    return cudart


def cuda_call(cudart: Any, result: Any, what: str) -> Any:
    """Unpacks a cuda-python ``(error, value...)`` tuple; raises BackendError naming the call on failure."""
    err, values = result[0], result[1:]
    if err != cudart.cudaError_t.cudaSuccess:
        name = str(err)
        try:
            name_err, raw = cudart.cudaGetErrorName(err)
            if name_err == cudart.cudaError_t.cudaSuccess:
                name = raw.decode() if isinstance(raw, bytes) else str(raw)
        except (AttributeError, TypeError):
            pass
        raise BackendError(f"CUDA {what} failed with {name}; check the driver, the device index and free GPU memory")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def engine_metadata_path(engine_path: str) -> str:
    """The JSON side file that describes an engine: ``<engine>.json``."""
    return str(engine_path) + ".json"


def read_engine_document(engine_path: str) -> dict | None:
    """The parsed side file of an engine, or None if there is none. JSON only, nothing evaluated."""
    side = engine_metadata_path(engine_path)
    if not os.path.isfile(side):
        return None
    try:
        with open(side, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(
            f"{side}: cannot read the engine's metadata ({exc}); rebuild the engine with 'segstream export --format tensorrt'"
        ) from None
    if not isinstance(doc, dict):
        raise ModelError(f"{side}: expected a JSON object, found {type(doc).__name__}; rebuild the engine")
    return doc


def read_engine_metadata(engine_path: str) -> ArtifactMetadata | None:
    """The segstream metadata of an engine, from its side file, or None if it has none."""
    doc = read_engine_document(engine_path)
    if doc is None:
        return None
    return ArtifactMetadata.from_json(json.dumps(doc), origin=engine_metadata_path(engine_path))


class _HostDeviceBuffer:
    """A pinned host buffer and a device buffer of the same capacity, grown on demand.

    ``host`` views the pinned memory as a numpy array; only the first ``nbytes`` are used.
    """

    def __init__(self, cudart: Any, name: str) -> None:
        self._cudart = cudart
        self.name = name
        self.capacity = 0
        self.host_ptr = 0
        self.device_ptr = 0

    def ensure(self, nbytes: int) -> bool:
        """Makes room for ``nbytes``; returns True if the buffers moved (addresses must be re-set)."""
        nbytes = max(int(nbytes), 1)
        if nbytes <= self.capacity:
            return False
        self.free()
        cudart = self._cudart
        self.device_ptr = int(cuda_call(cudart, cudart.cudaMalloc(nbytes), f"cudaMalloc({nbytes}) for '{self.name}'"))
        self.host_ptr = int(
            cuda_call(cudart, cudart.cudaMallocHost(nbytes), f"cudaMallocHost({nbytes}) for '{self.name}'")
        )
        self.capacity = nbytes
        return True

    def host_view(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """The pinned memory as an array of ``shape`` and ``dtype`` (no copy)."""
        count = int(np.prod(shape, dtype=np.int64))
        raw = np.ctypeslib.as_array(ctypes.cast(self.host_ptr, ctypes.POINTER(ctypes.c_uint8)), (self.capacity,))
        return raw[: count * dtype.itemsize].view(dtype).reshape(shape)

    def free(self) -> None:
        cudart = self._cudart
        if self.device_ptr:
            cuda_call(cudart, cudart.cudaFree(self.device_ptr), f"cudaFree for '{self.name}'")
            self.device_ptr = 0
        if self.host_ptr:
            cuda_call(cudart, cudart.cudaFreeHost(self.host_ptr), f"cudaFreeHost for '{self.name}'")
            self.host_ptr = 0
        self.capacity = 0


def _shape_spec(dims) -> tuple:
    """TensorRT dims (-1 for dynamic) -> TensorSpec shape (None for dynamic)."""
    return tuple(None if int(d) < 0 else int(d) for d in dims)


class TensorRTBackend(Backend):
    """Runs a serialized TensorRT 10 engine on one CUDA device and stream.

    Each ``run`` copies the inputs into pinned host buffers, then queues host-to-device
    copies, ``execute_async_v3`` and device-to-host copies on the backend's stream and waits
    for it. Device and pinned buffers are kept between calls and grown when a dynamic input
    shape needs more room. One backend serves one thread at a time (its execution context
    and buffers are not shared); make one per worker.

    Args:
        path: the .engine/.plan file, built on this GPU model with this TensorRT version.
        device: CUDA device index.

    Attributes:
        metadata: from ``<engine>.json``, or None if the engine has no side file.
        engine_info: the side file's ``engine`` block (precision, TensorRT version, profiles), or {}.
    """

    name = "tensorrt"

    def __init__(self, path: str, device: int = 0) -> None:
        self.path = str(path)
        self._closed = True
        if not os.path.isfile(self.path):
            raise ModelError(f"{self.path}: no such engine file; build one with 'segstream export --format tensorrt'")
        doc = read_engine_document(self.path)
        self.metadata = read_engine_metadata(self.path) if doc is not None else None
        self.engine_info = dict(doc.get("engine", {})) if doc is not None else {}
        trt = import_tensorrt()
        cudart = import_cudart()
        self._trt = trt
        self._cudart = cudart
        self._device_index = int(device)
        cuda_call(cudart, cudart.cudaSetDevice(self._device_index), f"cudaSetDevice({self._device_index})")
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        with open(self.path, "rb") as f:
            blob = f.read()
        self._engine = self._runtime.deserialize_cuda_engine(blob)
        if self._engine is None:
            built = self.engine_info.get("tensorrt_version", "an unknown version")
            raise ModelError(
                f"{self.path}: TensorRT {trt.__version__} cannot deserialise this engine (built with TensorRT {built}); "
                "engines are tied to the TensorRT version and GPU they were built on: rebuild it on this machine "
                "with 'segstream export --format tensorrt'"
            )
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise BackendError(f"{self.path}: TensorRT could not create an execution context (out of GPU memory?)")
        self._stream = cuda_call(cudart, cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._closed = False

        self.inputs: list[TensorSpec] = []
        self.outputs: list[TensorSpec] = []
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
            spec = TensorSpec(name, _shape_spec(self._engine.get_tensor_shape(name)), dtype)
            if self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.inputs.append(spec)
            else:
                self.outputs.append(spec)
        self._buffers = {t.name: _HostDeviceBuffer(cudart, t.name) for t in self.inputs + self.outputs}
        self._input_shapes: dict[str, tuple[int, ...]] = {}
        self.device = f"cuda:{self._device_index}"
        log.info(
            "tensorrt: %s runs on %s (TensorRT %s, %s)",
            os.path.basename(self.path),
            self.device,
            trt.__version__,
            self.engine_info.get("precision", "precision unknown"),
        )

    def _set_input_shape(self, spec: TensorSpec, shape: tuple[int, ...]) -> None:
        if self._input_shapes.get(spec.name) == shape:
            return
        ok = self._context.set_input_shape(spec.name, shape)
        if ok is False:
            lo, _, hi = self._engine.get_tensor_profile_shape(spec.name, 0)
            raise ModelError(
                f"{self.path}: input '{spec.name}' of shape {shape} is outside the engine's optimisation profile "
                f"(min {tuple(lo)}, max {tuple(hi)}); resize the input or rebuild with wider --input-shapes"
            )
        self._input_shapes[spec.name] = shape

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs the engine once.

        Args:
            feeds: input name -> array with the engine's dtype (usually float32) and rank,
                for example image (1, 3, H, W) float32 with H, W inside the optimisation profile.

        Returns:
            output name -> host array (a copy; the pinned buffers are reused by the next call).
        """
        if self._closed:
            raise BackendError(f"{self.path}: run after close")
        cudart = self._cudart
        # The current device is per thread, and stages call run() from their own threads.
        cuda_call(cudart, cudart.cudaSetDevice(self._device_index), f"cudaSetDevice({self._device_index})")
        names = [t.name for t in self.inputs]
        if sorted(feeds) != sorted(names):
            raise ModelError(f"{self.path}: expected inputs {names}, got {sorted(feeds)}")
        arrays = {}
        for spec in self.inputs:
            arr = feeds[spec.name]
            if arr.dtype != spec.dtype or arr.ndim != len(spec.shape):
                raise ModelError(
                    f"{self.path}: input '{spec.name}' must be {spec.dtype} of rank {len(spec.shape)}, "
                    f"got {arr.dtype} of shape {arr.shape}"
                )
            arrays[spec.name] = arr
            self._set_input_shape(spec, tuple(int(d) for d in arr.shape))
        out_shapes = {}
        for spec in self.outputs:
            shape = tuple(int(d) for d in self._context.get_tensor_shape(spec.name))
            if any(d < 0 for d in shape):
                raise BackendError(
                    f"{self.path}: output '{spec.name}' has a data-dependent shape {shape}; not supported"
                )
            out_shapes[spec.name] = shape
        for spec in self.inputs + self.outputs:
            shape = arrays[spec.name].shape if spec.name in arrays else out_shapes[spec.name]
            buf = self._buffers[spec.name]
            buf.ensure(int(np.prod(shape, dtype=np.int64)) * spec.dtype.itemsize)
            # Addresses are set every call: cheap, and correct after a buffer grew.
            self._context.set_tensor_address(spec.name, buf.device_ptr)

        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for spec in self.inputs:
            arr = arrays[spec.name]
            buf = self._buffers[spec.name]
            np.copyto(buf.host_view(arr.shape, spec.dtype), arr)
            cuda_call(
                cudart,
                cudart.cudaMemcpyAsync(buf.device_ptr, buf.host_ptr, arr.nbytes, h2d, self._stream),
                f"host-to-device copy of '{spec.name}'",
            )
        if not self._context.execute_async_v3(int(self._stream)):
            raise BackendError(f"{self.path}: TensorRT execute_async_v3 failed; see the TensorRT log above")
        for spec in self.outputs:
            buf = self._buffers[spec.name]
            nbytes = int(np.prod(out_shapes[spec.name], dtype=np.int64)) * spec.dtype.itemsize
            cuda_call(
                cudart,
                cudart.cudaMemcpyAsync(buf.host_ptr, buf.device_ptr, nbytes, d2h, self._stream),
                f"device-to-host copy of '{spec.name}'",
            )
        cuda_call(cudart, cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        return {
            spec.name: self._buffers[spec.name].host_view(out_shapes[spec.name], spec.dtype).copy()
            for spec in self.outputs
        }

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for buf in self._buffers.values():
            buf.free()
        cuda_call(self._cudart, self._cudart.cudaStreamDestroy(self._stream), "cudaStreamDestroy")
        # Context before engine before runtime: TensorRT objects must die in that order.
        self._context = None
        self._engine = None
        self._runtime = None
