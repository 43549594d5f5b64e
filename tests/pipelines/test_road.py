"""Road semantics on numpy: size policy, drivable area, class groups, smoothing and flicker,
and the runner on a real ONNX Runtime backend."""

import numpy as np
import pytest

from segstream.pipelines.tasks.results import SemanticMap
from segstream.pipelines.tasks.road import (
    CITYSCAPES_CLASSES,
    CITYSCAPES_PALETTE_BGR,
    EmaSmoother,
    FlickerMeter,
    LabelHysteresis,
    PreprocessInfo,
    SemanticPostprocessor,
    SemanticRunner,
    SemanticSettings,
    SizePolicy,
    drivable_mask,
    group_shares,
    labels_from_logits,
    preprocess_image,
)
from segstream.stream.errors import ConfigError, ModelError

R, S, K, C = 0, 1, 10, 13  # road, sidewalk, sky, car


def test_cityscapes_palette_is_the_standard_one_in_bgr():
    assert CITYSCAPES_PALETTE_BGR.shape == (19, 3)
    assert tuple(CITYSCAPES_PALETTE_BGR[0]) == (128, 64, 128)  # road (symmetric)
    assert tuple(CITYSCAPES_PALETTE_BGR[13]) == (142, 0, 0)  # car: RGB (0, 0, 142)
    assert tuple(CITYSCAPES_PALETTE_BGR[11]) == (60, 20, 220)  # person: RGB (220, 20, 60)


@pytest.mark.parametrize(
    "policy, frame, want",
    [
        (SizePolicy("native"), (540, 960), (540, 960)),
        (SizePolicy("fixed", size_hw=(256, 512)), (540, 960), (256, 512)),
        (SizePolicy("short_side", short_side=520), (540, 960), (520, 924)),
        (SizePolicy("short_side", short_side=520), (1280, 720), (924, 520)),
    ],
)
def test_size_policy(policy, frame, want):
    assert policy.model_size(frame) == want
    assert SizePolicy.from_dict(policy.to_dict()) == policy


def test_size_policy_rejects_incomplete_settings():
    with pytest.raises(ConfigError, match="needs size_hw"):
        SizePolicy("fixed")
    with pytest.raises(ConfigError, match="must be native, fixed or short_side"):
        SizePolicy("stretch")


