"""Batching across sources: one model call for frames of several cameras, on real ONNX Runtime
sessions of tiny models exported with a dynamic batch axis (``--dynamic-batch``)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from segstream.pipelines.tasks.batching import Batcher, BatchSettings  # noqa: E402
from segstream.pipelines.tasks.inference import InferStage, model_branch  # noqa: E402
from segstream.stream.backends import OnnxRuntimeBackend  # noqa: E402
from segstream.stream.errors import ConfigError  # noqa: E402
from segstream.stream.frame import Frame  # noqa: E402
from segstream.stream.graph import Graph, GraphSettings  # noqa: E402
from segstream.stream.sinks import CallbackSink  # noqa: E402
from segstream.stream.sources import open_source  # noqa: E402


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """Tiny random YOLACT and DeepLab, with a dynamic batch axis, and a DeepLab with batch fixed to 1."""
    from segstream.export.semantic import export_semantic
    from segstream.export.yolact import export_yolact_onnx
    from segstream.models.yolact.config import get_config
    from segstream.models.yolact.model import build_yolact

    d = tmp_path_factory.mktemp("batching")
    torch.manual_seed(0)
    paths = {"yolact": str(d / "yolact_nb.onnx"), "semantic": str(d / "deeplab_nb.onnx"), "fixed": str(d / "f.onnx")}
    export_yolact_onnx(net=build_yolact(get_config("yolact_tiny")).eval(), out_path=paths["yolact"], dynamic_batch=True)
    export_semantic(
        model="deeplab_tiny", weights=None, out_path=paths["semantic"], trace_size_hw=(64, 96), dynamic_batch=True
    )
    export_semantic(model="deeplab_tiny", weights=None, out_path=paths["fixed"], trace_size_hw=(64, 96))
    return paths


def _backend(path: str) -> OnnxRuntimeBackend:
    return OnnxRuntimeBackend(path, intra_op_threads=1)


def _feeds(backend, seed: int) -> dict[str, np.ndarray]:
    spec = backend.inputs[0]
    shape = [1, 3, *(d if isinstance(d, int) else 48 for d in spec.shape[2:])]
    return {spec.name: np.random.default_rng(seed).normal(size=shape).astype(np.float32)}


def _submit_all(batcher: Batcher, feeds: list[dict], capture_ns: list[int]) -> list[dict]:
    """Submits each feed from its own thread (as the inference stage's workers do)."""
    out: list = [None] * len(feeds)

    def work(i: int) -> None:
        out[i] = batcher.submit(feeds[i], capture_ns[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(feeds))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out


def test_a_batch_timeout_releases_a_lone_frame(artifacts):
    backend = _backend(artifacts["semantic"])
    feeds = _feeds(backend, 0)
    backend.run(feeds)  # warm the session so the wait below is the batcher's
    batcher = Batcher(backend.run, BatchSettings(max_batch=4, timeout_ms=80, max_age_ms=5000))
    t0 = time.monotonic()
    out = batcher.submit(feeds, time.monotonic_ns())
    waited_ms = (time.monotonic() - t0) * 1e3
    assert 75 <= waited_ms < 2000, waited_ms  # the timeout, loosely (a loaded machine adds, never subtracts)
    assert batcher.metrics()["released"] == {"full": 0, "timeout": 1, "age": 0}
    np.testing.assert_array_equal(out["labels"], backend.run(feeds)["labels"])


def test_max_age_is_respected_an_old_frame_is_never_held(artifacts):
    backend = _backend(artifacts["semantic"])
    feeds = _feeds(backend, 1)
    backend.run(feeds)
    batcher = Batcher(backend.run, BatchSettings(max_batch=4, timeout_ms=10_000, max_age_ms=60))
    # Already older than max_age: leaves at once, alone.
    t0 = time.monotonic()
    batcher.submit(feeds, time.monotonic_ns() - 500_000_000)
    assert time.monotonic() - t0 < 2.0
    # Fresh: waits at most until it is max_age old, not for the 10 s timeout.
    captured = time.monotonic_ns()
    batcher.submit(feeds, captured)
    held_ms = (time.monotonic_ns() - captured) / 1e6
    assert 55 <= held_ms < 2000, held_ms
    assert batcher.metrics()["released"] == {"full": 0, "timeout": 0, "age": 2}


def test_a_full_batch_leaves_at_once(artifacts):
    backend = _backend(artifacts["semantic"])
    batcher = Batcher(backend.run, BatchSettings(max_batch=3, timeout_ms=20_000, max_age_ms=20_000))
    feeds = [_feeds(backend, i) for i in range(3)]
    t0 = time.monotonic()
    _submit_all(batcher, feeds, [time.monotonic_ns()] * 3)
    assert time.monotonic() - t0 < 10.0  # far below the 20 s timeout
    assert batcher.metrics() == {
        "batches": 1,
        "batched_frames": 3,
        "mean_batch": 3.0,
        "released": {"full": 1, "timeout": 0, "age": 0},
    }


@pytest.mark.parametrize("family", ["semantic", "yolact"])
def test_outputs_split_back_equal_each_frames_batch_one_outputs(artifacts, family):
    backend = _backend(artifacts[family])
    assert backend.inputs[0].shape[0] == "batch"
    batcher = Batcher(backend.run, BatchSettings(max_batch=4, timeout_ms=20_000, max_age_ms=20_000))
    feeds = [_feeds(backend, 10 + i) for i in range(4)]
    got = _submit_all(batcher, feeds, [time.monotonic_ns()] * 4)
    assert batcher.metrics()["batches"] == 1
    for f, out in zip(feeds, got):
        want = backend.run(f)
        assert sorted(out) == sorted(want)
        for name in want:
            assert out[name].shape == want[name].shape  # (1, ...): what postprocess gets without batching
            np.testing.assert_allclose(out[name], want[name], rtol=1e-5, atol=1e-5)


def test_per_source_order_is_kept_with_three_sources_interleaved(artifacts):
    from segstream.pipelines.tasks.road import SemanticRunner

    runner = SemanticRunner(_backend(artifacts["semantic"]), drivable=False)
    reference = SemanticRunner(_backend(artifacts["semantic"]), drivable=False)
    sources = {f"cam{i}": open_source(f"synthetic://?width=96&height=64&frames=10&seed={i}") for i in range(3)}
    batching = BatchSettings(max_batch=3, timeout_ms=30, max_age_ms=1000)
    got: list[Frame] = []
    graph = Graph(
        sources,
        model_branch("semantic", runner.backend, runner.preprocess, runner.postprocess, batching=batching),
        [CallbackSink(got.append)],
        GraphSettings(),  # 2 frames in flight per source: a batch of 3 fills from 3 cameras
    )
    report = graph.run(timeout=120)
    assert report.error is None
    assert len(got) == 30
    for cam in sources:
        assert [f.seq for f in got if f.source_id == cam] == list(range(10))
    for f in got:  # each frame got its own rows of the batch
        np.testing.assert_array_equal(f.results["semantic"].class_ids, reference(f.image_bgr).class_ids)
    stats = report.metrics["extra"]["semantic.infer"]["batching"]
    assert stats["batched_frames"] == 30 and stats["mean_batch"] > 1


def test_max_batch_one_is_the_old_path(artifacts):
    backend = _backend(artifacts["semantic"])
    default = InferStage("m.infer", "m", backend, workers=2)
    one = InferStage("m.infer", "m", backend, workers=2, batching=BatchSettings(max_batch=1))
    for stage in (default, one):
        assert stage.batcher is None and stage.workers == 2 and stage.metrics() == {}
    feeds = _feeds(backend, 3)
    frame = Frame("cam", 0, None, time.monotonic_ns(), np.zeros((8, 8, 3), np.uint8), results={"_m.feeds": feeds})
    out = one.process(frame).results["_m.outputs"]
    np.testing.assert_array_equal(out["logits"], backend.run(feeds)["logits"])
    batched = InferStage("m.infer", "m", backend, workers=2, batching=BatchSettings(max_batch=4))
    assert batched.batcher is not None and batched.workers == 4 * 3


def test_a_fixed_batch_artifact_is_refused_with_a_one_line_config_error(artifacts):
    backend = _backend(artifacts["fixed"])
    assert backend.inputs[0].shape[0] == 1
    with pytest.raises(ConfigError) as e:
        InferStage("semantic.infer", "semantic", backend, batching=BatchSettings(max_batch=4))
    msg = str(e.value)
    assert "batching.max_batch = 4" in msg and "--dynamic-batch" in msg and "\n" not in msg


def test_the_app_config_passes_batching_down_and_declares_its_ranges(artifacts):
    from segstream.pipelines.apps.config import load_config
    from segstream.pipelines.apps.dashcam import semantic_stages

    cfg = load_config(None, [f"semantic.artifact='{artifacts['semantic']}'", "batching.max_batch=4"])
    infer = semantic_stages(cfg)[1]
    assert infer.batcher is not None and infer.batcher.settings == BatchSettings(4, 10.0, 100.0)
    fixed = load_config(None, [f"semantic.artifact='{artifacts['fixed']}'", "batching.max_batch=2"])
    with pytest.raises(ConfigError, match="--dynamic-batch"):
        semantic_stages(fixed)
    with pytest.raises(ConfigError, match=r"batching.max_batch must be in 1..64, got 0"):
        load_config(None, ["batching.max_batch=0"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "maskrcnn_tiny"], "Mask R-CNN's outputs are rows per detection"),
        (["--model", "deeplab_tiny", "--format", "tensorrt"], "--dynamic-batch with --format tensorrt"),
    ],
)
def test_export_refuses_dynamic_batch_where_the_graph_cannot_batch(tmp_path, capsys, args, message):
    from segstream.cli import main

    assert main(["export", *args, "--dynamic-batch", "--out", str(tmp_path / "m.onnx")]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("args", [["--model", "yolact_tiny"], ["--model", "deeplab_tiny", "--dynamic"]])
def test_export_dynamic_batch_writes_a_batch_axis(tmp_path, args):
    from segstream.cli import main

    out = str(tmp_path / "m.onnx")
    assert main(["export", *args, "--dynamic-batch", "--out", out]) == 0
    backend = _backend(out)
    assert all(t.shape[0] == "batch" for t in [*backend.inputs, *backend.outputs])
