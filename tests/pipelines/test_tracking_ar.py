"""Tracks an AR client can trust: confirmation, coasting, statistics."""

import numpy as np

from segstream.pipelines.tasks.results import Instances
from segstream.pipelines.tasks.tracking import InstanceTracker, TrackStage
from segstream.stream.frame import Frame


def _one(x: float, label: int = 0) -> Instances:
    box = np.array([[x, 10, x + 30, 40]], np.float32)
    return Instances(box, np.array([0.9], np.float32), np.array([label]))


def test_tentative_tracks_are_not_reported():
    tracker = InstanceTracker(min_hits=3)
    reported = [len(tracker.update(_one(10 + 2 * s), seq=s)) for s in range(5)]
    assert reported == [0, 0, 1, 1, 1]
    assert tracker.stats.started == 1 and tracker.stats.confirmed == 1


def test_tentative_tracks_are_reported_when_asked():
    tracker = InstanceTracker(min_hits=3, report_tentative=True)
    out = tracker.update(_one(10), seq=0)
    assert len(out) == 1 and out.track_ids[0] >= 1


def test_a_fluke_never_reaches_the_client_and_is_counted():
    tracker = InstanceTracker(min_hits=3)
    assert len(tracker.update(_one(100), seq=0)) == 0
    assert len(tracker.update(Instances.empty(), seq=1)) == 0
    assert tracker.tracks == []  # a tentative track that misses once is gone
    assert tracker.finish().to_json_dict()["tracks_confirmed"] == 0


def test_a_confirmed_track_coasts_through_frames_without_detections():
    tracker = InstanceTracker(min_hits=2, coast_s=0.5)
    tracker.update(_one(10), seq=0, t_s=0.0)
    ids = {int(tracker.update(_one(10 + 3 * s), seq=s, t_s=s / 30).track_ids[0]) for s in range(1, 4)}
    assert len(ids) == 1
    # 12 frames (0.4 s) without a detection: the track coasts unreported...
    for s in range(4, 16):
        assert len(tracker.update(Instances.empty(), seq=s, t_s=s / 30)) == 0
    # ...and the object comes back where its motion predicts: same id, reported at once.
    back = tracker.update(_one(10 + 3 * 16), seq=16, t_s=16 / 30)
    assert back.track_ids.tolist() == [ids.pop()]


def test_a_lost_track_ends_after_its_coast_time():
    tracker = InstanceTracker(min_hits=1, coast_s=0.2, max_age=1000)
    first = int(tracker.update(_one(10), seq=0, t_s=0.0).track_ids[0])
    for s in range(1, 10):
        tracker.update(Instances.empty(), seq=s, t_s=s / 30)
    assert int(tracker.update(_one(10), seq=10, t_s=10 / 30).track_ids[0]) != first


def test_ids_and_confirmation_do_not_depend_on_the_instance_cadence():
    """The instance model running on every 3rd frame only: same id, velocity per second."""
    tracker = InstanceTracker(min_hits=3, coast_s=0.5)
    ids = []
    for s in range(0, 30, 3):
        out = tracker.update(_one(10 + 4 * s), seq=s, t_s=s / 30)
        ids.extend(out.track_ids.tolist())
    assert len(set(ids)) == 1 and len(ids) == 8


def test_short_confirmed_tracks_are_counted():
    tracker = InstanceTracker(min_hits=2, coast_s=0.0, max_age=0)
    tracker.update(_one(10), seq=0)
    tracker.update(_one(11), seq=1)  # confirmed, lived 2 frames
    tracker.update(Instances.empty(), seq=2)
    for s in range(3, 12):  # another one living 9 frames
        tracker.update(_one(200 + s, label=1), seq=s)
    tracker.update(_one(300, label=2), seq=12)
    tracker.update(_one(300, label=2), seq=13)  # confirmed, cut by the end of the run: not short
    stats = tracker.finish().to_json_dict()
    assert stats["tracks_started"] == 3 and stats["tracks_confirmed"] == 3
    assert stats["confirmed_under_5_frames"] == 1 and stats["confirmed_alive_at_end"] == 1


def test_track_stage_skips_frames_without_instances_and_reports_stats():
    stage = TrackStage(min_hits=2)
    img = np.zeros((60, 80, 3), np.uint8)
    for s in range(6):
        f = Frame("src", s, s / 30, 0, img)
        if s % 2 == 0:  # the instance model ran on even frames only
            f.results["instances"] = _one(10 + s)
        out = stage.process(f)
        assert ("instances" in out.results) == (s % 2 == 0)
    m = stage.metrics()
    assert m["tracks_started"] == 1 and m["tracks_confirmed"] == 1