def test_preprocess_colour_order_and_normalisation():
    img = np.zeros((4, 6, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 10, 20, 30  # B, G, R
    x = preprocess_image(img, size_hw=(4, 6), mean=(1, 2, 3), std=(1, 2, 3), color_order="RGB")
    assert x.shape == (1, 3, 4, 6) and x.dtype == np.float32 and x.flags.c_contiguous
    np.testing.assert_allclose(x[0, :, 0, 0], [(30 - 1) / 1, (20 - 2) / 2, (10 - 3) / 3])
    xb = preprocess_image(img, size_hw=(2, 3), mean=(0, 0, 0), std=(1, 1, 1), color_order="BGR")
    assert xb.shape == (1, 3, 2, 3) and xb[0, 0, 0, 0] == 10


def test_labels_from_logits_argmax_then_nearest_resize():
    logits = np.zeros((1, 3, 2, 2), np.float32)
    logits[0, 2, 0, 1] = 5
    logits[0, 1, 1, 0] = 5
    ids = labels_from_logits(logits, (4, 6))
    assert ids.dtype == np.uint8 and ids.shape == (4, 6)
    np.testing.assert_array_equal(ids, np.array([[0, 0, 0, 2, 2, 2]] * 2 + [[1, 1, 1, 0, 0, 0]] * 2, np.uint8))


def _scene():
    """12x16: sky on top, ego road at the bottom centre, a car on it, a separate road patch
    to the upper left behind a sidewalk strip."""
    m = np.full((12, 16), K, np.uint8)
    m[4:, :] = S
    m[6:, 4:12] = R  # ego road, touches the bottom centre
    m[8:10, 6:8] = C  # a car in the lane
    m[4:6, 0:3] = R  # road across the sidewalk: not connected
    return m


def test_drivable_mask_keeps_road_connected_to_bottom_centre():
    m = _scene()
    mask = drivable_mask(m)
    assert mask.dtype == bool and mask.shape == m.shape
    assert mask[11, 8] and mask[6, 4]
    assert not mask[4:6, 0:3].any()  # the road patch behind the sidewalk
    assert not mask[8:10, 6:8].any()  # the car is not free space
    assert mask.sum() == (m == R).sum() - 6
    assert SemanticMap(m, CITYSCAPES_CLASSES, drivable_mask=mask).to_json_dict()["drivable_share"] == round(
        mask.mean(), 5
    )


def test_drivable_mask_empty_when_bottom_centre_is_not_road():
    m = _scene()
    m[10:, 5:11] = C  # a car right in front covers the seed box
    assert not drivable_mask(m, seed_width=0.2).any()
    assert drivable_mask(m, seed_width=1.0).any()  # a wider seed box reaches the road beside it


def test_drivable_mask_closing_bridges_a_lane_marking():
    m = np.full((10, 20), R, np.uint8)
    m[:, 12] = 2  # a marking column labelled otherwise splits the road
    m[:3, :] = K
    left_only = drivable_mask(m, seed_width=0.05)  # the seed is column 9
    assert left_only[3:, :12].all() and not left_only[:, 12:].any()
    assert drivable_mask(m, seed_width=0.05, close_px=3)[5:, 13:].all()


def test_group_shares_follow_the_lookup_table():
    m = _scene()
    shares = group_shares(m, CITYSCAPES_CLASSES)
    assert shares["drivable"] == round(((m == R).sum()) / m.size, 5)
    assert shares["vehicles"] == round(4 / m.size, 5)
    assert set(shares) == {"drivable", "sidewalk", "sky", "vehicles"}


def _noisy_sequence(n=20, noise=0.8, seed=0):
    """A static 3-class scene seen with per-frame logit noise: (truth, [logits (1, 3, h, w)])."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((24, 32), np.uint8)
    truth[:8] = 2
    truth[8:, 20:] = 1
    clean = np.stack([(truth == k).astype(np.float32) for k in range(3)])
    return truth, [(clean + rng.normal(0, noise, clean.shape).astype(np.float32))[None] for _ in range(n)]


def _settings(**kw):
    return SemanticSettings(
        class_names=("road", "sidewalk", "sky"),
        palette_bgr=np.zeros((3, 3), np.uint8),
        mean=(0, 0, 0),
        std=(1, 1, 1),
        **kw,
    )


@pytest.mark.parametrize("smoothing", ["ema", "hysteresis"])
def test_smoothing_reduces_flicker_without_losing_accuracy(smoothing):
    truth, seq = _noisy_sequence()
    info = PreprocessInfo(frame_hw=truth.shape, model_hw=truth.shape)
    raw, smooth = (
        SemanticPostprocessor(_settings()),
        SemanticPostprocessor(_settings(smoothing=smoothing, ema_alpha=0.3)),
    )
    acc_raw, acc_smooth = [], []
    for logits in seq:
        acc_raw.append((raw({"logits": logits}, info).class_ids == truth).mean())
        acc_smooth.append((smooth({"logits": logits}, info).class_ids == truth).mean())
    assert raw.flicker.mean > 0.1
    assert smooth.flicker.mean < 0.5 * raw.flicker.mean
    assert np.mean(acc_smooth[5:]) >= np.mean(acc_raw[5:])


def test_hysteresis_switches_after_n_frames_and_ema_restarts_on_new_size():
    h = LabelHysteresis(frames=3)
    a, b = np.zeros((2, 2), np.uint8), np.ones((2, 2), np.uint8)
    assert (h.update(a) == 0).all()
    assert (h.update(b) == 0).all() and (h.update(b) == 0).all()
    assert (h.update(b) == 1).all()
    ema = EmaSmoother(0.5)
    ema.update(np.ones((2, 4, 4), np.float32))
    np.testing.assert_allclose(ema.update(np.zeros((2, 4, 4), np.float32)), 0.5)
    np.testing.assert_allclose(ema.update(np.zeros((2, 8, 8), np.float32)), 0.0)


def test_flicker_meter_counts_changed_pixels():
    f = FlickerMeter()
    a = np.zeros((4, 5), np.uint8)
    assert f.update(a) is None
    b = a.copy()
    b[0, :2] = 3
    assert f.update(b) == pytest.approx(2 / 20)
    assert f.update(b) == 0.0
    assert f.mean == pytest.approx(1 / 20)


def test_runner_on_onnxruntime_reads_its_settings_from_the_artifact(tiny_onnx):
    # the runner itself is torch-free; the shared artifact was exported with torch in a subprocess
    from segstream.stream.backends.onnxruntime import OnnxRuntimeBackend
    from tests.export.tiny_model import TINY_META

    # the shared tiny test artifact: 3 classes ("road", "car", "person"), dynamic size, output "logits"
    path = tiny_onnx
    backend = OnnxRuntimeBackend(path)
    runner = SemanticRunner(backend, input_size_hw=(32, 48), smoothing="ema")
    assert runner.settings.class_names == TINY_META.class_names
    assert runner.settings.size_policy == SizePolicy("fixed", size_hw=(32, 48))
    img = np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    sem = runner(img)
    assert sem.class_ids.shape == (90, 120) and sem.class_ids.dtype == np.uint8
    assert sem.class_ids.max() < 3 and sem.drivable_mask is not None
    np.testing.assert_array_equal(sem.palette_bgr, np.asarray(TINY_META.palette_bgr, np.uint8))
    direct = backend.run({"image": preprocess_image(img, size_hw=(32, 48), mean=TINY_META.mean, std=TINY_META.std)})
    np.testing.assert_array_equal(
        SemanticRunner(backend, input_size_hw=(32, 48))(img).class_ids, labels_from_logits(direct["logits"], (90, 120))
    )
    runner.close()


def test_settings_refuse_an_instances_artifact():
    from segstream.stream.backends.base import ArtifactMetadata

    meta = ArtifactMetadata(
        model="y", task="instances", class_names=("a",), input_size_hw=None, mean=(0, 0, 0), std=(1, 1, 1)
    )
    with pytest.raises(ModelError, match="'instances' artifact where a 'semantic' one is needed"):
        SemanticSettings.from_metadata(meta)


def test_settings_follow_a_fixed_size_artifact_and_refuse_another_size():
    from segstream.stream.backends.base import ArtifactMetadata

    meta = ArtifactMetadata(
        model="m",
        task="semantic",
        class_names=("road", "sky"),
        input_size_hw=(64, 96),
        mean=(0, 0, 0),
        std=(1, 1, 1),
        extra={"size_policy": {"kind": "native"}},
    )
    assert SemanticSettings.from_metadata(meta).size_policy == SizePolicy("fixed", size_hw=(64, 96))
    assert SemanticSettings.from_metadata(meta).palette_bgr.shape == (2, 3)
    with pytest.raises(ConfigError, match="takes 64x96 only, input size 128x192 asked for"):
        SemanticSettings.from_metadata(meta, input_size_hw=[128, 192])
