import itertools

import numpy as np
import pytest

from segstream.pipelines.tasks.assignment import linear_sum_assignment
from segstream.pipelines.tasks.results import Instances
from segstream.pipelines.tasks.tracking import IdSwitchCounter, InstanceTracker, box_iou


@pytest.mark.parametrize("shape", [(1, 1), (3, 3), (2, 5), (5, 2), (6, 6)])
def test_assignment_is_optimal_against_brute_force(shape):
    rng = np.random.default_rng(sum(shape))
    for _ in range(20):
        cost = rng.random(shape)
        rows, cols = linear_sum_assignment(cost)
        n, m = shape
        # brute force over all injective maps from the smaller side
        if n <= m:
            best = min(sum(cost[i, p[i]] for i in range(n)) for p in itertools.permutations(range(m), n))
        else:
            best = min(sum(cost[p[j], j] for j in range(m)) for p in itertools.permutations(range(n), m))
        assert cost[rows, cols].sum() == pytest.approx(best)
        assert len(set(rows)) == len(rows) == len(set(cols)) == min(n, m)


def test_box_iou():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], np.float32)
    assert box_iou(a, b)[0].tolist() == pytest.approx([1.0, 1 / 3, 0.0])


def _scene(t, size=(120, 200)):
    """Two same-class objects crossing: A moves right, B moves left, overlapping mid-way."""
    h, w = size
    boxes, masks, gt = [], [], []
    for gid, x in ((1, 10 + 6 * t), (2, 170 - 6 * t)):
        y = 40 + (gid - 1) * 12
        box = np.array([x, y, x + 24, y + 30], np.float32)
        m = np.zeros(size, bool)
        m[int(box[1]) : int(box[3]), int(box[0]) : int(box[2])] = True
        boxes.append(box)
        masks.append(m)
        gt.append(gid)
    return np.stack(boxes), np.stack(masks), np.array(gt)


def test_ids_stay_stable_through_crossing_objects():
    tracker = InstanceTracker(iou_threshold=0.2)
    counter = IdSwitchCounter()
    rng = np.random.default_rng(0)
    for t in range(27):
        boxes, masks, gt = _scene(t)
        order = rng.permutation(2)  # detection order must not matter
        inst = Instances(boxes[order], np.array([0.9, 0.8], np.float32), np.zeros(2, np.int64), masks[order])
        out = tracker.update(inst, seq=t)
        counter.update(gt[order], boxes[order], out.track_ids, out.boxes_xyxy)
    assert counter.matches == 54
    assert counter.switches == 0
    assert sorted(set(counter.last_id.values())) == [1, 2]


def test_tracks_survive_short_misses_and_age_out():
    tracker = InstanceTracker(max_age=2)
    box = np.array([[10, 10, 40, 40]], np.float32)
    one = Instances(box, np.array([0.9], np.float32), np.array([3]))
    none = Instances.empty()
    first = tracker.update(one, 0).track_ids[0]
    tracker.update(none, 1)
    assert tracker.update(one, 2).track_ids[0] == first  # back after one missed frame
    for s in range(3, 7):
        tracker.update(none, s)
    assert tracker.update(one, 7).track_ids[0] != first  # aged out: a new id


def test_labels_are_not_mixed_and_backward_jump_resets():
    tracker = InstanceTracker()
    box = np.array([[10, 10, 40, 40]], np.float32)
    a = tracker.update(Instances(box, np.array([0.9], np.float32), np.array([0])), 5).track_ids[0]
    b = tracker.update(Instances(box, np.array([0.9], np.float32), np.array([1])), 6).track_ids[0]
    assert a != b
    tracker.update(Instances(box, np.array([0.9], np.float32), np.array([1])), 0)
    assert len(tracker.tracks) == 1  # state was reset by the jump back


def test_id_switch_counter_counts_switches():
    c = IdSwitchCounter()
    box = np.array([[0, 0, 10, 10]], np.float32)
    c.update(np.array([7]), box, np.array([1]), box)
    c.update(np.array([7]), box, np.array([2]), box)
    c.update(np.array([7]), box, np.array([2]), box)
    assert c.switches == 1 and c.matches == 3


def test_one_box_iou_for_the_task_library_batched_typed_and_without_nan():
    from segstream.pipelines.tasks.boxes import box_iou as shared

    a = np.array([[0, 0, 10, 10], [5, 5, 5, 5]], np.float32)  # the second has no area
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10]], np.float32)
    iou = shared(a, b)
    assert iou.dtype == np.float32
    np.testing.assert_allclose(iou, [[1.0, 1 / 3], [0.0, 0.0]], rtol=1e-6)
    batched = shared(np.stack([a, a]), np.stack([b, b[::-1]]))
    assert batched.shape == (2, 2, 2)
    np.testing.assert_allclose(batched[1], iou[:, ::-1], rtol=1e-6)
    np.testing.assert_allclose(box_iou(a, b), iou, rtol=1e-6)  # the tracker's, in float64
    assert box_iou(a, b).dtype == np.float64
