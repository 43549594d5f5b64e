"""ONNX -> TensorRT 10 engine (FP32/FP16/INT8) with the segstream metadata beside it.

``build_engine`` needs TensorRT and cuda-python (only for INT8 calibration) and a GPU. The
pieces around it do not and are importable and tested anywhere: reading ONNX input shapes,
deriving optimisation-profile shapes, cache files, the side-file document, and the
``CalibrationFeeder`` that turns any segstream source into calibration batches.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from segstream.stream.backends.base import ArtifactMetadata
from segstream.stream.backends.tensorrt import engine_metadata_path, import_cudart, import_tensorrt
from segstream.stream.errors import BackendError, ConfigError, ModelError, SourceError

log = logging.getLogger(__name__)

#: Profile (min, opt, max) height x width for dynamic-size models when none is given.
#: The stride-32 sizes cover thumbnails up to 1080p dashcam frames; opt is 360p 16:9.
DEFAULT_DYNAMIC_HW = ((128, 128), (384, 640), (1088, 1920))

Shape = tuple[int, ...]


# ---------------------------------------------------------------- pure helpers (no TensorRT)


def onnx_input_shapes(onnx_path: str) -> dict[str, tuple]:
    """Graph inputs of an ONNX file and their shapes, dynamic dims as None.

    Initialisers listed as inputs (old exporters) are left out.

    Returns:
        input name -> shape tuple of int or None, in graph order.
    """
    import onnx

    if not os.path.isfile(onnx_path):
        raise ModelError(f"{onnx_path}: no such ONNX file; export one with 'segstream export --format onnx'")
    proto = onnx.load(onnx_path, load_external_data=False)
    init = {t.name for t in proto.graph.initializer}
    shapes = {}
    for inp in proto.graph.input:
        if inp.name in init:
            continue
        dims = inp.type.tensor_type.shape.dim
        shapes[inp.name] = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims)
    return shapes


def _check_profile(name: str, onnx_shape: tuple, triple) -> tuple[Shape, Shape, Shape]:
    if len(triple) != 3:
        raise ConfigError(f"input_shapes['{name}']: expected (min, opt, max) shapes, got {len(triple)} entries")
    lo, opt, hi = (tuple(int(d) for d in s) for s in triple)
    for s in (lo, opt, hi):
        if len(s) != len(onnx_shape):
            raise ConfigError(f"input_shapes['{name}']: expected rank {len(onnx_shape)} like {onnx_shape}, got {s}")
        for axis, (want, got) in enumerate(zip(onnx_shape, s)):
            if want is not None and want != got:
                raise ConfigError(f"input_shapes['{name}']: axis {axis} is fixed at {want} in the ONNX file, got {got}")
    if not all(a <= b <= c for a, b, c in zip(lo, opt, hi)) or min(lo) < 1:
        raise ConfigError(
            f"input_shapes['{name}']: expected 1 <= min <= opt <= max on every axis, got {lo}, {opt}, {hi}"
        )
    return lo, opt, hi


def profile_shapes(
    *,
    onnx_shapes: dict[str, tuple],
    input_size_hw: tuple[int, int] | None,
    input_shapes: dict[str, Any] | None = None,
    dynamic_hw: tuple = DEFAULT_DYNAMIC_HW,
) -> dict[str, tuple[Shape, Shape, Shape]]:
    """Optimisation-profile (min, opt, max) shapes for every input.

    Rules, per input: an explicit ``input_shapes`` entry wins (checked against the fixed
    dims of the ONNX file); a fully fixed input gets its own shape three times; a dynamic
    batch axis (0) becomes 1; dynamic height and width (axes 2 and 3 of an NCHW input)
    become the metadata's fixed ``input_size_hw`` if it has one, else ``dynamic_hw``.
    Any other dynamic axis needs an ``input_shapes`` entry.

    Args:
        onnx_shapes: input name -> shape with None for dynamic dims (``onnx_input_shapes``).
        input_size_hw: the artifact's fixed (H, W), or None when it is dynamic.
        input_shapes: input name -> (min, opt, max) shapes, overriding the rules.
        dynamic_hw: ((min_h, min_w), (opt_h, opt_w), (max_h, max_w)) for dynamic H/W.

    Returns:
        input name -> (min, opt, max), each a tuple of ints.
    """
    input_shapes = dict(input_shapes or {})
    unknown = sorted(set(input_shapes) - set(onnx_shapes))
    if unknown:
        raise ConfigError(f"input_shapes names {unknown}, but the ONNX inputs are {list(onnx_shapes)}")
    out = {}
    for name, shape in onnx_shapes.items():
        if name in input_shapes:
            out[name] = _check_profile(name, shape, input_shapes[name])
            continue
        triple = [list(shape), list(shape), list(shape)]
        for axis, dim in enumerate(shape):
            if dim is not None:
                continue
            if axis == 0:
                values = (1, 1, 1)
            elif len(shape) == 4 and axis in (2, 3):
                k = axis - 2
                values = (input_size_hw[k],) * 3 if input_size_hw is not None else tuple(hw[k] for hw in dynamic_hw)
            else:
                raise ConfigError(
                    f"ONNX input '{name}' {shape}: axis {axis} is dynamic and not batch, height or width; "
                    "give its (min, opt, max) shapes with input_shapes"
                )
            for i in range(3):
                triple[i][axis] = int(values[i])
        out[name] = _check_profile(name, shape, triple)
    return out


def read_cache(path: str | None) -> bytes | None:
    """Contents of a calibration or timing cache file, or None if no path or no (or an empty) file."""
    if not path or not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        log.warning("%s: empty cache file, ignored", path)
        return None
    return data


def write_cache(path: str, data: bytes) -> None:
    """Writes a cache file atomically (a temporary file renamed over it), creating its folder."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(bytes(data))
    os.replace(tmp, path)


