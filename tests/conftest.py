"""Shared test helpers (generated videos and frames) and the marks the suite selects by.

Marks applied here, so test files need not carry them:

- ``needs_torch``: the test module imports the build side (torch, torchvision, onnx,
  ``segstream.models``, ``segstream.export``, or a test helper that does), read from its source
  without importing it; a module that does so only inside some tests marks just those tests.
- ``cheap``: a ``needs_torch`` module listed in ``CHEAP_TORCH_MODULES``, a few seconds in all;
  ``make test-fast`` keeps these.
- ``needs_gstreamer``: skipped with a reason when PyGObject/GStreamer is missing (probed once,
  in a child process, only when such a test was collected).
- ``slow``: the tests in ``SLOW_TESTS``, measured.

A run whose ``-m`` expression excludes every ``needs_torch`` test of a module does not import
that module, so the torch-free lane never pays for importing torch.
"""

from __future__ import annotations

import ast
import functools
import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = Path(ROOT) / "tests"

#: Imports that mean "the build side" (the torch extra of pyproject.toml).
TORCH_MODULES = ("torch", "torchvision", "onnx", "onnxscript", "segstream.models", "segstream.export")

#: needs_torch modules cheap enough for the fast lane (measured: each under ~3 s in all).
CHEAP_TORCH_MODULES = {
    "tests/models/test_semantic_prepost.py",
    "tests/models/test_unet.py",
    "tests/models/test_camvid_instances.py",
}

#: Tests measured over ~15 s each on 2 loaded cores (node ids; a module's name covers all its tests).
SLOW_TESTS = {
    "tests/models/test_semantic_train.py::test_tiny_model_learns_generated_scenes_and_predict_writes_masks",
    "tests/models/test_yolact_cli.py",  # its module fixture trains a model (~11-40 s)
    "tests/models/test_fcn.py::test_training_learns_intermediate_upsampling_and_keeps_the_final_one_fixed",
    "tests/models/test_fcn.py::test_export_and_onnxruntime_parity_at_sizes_other_than_the_trace_size",
    "tests/models/test_yolactedge.py::test_r101_onnx_runtime_reproduces_torch",
    "tests/export/test_tensorrt.py::test_onnx_input_shapes_reads_dynamic_and_fixed_dims",
    "tests/models/test_unet_train.py::test_tiny_unet_learns_binary_shapes_to_dice_above_0_9",
    "tests/models/test_semantic_export.py::test_mobilenet_models_onnxruntime_matches_torch",
    "tests/pipelines/test_fleet.py",  # worker processes per test: 8-32 s each
}

GST_SKIP_REASON = "PyGObject/GStreamer not installed (see README: make installs it when the Debian packages exist)"


def pattern_frame(i: int, size_hw=(120, 160)) -> np.ndarray:
    """A BGR frame whose index can be read back after lossy coding: 8 bits as 8 wide bars."""
    h, w = size_hw
    img = np.full((h, w, 3), 40, np.uint8)
    bar = w // 8
    for b in range(8):
        if (i >> b) & 1:
            img[: h // 2, b * bar : (b + 1) * bar] = 230
    cv2.putText(img, str(i), (4, h - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 255), 1)
    return img


def read_pattern_index(img: np.ndarray) -> int:
    h, w = img.shape[:2]
    bar = w // 8
    value = 0
    for b in range(8):
        if img[: h // 2, b * bar + 2 : (b + 1) * bar - 2].mean() > 128:
            value |= 1 << b
    return value


def write_video(path: str, n: int, size_hw=(120, 160), fps: float = 25.0) -> str:
    fourcc = "MJPG" if path.endswith(".avi") else "mp4v"
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), fps, (size_hw[1], size_hw[0]))
    assert writer.isOpened(), f"cannot write {path}"
    for i in range(n):
        writer.write(pattern_frame(i, size_hw))
    writer.release()
    return path


def count_video_frames(path: str) -> int:
    """Frames decodable from a file (decodes every frame, so a damaged tail counts short)."""
    cap = cv2.VideoCapture(path)
    n = 0
    while True:
        ok, _ = cap.read()
        if not ok:
            break
        n += 1
    cap.release()
    return n


def segstream_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "segstream", *args]


