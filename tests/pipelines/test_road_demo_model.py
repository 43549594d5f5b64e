"""The shipped demo artifact (weights/deeplab_tiny_synthetic.onnx, deeplab_tiny trained on the
synthetic scenes) runs torch-free through SemanticRunner and finds the road and free space."""

import os

import numpy as np

from segstream.pipelines.tasks.road import SemanticRunner, SizePolicy
from segstream.stream.backends.onnxruntime import OnnxRuntimeBackend
from tests.conftest import ROOT

ARTIFACT = os.path.join(ROOT, "weights", "deeplab_tiny_synthetic.onnx")


def test_demo_artifact_segments_the_road_of_a_synthetic_720p_frame():
    from segstream.models.synthetic.scene import SceneConfig, generate_scene

    runner = SemanticRunner(OnnxRuntimeBackend(ARTIFACT, intra_op_threads=1), smoothing="ema")
    assert runner.settings.size_policy == SizePolicy(
        "fixed", size_hw=(360, 640)
    )  # the export size (make export-models)
    assert runner.settings.class_names[0] == "road" and len(runner.settings.class_names) == 19
    ious = []
    for seed in (1000, 1001, 1002):
        runner.postprocess.reset()
        sample = generate_scene((seed, 0), SceneConfig(width=1280, height=720))
        sem = runner(sample.image_bgr)
        assert sem.class_ids.shape == (720, 1280)
        road, truth = sem.class_ids == 0, sample.class_map == 0
        ious.append((road & truth).sum() / (road | truth).sum())
        assert sem.drivable_mask.any() and (sem.drivable_mask <= road).all()
    assert np.mean(ious) > 0.8, ious
    runner.close()