def precision_name(*, fp16: bool, int8: bool) -> str:
    """ "fp32", "fp16", "int8" or "int8+fp16": what the engine's side file records."""
    if int8:
        return "int8+fp16" if fp16 else "int8"
    return "fp16" if fp16 else "fp32"


def engine_document(
    *,
    metadata: ArtifactMetadata,
    precision: str,
    tensorrt_version: str,
    profiles: dict[str, tuple[Shape, Shape, Shape]],
    onnx_path: str,
    device_name: str = "",
) -> dict:
    """The JSON side file of an engine: the ONNX metadata plus an ``engine`` block.

    ``ArtifactMetadata.from_json`` ignores the ``engine`` key, so the runtime reads the
    same self-description as from the ONNX file; ``versions`` gains ``tensorrt``.
    """
    doc = json.loads(metadata.to_json())
    doc["versions"] = {**doc.get("versions", {}), "tensorrt": str(tensorrt_version)}
    doc["engine"] = {
        "precision": precision,
        "tensorrt_version": str(tensorrt_version),
        "profiles": {n: [list(s) for s in p] for n, p in profiles.items()},
        "onnx": os.path.basename(onnx_path),
        "device_name": device_name,
    }
    return doc


def write_engine_document(engine_path: str, doc: dict) -> str:
    """Writes ``<engine>.json``; returns its path."""
    side = engine_metadata_path(engine_path)
    write_cache(side, json.dumps(doc, indent=2, sort_keys=True).encode("utf-8"))
    return side