def _gst_ok() -> bool:
    # Probed in a child process: initialising GStreamer in the test process before torch is
    # imported makes a later torch.onnx.export segfault, so collection must not do it.
    code = "from segstream.stream.gst import gst_available; raise SystemExit(0 if gst_available() else 1)"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, timeout=60).returncode == 0


#: Kept for the modules that import it; the skip itself is applied in pytest_collection_modifyitems.
needs_gstreamer = pytest.mark.needs_gstreamer


# --- marks from the test modules' source ------------------------------------------------------


def _imports_torch(nodes: list[ast.AST]) -> bool:
    """Whether these statements import the build side, directly or through a test helper."""
    for node in itertools.chain.from_iterable(ast.walk(n) for n in nodes):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "importorskip"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names = [node.args[0].value]
        for name in names:
            if any(name == m or name.startswith(m + ".") for m in TORCH_MODULES):
                return True
            if name.startswith("tests.") and _helper_imports_torch(name):
                return True
    return False


@functools.cache
def _helper_imports_torch(module: str) -> bool:
    path = Path(ROOT, *module.split(".")).with_suffix(".py")
    if not path.is_file() or path.name == "conftest.py":
        return False
    return _imports_torch(ast.parse(path.read_text(encoding="utf-8")).body)


@functools.cache
def _torch_use(path: str) -> tuple[bool, frozenset[str]]:
    """(module-level code imports torch, names of its functions that do)."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    funcs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    top = [n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    return _imports_torch(top), frozenset(f.name for f in funcs if _imports_torch([f]))


def _rel(path: Path | str) -> str:
    return Path(path).resolve().relative_to(ROOT).as_posix()


def _expression_can_select(markexpr: str, known: dict[str, bool]) -> bool:
    """Whether ``-m markexpr`` can select a test whose marks include ``known`` (name -> present)."""
    from _pytest.mark.expression import Expression

    expr = Expression.compile(markexpr)
    free = sorted(set(re.findall(r"[A-Za-z_][\w.-]*", markexpr)) - {"and", "or", "not"} - set(known))
    for values in itertools.product((False, True), repeat=len(free)):
        marks = {**known, **dict(zip(free, values, strict=True))}
        if expr.evaluate(lambda name, **_: marks.get(name, False)):
            return True
    return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    # Not importing a module whose tests are all deselected by -m keeps torch out of the
    # torch-free lane (pytest would import the module, then deselect every test in it).
    markexpr = config.getoption("markexpr", "")
    if not markexpr or collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    module_level, _ = _torch_use(str(collection_path))
    if not module_level:
        return None
    known = {"needs_torch": True, "cheap": _rel(collection_path) in CHEAP_TORCH_MODULES}
    return None if _expression_can_select(markexpr, known) else True


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gst_ok: bool | None = None
    for item in items:
        path = str(item.path)
        rel = _rel(path)
        module_level, torch_funcs = _torch_use(path)
        name = getattr(item, "originalname", item.name)
        if module_level or name in torch_funcs or torch_funcs.intersection(item.fixturenames):
            item.add_marker(pytest.mark.needs_torch)
            if rel in CHEAP_TORCH_MODULES:
                item.add_marker(pytest.mark.cheap)
        node_id = item.nodeid.split("[")[0]
        if rel in SLOW_TESTS or node_id in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("needs_gstreamer") is not None:
            if gst_ok is None:
                gst_ok = _gst_ok()
            if not gst_ok:
                item.add_marker(pytest.mark.skip(reason=GST_SKIP_REASON))


def pytest_collection_finish(session: pytest.Session) -> None:
    # torch before GStreamer in one process: the other order crashes torch.onnx.export. So
    # when any torch test will run, torch is imported before the first test does.
    if any(item.get_closest_marker("needs_torch") for item in session.items):
        try:
            import torch  # noqa: F401
        except ImportError:
            pass


@pytest.fixture
def video_file(tmp_path):
    return write_video(str(tmp_path / "clip.avi"), 40)


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory):
    """The shared tiny semantic test artifact (``tests/export/tiny_model.py``: 3 classes, dynamic
    size, traced at 32x48, output "logits"), exported once per session in a subprocess. Read it,
    never change it; a test that needs other export settings calls ``export_tiny`` itself."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:  # found, not imported: the export runs in a subprocess
        pytest.skip("exporting the test artifact needs torch")
    from tests.export.tiny_model import export_tiny

    return export_tiny(str(tmp_path_factory.mktemp("tiny_shared") / "tiny.onnx"))
