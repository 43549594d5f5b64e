"""The public API (segstream/api.py): the README's embedding example run as written, one model
on one image through ``load_runner`` on the embedded models, pipelines from a file, a dict or an
AppConfig with overrides, stopping, and the one-line errors."""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import signal
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest

import segstream
from segstream.pipelines.apps.config import AppConfig
from segstream.pipelines.tasks.maskrcnn import MaskRCNNRunner
from segstream.pipelines.tasks.results import Instances, SemanticMap
from segstream.pipelines.tasks.road import SemanticRunner, SemanticSettings
from segstream.pipelines.tasks.yolact import YolactRunner
from segstream.stream.backends import ArtifactMetadata, OnnxRuntimeBackend
from segstream.stream.errors import ConfigError, ModelError, SegstreamError, SinkError
from tests.conftest import ROOT, count_video_frames

YOLACT = os.path.join(ROOT, "weights", "yolact_tiny_synthetic.onnx")
DEEPLAB_TINY = os.path.join(ROOT, "weights", "deeplab_tiny_synthetic.onnx")
DEEPLAB_CAMVID = os.path.join(ROOT, "weights", "deeplabv3plus_lite0_camvid.onnx")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def scene(size_hw=(240, 320)) -> np.ndarray:
    """A BGR street-like image: sky, road, a dark car-sized block and a red pedestrian-sized one."""
    h, w = size_hw
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2] = (200, 160, 120)
    img[h // 2 :] = (90, 90, 90)
    cv2.rectangle(img, (w // 8, h // 2 - h // 10), (w // 8 + w // 4, h // 2 + h // 6), (40, 40, 40), -1)
    cv2.rectangle(img, (2 * w // 3, h // 3), (2 * w // 3 + w // 16, h // 2 + h // 8), (30, 30, 200), -1)
    return img


def jsonl(path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def quiet(**extra) -> dict:
    return {"runtime.progress": False, **extra}


# --------------------------------------------------------------------------- the example


def test_the_embedding_example_runs_as_written(tmp_path):
    frames = 12
    out = subprocess.run(
        [sys.executable, os.path.join("examples", "embed.py"), str(tmp_path), str(frames)],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    count, fps = lines[-2].split()
    assert int(count) == frames and float(fps) > 0
    assert lines[-1].startswith("SemanticMap {") and "'road'" in lines[-1]
    # The overlay video plays in OpenCV, at the clip's size, with every frame.
    cap = cv2.VideoCapture(str(tmp_path / "overlay.mp4"))
    assert cap.isOpened()
    ok, first = cap.read()
    cap.release()
    assert ok and first.shape == (360, 640, 3)
    assert count_video_frames(str(tmp_path / "overlay.mp4")) == frames
    assert count_video_frames(str(tmp_path / "clip.mp4")) == frames
    # One JSON line per frame, in order, with both models' results.
    records = jsonl(tmp_path / "results.jsonl")
    assert [r["frame"] for r in records] == list(range(frames))
    assert all({"instances", "semantic"} <= set(r["results"]) for r in records)
    assert cv2.imread(str(tmp_path / "frame.png")).shape == (360, 640, 3)


def test_the_api_loads_no_torch_and_the_namespace_stays_cheap():
    code = (
        "import sys\n"
        "import segstream.stream.frame\n"
        "early = [m for m in ('segstream.api', 'segstream.pipelines.apps.app', 'onnxruntime', 'cv2') if m in sys.modules]\n"
        "import numpy as np, segstream\n"
        "result = segstream.load_runner('weights/deeplab_tiny_synthetic.onnx')(np.zeros((32, 48, 3), np.uint8))\n"
        "report = segstream.open_pipeline({'pipeline': {'name': 'edges'}, 'runtime': {'progress': False}},\n"
        "                                 source='synthetic://?width=64&height=48&frames=3', sinks=['null://']).run()\n"
        "assert report.frames == 3 and type(result).__name__ == 'SemanticMap'\n"
        "print(early, [m for m in ('torch', 'torchvision') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[] []"


def test_the_package_exposes_the_api_lazily():
    assert set(segstream.__all__) == {
        "__version__",
        "open_pipeline",
        "Pipeline",
        "PipelineReport",
        "load_runner",
        "Runner",
    }
    from segstream import api

    for name in segstream.__all__[1:]:
        assert getattr(segstream, name) is getattr(api, name)
        assert name in dir(segstream)
    with pytest.raises(AttributeError, match="no attribute 'open_pipelines'"):
        segstream.open_pipelines  # noqa: B018


# --------------------------------------------------------------------------- load_runner


@pytest.mark.parametrize(
    "artifact, task_runner, result_type",
    [
        (YOLACT, YolactRunner, Instances),
        (DEEPLAB_TINY, SemanticRunner, SemanticMap),
        (DEEPLAB_CAMVID, SemanticRunner, SemanticMap),
    ],
)
def test_load_runner_returns_what_the_artifact_is(artifact, task_runner, result_type):
    image = scene()
    with segstream.load_runner(artifact) as runner:
        assert isinstance(runner.runner, task_runner)
        meta = OnnxRuntimeBackend(artifact).metadata
        assert runner.metadata == meta and runner.task == meta.task and runner.class_names == meta.class_names
        result = runner(image)
    assert type(result) is result_type
    expected = task_runner(OnnxRuntimeBackend(artifact))(image)  # the task library's runner, by hand
    if result_type is Instances:
        assert len(result) > 0 and result.masks.shape == (len(result), 240, 320)
        np.testing.assert_array_equal(result.boxes_xyxy, expected.boxes_xyxy)
        np.testing.assert_array_equal(result.masks, expected.masks)
    else:
        assert result.class_ids.shape == (240, 320) and result.class_ids.dtype == np.uint8
        np.testing.assert_array_equal(result.class_ids, expected.class_ids)
    assert not image.flags.writeable or np.array_equal(image, scene())  # the image is not modified


def test_load_runner_passes_settings_to_the_runner():
    image = scene()
    everything = segstream.load_runner(YOLACT)(image)
    assert len(everything) >= 2
    cut = float(everything.scores[1])
    fewer = segstream.load_runner(YOLACT, score_threshold=cut, max_detections=50)(image)
    assert len(fewer) == int(np.count_nonzero(everything.scores > cut)) < len(everything)
    sem = segstream.load_runner(DEEPLAB_TINY, smoothing="ema", keep_probabilities=True, drivable=False)
    assert sem.runner.settings.smoothing == "ema"
    result = sem(image)
    assert result.probabilities is not None and result.drivable_mask is None


def test_the_settings_load_runner_accepts_are_the_runners_own():
    from segstream.api import SETTINGS_BY_FAMILY
    from segstream.pipelines.tasks.families import RUNTIME_FAMILIES

    assert set(SETTINGS_BY_FAMILY) == {f.name for f in RUNTIME_FAMILIES}  # a new family: say what it takes
    for family in RUNTIME_FAMILIES:
        params = inspect.signature(family.runner_class()).parameters.values()
        keywords = {p.name for p in params if p.kind is p.KEYWORD_ONLY}
        if any(p.kind is p.VAR_KEYWORD for p in params):  # SemanticRunner: **overrides of its settings
            keywords |= {f.name for f in dataclasses.fields(SemanticSettings)} | {"input_size_hw"}
            assert set(SETTINGS_BY_FAMILY[family.name]) <= keywords, family.name
        else:
            assert set(SETTINGS_BY_FAMILY[family.name]) == keywords, family.name


def _meta(model: str, task: str = "instances", **extra) -> str:
    return ArtifactMetadata(
        model=model,
        task=task,
        class_names=("a", "b"),
        input_size_hw=(64, 64),
        mean=(0, 0, 0),
        std=(1, 1, 1),
        extra=extra,
    ).to_json()


def test_load_runner_reads_a_mask_rcnn_artifact_with_the_mask_rcnn_runner(tmp_path):
    from tests.pipelines.test_yolact import constant_artifact

    outputs = {
        "boxes": np.array([[8, 8, 40, 30], [0, 0, 10, 10]], np.float32),
        "labels": np.array([2, 1], np.float32),
        "scores": np.array([0.9, 0.2], np.float32),
        "mask_probs": np.ones((2, 14, 14), np.float32),
    }
    path = constant_artifact(
        str(tmp_path / "m.onnx"), outputs, _meta("maskrcnn_tiny", resize={"min_size": 64, "max_size": 64})
    )
    runner = segstream.load_runner(path, score_threshold=0.5)
    assert isinstance(runner.runner, MaskRCNNRunner)
    inst = runner(np.zeros((64, 64, 3), np.uint8))
    assert len(inst) == 1 and inst.label_names() == ["b"] and inst.masks.shape == (1, 64, 64)


def _plain_onnx(path) -> str:
    from tests.test_bad_input import _onnx_double

    return _onnx_double(path)


@pytest.mark.parametrize(
    "make, kwargs, error, message",
    [
        (lambda d: str(d / "missing.onnx"), {}, ConfigError, "missing.onnx: no such model file"),
        (lambda d: _plain_onnx(d / "plain.onnx"), {}, ModelError, "plain.onnx: the file has no segstream metadata"),
        (
            lambda d: (d / "junk.onnx").write_bytes(b"not a model") and str(d / "junk.onnx"),
            {},
            ModelError,
            "ONNX Runtime cannot load it",
        ),
        (lambda d: str(d / "model.engine"), {}, ConfigError, "does not open .engine; pass backend='tensorrt'"),
        (lambda d: str(d / "model.pth"), {}, ConfigError, "does not open .pth; expected .onnx"),
        (lambda d: YOLACT, {"backend": "onnxrt"}, ConfigError, "unknown backend 'onnxrt'; did you mean 'onnxruntime'?"),
        (
            lambda d: YOLACT,
            {"score_treshold": 0.5},
            ConfigError,
            "unknown setting 'score_treshold' for 'yolact_tiny'; did you mean 'score_threshold'?",
        ),
        (lambda d: DEEPLAB_TINY, {"score_threshold": 0.5}, ConfigError, "accepted: input_size_hw, smoothing"),
    ],
)
def test_load_runner_errors_are_one_line(tmp_path, make, kwargs, error, message):
    with pytest.raises(error) as info:
        segstream.load_runner(make(tmp_path), **kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_load_runner_refuses_an_instance_model_it_has_no_runner_for(tmp_path):
    from tests.pipelines.test_yolact import constant_artifact

    path = constant_artifact(str(tmp_path / "s.onnx"), {"boxes": np.zeros((1, 1, 4), np.float32)}, _meta("solo_r50"))
    with pytest.raises(
        ModelError, match="no runner for instances model 'solo_r50'; known instances families: yolact, maskrcnn"
    ):
        segstream.load_runner(path)


@pytest.mark.parametrize(
    "image, message",
    [
        (None, "got None (cv2.imread returns None for a file it cannot read)"),
        ([[0, 0, 0]], "got list"),
        (np.zeros((24, 32), np.uint8), "got a grey image (24, 32) uint8; convert it with cv2.cvtColor"),
        (np.zeros((24, 32, 4), np.uint8), "got 4 channels (24, 32, 4) uint8; convert it with"),
        (np.zeros((24, 32, 3), np.float32), "got (24, 32, 3) float32; scale it to 0-255"),
        (np.zeros((3, 24, 32), np.uint8), "got (3, 24, 32) uint8"),
        (np.zeros((0, 32, 3), np.uint8), "got an empty image (0, 32, 3) uint8"),
    ],
)
def test_a_wrong_image_is_refused_with_what_was_found(image, message):
    runner = segstream.load_runner(DEEPLAB_TINY)
    with pytest.raises(ConfigError) as info:
        runner(image)
    assert str(info.value).startswith("expected a (H, W, 3) uint8 BGR image, ") and message in str(info.value)


# --------------------------------------------------------------------------- open_pipeline


def test_open_pipeline_from_a_dict(tmp_path):
    config = {"pipeline": {"name": "edges"}, "source": {"uri": "synthetic://?width=96&height=64&frames=50"}}
    kept = json.dumps(config)
    with segstream.open_pipeline(
        config, sinks=[str(tmp_path / "e.mp4"), str(tmp_path / "e.jsonl")], max_frames=7, overrides=quiet()
    ) as pipe:
        assert pipe.config.pipeline.name == "edges" and pipe.config.output.uris[0].endswith("e.mp4")
        report = pipe.run()
    assert json.dumps(config) == kept  # the caller's dict is not modified
    assert isinstance(report, segstream.PipelineReport) and report.reason == "eos" and report.error is None
    assert report.frames == report.frames_in == 7 and report.frames_dropped == 0
    assert report.fps > 0 and set(report.latency_ms) == {"p50", "p95", "p99"}
    assert report.frames == report.metrics["frames_out"] and report.fps == report.metrics["fps"]
    assert pipe.report is report
    assert count_video_frames(str(tmp_path / "e.mp4")) == 7
    assert [r["frame"] for r in jsonl(tmp_path / "e.jsonl")] == list(range(7))


def test_open_pipeline_applies_overrides_over_a_file_and_an_app_config(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(
        '[pipeline]\nname = "edges"\n[runtime]\njoin_timeout_s = 2.5\nprogress = false\n[output]\nuris = ["null://"]\n'
    )
    pipe = segstream.open_pipeline(
        path,
        source="synthetic://?width=64&height=48&frames=4",
        overrides={"runtime": {"queue_size": 8}, "pipeline.edges_low": 10},
    )
    c = pipe.config
    assert (c.runtime.queue_size, c.runtime.join_timeout_s, c.pipeline.edges_low) == (8, 2.5, 10)  # tables merge
    assert c.source.uri == "synthetic://?width=64&height=48&frames=4" and c.output.uris == ["null://"]
    assert pipe.run().frames == 4
    mine = AppConfig()
    pipe = segstream.open_pipeline(
        mine,
        overrides=quiet(**{"pipeline.name": "passthrough", "source.uri": "synthetic://?width=64&height=48&frames=3"}),
    )
    assert mine.pipeline.name == "edges" and pipe.config.pipeline.name == "passthrough"  # not modified
    assert pipe.run().frames == 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"config": "no/such.toml"}, "no/such.toml: no such config file"),
        ({"config": 42}, "config must be a TOML path, a dict or an AppConfig, got int"),
        ({"config": {"pipline": {}}}, "config dict: unknown key 'pipline'; did you mean 'pipeline'?"),
        ({"overrides": {"runtime.queue_sise": 8}}, "unknown key 'runtime.queue_sise'; did you mean 'queue_size'?"),
        ({"overrides": {"runtime.queue_size": 0}}, "with overrides: [runtime] runtime.queue_size must be in 1..1024"),
        ({"overrides": {"runtime.queue_size.x": 1}}, "'runtime.queue_size.x': queue_size is not a section"),
        ({"overrides": {"pipeline.name": "dashcan"}}, "unknown pipeline 'dashcan'; did you mean 'dashcam'?"),
        ({"sinks": "out.mp4"}, "sinks must be a list of URIs, e.g. ['out/overlay.mp4'], got 'out.mp4'"),
        ({"max_frames": 0}, "max_frames must be an integer >= 1 (or None), got 0"),
        ({"source": ""}, "empty source"),
    ],
)
def test_open_pipeline_errors_are_config_errors(kwargs, message):
    kwargs = {"config": {"pipeline": {"name": "edges"}}, **kwargs}
    with pytest.raises(ConfigError) as info:
        segstream.open_pipeline(**kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_pipeline_runs_once_and_close_releases_one_that_never_ran(tmp_path):
    source = "synthetic://?width=64&height=48&frames=2"
    pipe = segstream.open_pipeline({"pipeline": {"name": "edges"}}, source=source, overrides=quiet())
    pipe.run()
    with pytest.raises(SegstreamError, match="this pipeline has run; a pipeline runs once"):
        pipe.run()
    config = {"pipeline": {"name": "road"}, "semantic": {"artifact": DEEPLAB_TINY}}
    with segstream.open_pipeline(config, source=source, overrides=quiet()) as unused:
        stages = [getattr(st, "inner", st) for st in unused._graph.stages()]  # scheduled stages wrap the model's
        backends = [st.backend for st in stages if hasattr(st, "backend")]
        assert len(backends) == 1 and backends[0]._session is not None
    assert backends[0]._session is None  # closed on leaving the block
    with pytest.raises(SegstreamError, match="this pipeline is closed"):
        unused.run()


def test_stop_from_another_thread_drains_and_finalises(tmp_path):
    video = tmp_path / "s.mp4"
    pipe = segstream.open_pipeline(
        {"pipeline": {"name": "edges"}},
        source="synthetic://?width=96&height=64&frames=0",
        sinks=[str(video)],
        overrides=quiet(),
    )
    timer = threading.Timer(1.0, pipe.stop)
    timer.start()
    report = pipe.run()  # an endless source: only stop() ends it
    timer.join()
    assert report.reason == "stop" and report.error is None and report.frames > 0
    assert count_video_frames(str(video)) == report.frames


def test_a_failed_run_raises_its_error_and_keeps_the_report(tmp_path):
    blocker = tmp_path / "f"
    blocker.write_text("x")
    pipe = segstream.open_pipeline(
        {"pipeline": {"name": "edges"}},
        source="synthetic://?frames=3",
        sinks=[str(blocker / "o.mp4")],
        overrides=quiet(),
    )
    with pytest.raises(SinkError, match="cannot create the folder for the video"):
        pipe.run()
    missing = segstream.open_pipeline(
        {"pipeline": {"name": "edges"}}, source=str(tmp_path / "nothing.mp4"), sinks=["null://"], overrides=quiet()
    )
    with pytest.raises(SegstreamError) as info:
        missing.run()
    assert "nothing.mp4" in str(info.value)


def test_sigint_drains_the_pipeline_then_raises_keyboard_interrupt(tmp_path):
    results = tmp_path / "r.jsonl"
    code = (
        "import segstream\n"
        "pipe = segstream.open_pipeline({'pipeline': {'name': 'edges'}}, overrides={'runtime.progress': False},\n"
        "                               source='synthetic://?width=96&height=64&fps=30&frames=0&live=1',\n"
        f"                               sinks=[{str(tmp_path / 'v.mp4')!r}, {str(results)!r}])\n"
        "try:\n"
        "    pipe.run()\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted after', pipe.report.frames, 'frames', pipe.report.reason)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (results.exists() and len(results.read_text().splitlines()) >= 3):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    words = stdout.split()
    assert words[:2] == ["interrupted", "after"] and words[-1] == "stop" and int(words[2]) >= 3
    assert count_video_frames(str(tmp_path / "v.mp4")) == int(words[2]) == len(jsonl(results))


def test_open_pipeline_takes_several_sources_and_a_single_one_clears_the_configs_list(tmp_path):
    import segstream

    cams = ["synthetic://?width=160&height=120&fps=10&frames=3", "synthetic://?width=160&height=120&fps=10&frames=2"]
    out = tmp_path / "r.jsonl"
    config = {"pipeline": {"name": "passthrough"}, "runtime": {"progress": False}}
    with segstream.open_pipeline(config, source=cams, sinks=[str(out)]) as pipe:
        report = pipe.run()
    assert report.error is None and report.frames == 5
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted({line["source"] for line in lines}) == ["cam0", "cam1"]
    one = segstream.open_pipeline({**config, "source": {"uris": cams}}, source=cams[0], sinks=["null://"])
    assert one.config.source.uris == [] and one.config.source.uri == cams[0]
    one.close()