class CalibrationFeeder:
    """INT8 calibration batches from any segstream source (video file, image folder, ...).

    Torch-free: frames come from ``stream.sources.open_source`` and go through the same
    numpy preprocessing the pipeline uses, so the engine is calibrated on what it will see.

    Args:
        source: a source URI (``clip.mp4``, ``frames/``, ``frames/*.jpg``, ``synthetic://...``).
        preprocess: image_bgr (H, W, 3) uint8 -> (1, 3, h, w) float32; must give one fixed size.
        max_frames: stop after this many frames (the calibrator's data set).
        batch_size: frames per batch; a last partial batch is dropped.
        stride: use every ``stride``-th frame (spreads a short budget over a long video).
    """

    def __init__(
        self,
        *,
        source: str,
        preprocess: Callable[[np.ndarray], np.ndarray],
        max_frames: int = 500,
        batch_size: int = 1,
        stride: int = 1,
    ) -> None:
        if max_frames < 1 or batch_size < 1 or stride < 1:
            raise ConfigError(
                f"calibration: max_frames, batch_size and stride must be >= 1, got {max_frames}, {batch_size}, {stride}"
            )
        if batch_size > max_frames:
            raise ConfigError(f"calibration: batch_size {batch_size} is larger than max_frames {max_frames}")
        self.source = str(source)
        self.preprocess = preprocess
        self.max_frames = int(max_frames)
        self.batch_size = int(batch_size)
        self.stride = int(stride)
        self.frames_used = 0

    def _frames(self) -> Iterator[np.ndarray]:
        import threading

        from segstream.stream.sources import open_source

        src = open_source(self.source)
        stop = threading.Event()
        src.open()
        try:
            index = 0
            used = 0
            while used < self.max_frames:
                item = src.read(stop)
                if item is None:
                    break
                index += 1
                if (index - 1) % self.stride:
                    continue
                used += 1
                yield item.image_bgr
        finally:
            src.close()

    def batches(self) -> Iterator[np.ndarray]:
        """Yields (batch_size, 3, h, w) float32 C-contiguous arrays.

        Raises:
            ModelError: preprocess returned another shape or dtype, or sizes differ between frames.
            SourceError: the source gave fewer frames than one batch.
        """
        self.frames_used = 0
        pending: list[np.ndarray] = []
        first_shape = None
        for i, img in enumerate(self._frames()):
            x = self.preprocess(img)
            if (
                not isinstance(x, np.ndarray)
                or x.dtype != np.float32
                or x.ndim != 4
                or x.shape[0] != 1
                or x.shape[1] != 3
            ):
                raise ModelError(
                    f"calibration preprocess must return a (1, 3, H, W) float32 array, got "
                    f"{getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')} for frame {i}"
                )
            if first_shape is None:
                first_shape = x.shape
            elif x.shape != first_shape:
                raise ModelError(
                    f"calibration frames must all have one size: frame 0 gave {first_shape}, frame {i} gave {x.shape}; "
                    "resize to a fixed size in preprocess"
                )
            pending.append(x)
            self.frames_used += 1
            if len(pending) == self.batch_size:
                yield np.ascontiguousarray(np.concatenate(pending, axis=0))
                pending = []
        if first_shape is None or (self.frames_used < self.batch_size):
            raise SourceError(
                f"{self.source}: gave {self.frames_used} frames, fewer than one calibration batch of {self.batch_size}"
            )
        if pending:
            log.info("calibration: dropped the last %d frames (a partial batch)", len(pending))

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.batches()


# ---------------------------------------------------------------- TensorRT parts (GPU machines)


def make_entropy_calibrator(
    *, feeder: CalibrationFeeder | None, cache_path: str | None, batch_shape: Shape | None = None
) -> Any:
    """A ``trt.IInt8EntropyCalibrator2`` fed by ``feeder``, reading and writing ``cache_path``.

    ``batch_shape``, if given, is the (N, 3, H, W) every batch must have (the calibration
    profile's opt shape with N = the feeder's batch size).

    With a readable cache and no feeder, TensorRT takes the scales from the cache. An
    exception raised while feeding is kept in ``calibrator.error`` (TensorRT only sees
    "no more batches") and re-raised by ``build_engine``.
    """
    trt = import_tensorrt()
    if not hasattr(trt, "IInt8EntropyCalibrator2"):
        raise BackendError(
            f"TensorRT {trt.__version__} has no implicit INT8 calibration (deprecated in 10.1, later removed); "
            "build with fp16, or use TensorRT 10.x"
        )
    cudart = import_cudart() if feeder is not None else None

    from segstream.stream.backends.tensorrt import cuda_call

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.error: BaseException | None = None
            self.batches_fed = 0
            self._iter = iter(feeder) if feeder is not None else None
            self._device_ptr = 0
            self._nbytes = 0

        def get_batch_size(self) -> int:
            return feeder.batch_size if feeder is not None else 1

        def get_batch(self, names, p_str=None):  # TensorRT's callback signature
            if self._iter is None or self.error is not None:
                return None
            if len(names) != 1:
                self.error = ModelError(f"INT8 calibration feeds one image input; the network has inputs {list(names)}")
                return None
            try:
                batch = next(self._iter)
            except StopIteration:
                return None
            except Exception as exc:  # kept and re-raised by build_engine: TensorRT cannot carry it
                self.error = exc
                return None
            if batch_shape is not None and tuple(batch.shape) != tuple(batch_shape):
                self.error = ModelError(
                    f"calibration batches must have the profile's opt shape {tuple(batch_shape)}, got {batch.shape}; "
                    "resize to that size in the calibration preprocess or pass input_shapes"
                )
                return None
            if self._device_ptr and batch.nbytes != self._nbytes:
                self.error = ModelError(f"calibration batch size changed from {self._nbytes} to {batch.nbytes} bytes")
                return None
            if not self._device_ptr:
                self._device_ptr = int(cuda_call(cudart, cudart.cudaMalloc(batch.nbytes), "cudaMalloc for calibration"))
                self._nbytes = batch.nbytes
            cuda_call(
                cudart,
                cudart.cudaMemcpy(
                    self._device_ptr, batch.ctypes.data, batch.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
                ),
                "calibration copy",
            )
            self.batches_fed += 1
            return [self._device_ptr]

        def read_calibration_cache(self):
            data = read_cache(cache_path)
            if data is not None:
                log.info("calibration: using the cache %s", cache_path)
            return data

        def write_calibration_cache(self, cache) -> None:
            if cache_path:
                write_cache(cache_path, bytes(cache))
                log.info("calibration: wrote the cache %s", cache_path)

        def free(self) -> None:
            if self._device_ptr:
                cuda_call(cudart, cudart.cudaFree(self._device_ptr), "cudaFree for calibration")
                self._device_ptr = 0

    return EntropyCalibrator()


def _platform_check(builder: Any, what: str) -> None:
    # platform_has_fast_* are deprecated since TensorRT 10.5 but still answer; absent means "cannot tell".
    has = getattr(builder, f"platform_has_fast_{what}", None)
    if has is False:
        raise BackendError(
            f"this GPU has no fast {what.upper()} support (builder.platform_has_fast_{what} is False); "
            f"build without --{what}"
        )


def _parser_errors(parser: Any) -> list[str]:
    errors = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        desc = err.desc() if hasattr(err, "desc") else str(err)
        node = err.node() if hasattr(err, "node") else -1
        errors.append(f"node {node}: {desc}" if node is not None and node >= 0 else str(desc))
    return errors


def _device_name(cudart: Any | None) -> str:
    if cudart is None:
        return ""
    from segstream.stream.backends.tensorrt import cuda_call

    try:
        dev = cuda_call(cudart, cudart.cudaGetDevice(), "cudaGetDevice")
        props = cuda_call(cudart, cudart.cudaGetDeviceProperties(dev), "cudaGetDeviceProperties")
    except BackendError:
        return ""
    name = props.name
    return (name.decode(errors="replace") if isinstance(name, bytes) else str(name)).rstrip("\x00")


def build_engine(
    *,
    onnx_path: str,
    out_path: str,
    fp16: bool = False,
    int8: bool = False,
    calibration: CalibrationFeeder | None = None,
    calibration_cache: str | None = None,
    input_shapes: dict[str, Any] | None = None,
    workspace_gb: float = 2.0,
    timing_cache: str | None = None,
) -> str:
    """Builds a TensorRT engine from a segstream ONNX file and writes ``<out_path>.json`` beside it.

    Args:
        onnx_path: a self-describing ONNX file from ``export_onnx``.
        out_path: the .engine file to write.
        fp16: allow FP16 kernels (refused where the GPU has no fast FP16).
        int8: INT8 with entropy calibration (refused where the GPU has no fast INT8); needs
            ``calibration`` or an existing ``calibration_cache``.
        calibration: frames for INT8 calibration; their (1, 3, H, W) size must equal the
            profile's opt shape for dynamic-size models.
        calibration_cache: read if it exists (calibration is then skipped), written after calibrating.
        input_shapes: input name -> (min, opt, max) shapes; see ``profile_shapes`` for the defaults.
        workspace_gb: builder workspace memory limit in GiB.
        timing_cache: a timing cache file, loaded if it exists and saved after the build.

    Returns:
        out_path.
    """
    from segstream.export.onnx import read_metadata

    if workspace_gb <= 0:
        raise ConfigError(f"workspace_gb must be > 0, got {workspace_gb}")
    if int8 and calibration is None and read_cache(calibration_cache) is None:
        raise ConfigError("INT8 needs calibration frames (--calibration SOURCE) or an existing calibration cache file")
    metadata = read_metadata(onnx_path)
    onnx_shapes = onnx_input_shapes(onnx_path)
    profiles = profile_shapes(onnx_shapes=onnx_shapes, input_size_hw=metadata.input_size_hw, input_shapes=input_shapes)

    trt = import_tensorrt()
    cudart = import_cudart() if (int8 and calibration is not None) else None
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # TensorRT 10 networks are always explicit-batch; the old EXPLICIT_BATCH flag is ignored.
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(os.path.abspath(onnx_path)):
        errors = _parser_errors(parser)
        raise ModelError(
            f"{onnx_path}: TensorRT's ONNX parser rejected it ({len(errors)} errors; first: {errors[0] if errors else '?'}); "
            "re-export with a supported opset, or check the operator in the TensorRT ONNX support matrix"
        )
    net_inputs = [network.get_input(i).name for i in range(network.num_inputs)]
    if sorted(net_inputs) != sorted(profiles):
        raise ModelError(f"{onnx_path}: TensorRT sees inputs {net_inputs}, the ONNX file lists {list(profiles)}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if fp16:
        _platform_check(builder, "fp16")
        config.set_flag(trt.BuilderFlag.FP16)
    profile = None
    # A network with any dynamic input needs a profile, even one pinned to a single shape.
    if any(d is None for shape in onnx_shapes.values() for d in shape):
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in profiles.items():
            profile.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(profile)
    calibrator = None
    if int8:
        _platform_check(builder, "int8")
        config.set_flag(trt.BuilderFlag.INT8)
        batch_shape = None
        if calibration is not None and profile is not None and len(profiles) == 1:
            opt = next(iter(profiles.values()))[1]
            batch_shape = (calibration.batch_size, *opt[1:])
        calibrator = make_entropy_calibrator(feeder=calibration, cache_path=calibration_cache, batch_shape=batch_shape)
        config.int8_calibrator = calibrator
        if profile is not None:
            config.set_calibration_profile(profile)
    cache = config.create_timing_cache(read_cache(timing_cache) or b"")
    config.set_timing_cache(cache, ignore_mismatch=False)

    try:
        serialized = builder.build_serialized_network(network, config)
        if calibrator is not None and calibrator.error is not None:
            raise calibrator.error
        if serialized is None:
            raise BackendError(f"{onnx_path}: TensorRT could not build an engine; see the TensorRT log above")
        write_cache(out_path, bytes(serialized))
    finally:
        if calibrator is not None:
            calibrator.free()
    if timing_cache:
        write_cache(timing_cache, bytes(config.get_timing_cache().serialize()))
    doc = engine_document(
        metadata=metadata,
        precision=precision_name(fp16=fp16, int8=int8),
        tensorrt_version=trt.__version__,
        profiles=profiles,
        onnx_path=onnx_path,
        device_name=_device_name(cudart or _try_cudart()),
    )
    write_engine_document(out_path, doc)
    log.info("tensorrt: wrote %s (%s, TensorRT %s)", out_path, doc["engine"]["precision"], trt.__version__)
    return out_path


def _try_cudart() -> Any | None:
    try:
        return import_cudart()
    except BackendError:
        return None
