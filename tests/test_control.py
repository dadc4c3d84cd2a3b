"""ROS-free control logic (uva.control): timestamp alignment of the observation history (the
policy node, the video node and the offline bag replay all assemble observations with it),
observation consistency checks and the safety filter's own guarantees."""
import numpy as np
import pytest

from uva.control import (SafetyFilter, SafetyViolation, StampedBuffer, align_history, encode_ahead, plan_due,
                         camera_set_reason, future_skew_reason, select_joints)


def buffers(image_stamps, joint_stamps, n_cameras=1):
    cams = [StampedBuffer() for _ in range(n_cameras)]
    for cam in cams:
        for t in image_stamps:
            cam.push(t, np.full((2, 2, 3), int(round(t * 100)), np.uint8))
    joints = StampedBuffer()
    for t in joint_stamps:
        joints.push(t, np.array([t]))
    return cams, joints


def align(cams, joints, now, n_frames=2, **kw):
    return align_history(cams, joints, now, n_frames, frame_period_s=0.1, sync_slop_s=0.05,
                         max_age_s=0.5, **kw)


def test_joint_state_still_in_flight_uses_the_newest_complete_frame():
    # The camera frame at 0.3 arrived, its joint state (published just after it) has not yet:
    # the tick must use the matched frame at 0.2, not refuse.
    cams, joints = buffers([0.0, 0.1, 0.2, 0.3], [0.0, 0.1, 0.2])
    obs, reason = align(cams, joints, now=0.31)
    assert obs is not None, reason
    assert obs.stamp == 0.2 and abs(obs.age_s - 0.11) < 1e-9
    np.testing.assert_allclose(obs.states[:, 0], [0.1, 0.2])
    assert [int(f[0][0, 0, 0]) for f in obs.images] == [10, 20]


def test_every_frame_matched_uses_the_newest_frame():
    cams, joints = buffers([0.0, 0.1, 0.2, 0.3], [0.0, 0.1, 0.2, 0.301])
    obs, reason = align(cams, joints, now=0.31, n_frames=3)
    assert obs is not None, reason
    assert obs.stamp == 0.3
    np.testing.assert_allclose(obs.states[:, 0], [0.1, 0.2, 0.301])


def test_joint_states_offset_from_the_camera_are_refused():
    # joint states resumed only after the newest frame: 80 ms from it, the slop is 50 ms
    cams, joints = buffers([0.0, 0.1, 0.2], [0.28])
    obs, reason = align(cams, joints, now=0.3)
    assert obs is None and "not synchronised" in reason


def test_dead_joint_states_are_reported_as_stale_not_as_an_old_camera():
    cams, joints = buffers(np.arange(0, 1.01, 0.1).round(2), [0.0])
    obs, reason = align(cams, joints, now=1.0)
    assert obs is None and reason.startswith("joint states are stale")


def test_stale_camera_is_refused():
    cams, joints = buffers([0.0, 0.1], np.arange(0, 1.01, 0.1).round(2))
    obs, reason = align(cams, joints, now=1.0)
    assert obs is None and reason.startswith("camera 0 is stale")


def test_silent_second_camera_is_named():
    cams, joints = buffers([0.0, 0.1], [0.0, 0.1])
    cams.append(StampedBuffer())
    obs, reason = align(cams, joints, now=0.1)
    assert obs is None and reason == "camera 1: no image received yet"


# ---------------------------------------------------------------- cameras by name

def test_stale_or_missing_camera_is_named():
    cams, joints = buffers([0.0, 0.1, 0.2, 0.3], [0.0, 0.1, 0.2, 0.3], n_cameras=2)
    names = ["scene", "wrist"]
    obs, reason = align(cams, joints, now=0.31, camera_names=names)
    assert obs is not None and obs.cameras == names, reason
    assert all(len(f) == 2 for f in obs.images)
    wrist = StampedBuffer()  # the wrist camera stopped at 0.0: stale, and said so by name
    wrist.push(0.0, np.zeros((2, 2, 3), np.uint8))
    obs, reason = align([cams[0], wrist], joints, now=0.6, camera_names=names)
    assert obs is None and reason.startswith("camera wrist is stale"), reason
    obs, reason = align([cams[0], StampedBuffer()], joints, now=0.31, camera_names=names)
    assert obs is None and reason == "camera wrist: no image received yet"
    obs, reason = align([StampedBuffer(), cams[1]], joints, now=0.31, camera_names=names)
    assert obs is None and reason == "camera scene: no image received yet"


def test_unsynchronised_second_camera_is_named():
    cams, joints = buffers([0.0, 0.1, 0.2], [0.0, 0.1, 0.2])
    wrist = StampedBuffer()
    for t in (0.03, 0.13, 0.27):  # 70-80 ms off the scene camera, slop 50 ms
        wrist.push(t, np.zeros((2, 2, 3), np.uint8))
    obs, reason = align([cams[0], wrist], joints, now=0.28, camera_names=["scene", "wrist"])
    assert obs is None and reason.startswith("camera wrist not synchronised with camera scene")


def test_camera_set_must_match_the_checkpoint():
    assert camera_set_reason(["wrist", "scene"], ["scene", "wrist"]) == ""
    reason = camera_set_reason(["scene"], ["scene", "wrist"])
    assert "missing ['wrist']" in reason
    reason = camera_set_reason(["scene", "top"], ["scene"])
    assert "unknown ['top']" in reason
    assert "twice" in camera_set_reason(["scene", "scene"], ["scene"])


# ---------------------------------------------------------------- observation consistency

def test_future_stamps_hold_with_the_stream_named():
    cams, joints = buffers([0.0, 0.1, 0.2], [0.0, 0.1, 0.2])
    joints.push(1e9, np.array([0.0]))  # a joint state from a clock decades ahead
    obs, reason = align(cams, joints, now=0.21, max_future_skew_s=0.1)
    assert obs is None and reason.startswith("joint states: stamped") and "future" in reason
    cams, joints = buffers([0.0, 0.1, 0.5], [0.0, 0.1, 0.2])  # camera 0.29 s ahead of now
    obs, reason = align(cams, joints, now=0.21, max_future_skew_s=0.1,
                        camera_names=["scene"])
    assert obs is None and reason.startswith("camera scene: stamped")
    cams, joints = buffers([0.0, 0.1, 0.25], [0.0, 0.1, 0.25])  # 40 ms ahead: within the skew
    obs, reason = align(cams, joints, now=0.21, max_future_skew_s=0.1)
    assert obs is not None, reason
    assert future_skew_reason(10.0, 10.0, 0.1) == ""
    assert "future" in future_skew_reason(10.2, 10.0, 0.1)
    assert "not finite" in future_skew_reason(float("nan"), 10.0, 0.1)


def test_select_joints_refuses_inconsistent_readings():
    wanted = ["a", "b"]
    np.testing.assert_array_equal(select_joints(["b", "x", "a"], [2.0, 9.0, 1.0], wanted), [1, 2])
    with pytest.raises(ValueError, match=r"joint names repeated \['a'\]"):
        select_joints(["a", "b", "a"], [1.0, 2.0, 5.0], wanted)
    with pytest.raises(ValueError, match="missing joints"):
        select_joints(["a"], [1.0], wanted)
    with pytest.raises(ValueError, match="2 names but 3 positions"):
        select_joints(["a", "b"], [1.0, 2.0, 3.0], wanted)
    with pytest.raises(ValueError, match=r"non-finite positions for \['b'\]"):
        select_joints(["a", "b"], [1.0, float("inf")], wanted)


# ---------------------------------------------------------------- safety filter

LOW, HIGH = [-1.0, -2.0, 0.0], [1.0, 2.0, 0.04]


@pytest.mark.parametrize("lower, upper, step, match", [
    (LOW, HIGH, -1.0, "max_joint_step must be finite and > 0"),
    (LOW, HIGH, 0.0, "max_joint_step must be finite and > 0"),
    (LOW, HIGH, float("nan"), "max_joint_step must be finite"),
    (LOW, HIGH, [0.1, 0.1], "one value or one per joint"),
    ([-1.0, float("nan"), 0.0], HIGH, 0.1, "limits must be finite"),
    (LOW, [1.0, float("inf"), 0.04], 0.1, "limits must be finite"),
    ([2.0, -2.0, 0.0], HIGH, 0.1, r"exceed upper limits at joints \[0\]"),
    (LOW[:2], HIGH, 0.1, "2 lower limits but 3 upper"),
    ([], [], 0.1, "non-empty"),
])
def test_safety_filter_refuses_unsafe_settings(lower, upper, step, match):
    with pytest.raises(ValueError, match=match):
        SafetyFilter(lower, upper, step)


def test_safety_filter_refuses_limits_for_other_joints():
    with pytest.raises(ValueError, match="3 joint limits for 8 joints"):
        SafetyFilter(LOW, HIGH, 0.1, n_joints=8)


def test_safety_filter_output_is_safe_for_any_input():
    f = SafetyFilter(LOW, HIGH, [0.1, 0.2, 0.01])
    rng = np.random.default_rng(0)
    for _ in range(200):
        current = rng.uniform(-3, 3, 3)  # may be measured outside the limits
        chunk = rng.uniform(-5, 5, (rng.integers(1, 20), 3))
        out = f.apply(chunk, current)
        f.check(out, current)  # what apply promises, checked independently below
        assert np.isfinite(out).all()
        assert (out >= np.array(LOW)).all() and (out <= np.array(HIGH)).all()
        start = np.clip(current, LOW, HIGH)
        assert (np.abs(np.diff(np.vstack([start, out]), axis=0)) <= [0.1 + 1e-12, 0.2 + 1e-12,
                                                                      0.01 + 1e-12]).all()
    with pytest.raises(ValueError, match="non-finite"):
        f.apply(np.full((2, 3), np.nan), np.zeros(3))
    with pytest.raises(ValueError, match="shape"):
        f.apply(np.zeros((2, 4)), np.zeros(3))
    with pytest.raises(ValueError, match="shape"):
        f.apply(np.zeros((2, 3)), np.zeros(2))


def test_safety_filter_check_catches_what_must_not_be_published():
    f = SafetyFilter(LOW, HIGH, 0.1)
    here = np.zeros(3)
    with pytest.raises(SafetyViolation, match="not finite"):
        f.check(np.array([[0.0, np.nan, 0.0]]), here)
    with pytest.raises(SafetyViolation, match=r"outside the joint limits at joints \[2\]"):
        f.check(np.array([[0.0, 0.0, 0.05]]), here)
    with pytest.raises(SafetyViolation, match=r"exceed max_joint_step at joints \[1\]"):
        f.check(np.array([[0.0, 0.05, 0.0], [0.0, 0.2, 0.0]]), here)
    f.check(np.array([[0.1, -0.1, 0.0], [0.2, -0.2, 0.04]]), here)  # exactly at the caps: fine
    g = SafetyFilter(LOW, HIGH, 0.1)
    g.lower = np.array([-1.0, -2.0, 0.5])  # corrupted after construction: apply refuses its result
    with pytest.raises(SafetyViolation):
        g.apply(np.zeros((1, 3)), here)


@pytest.mark.parametrize("camera_hz", [5.0, 7.0, 10.0, 15.0, 30.0])
def test_plans_are_due_every_n_exec_periods_from_the_nearest_frame(camera_hz):
    """Whatever the camera rate, chunks are planned from the frames nearest every n_exec control
    periods: on average once per n_exec * dt, never sooner than half a frame early."""
    dt, n_exec, period = 0.1, 4, 1 / camera_hz
    rng = np.random.default_rng(0)
    stamps = np.cumsum(period + rng.uniform(-0.1, 0.1, 400) * period)  # jittered camera
    planned = []
    for t in stamps:
        if plan_due(t, planned[-1] if planned else None, n_exec, dt, period):
            planned.append(t)
    gaps = np.diff(planned)
    assert gaps.min() >= n_exec * dt - 0.6 * period
    assert abs(gaps.mean() - max(n_exec * dt, period)) < max(0.6 * period, 0.02), gaps.mean()


def test_any_frame_is_due_after_a_reset():
    assert plan_due(5.0, None, 4, 0.1, 0.1)
    assert not plan_due(5.2, 5.0, 4, 0.1, 0.1) and plan_due(5.35, 5.0, 4, 0.1, 0.1)


@pytest.mark.parametrize("camera_hz", [7.0, 10.0, 15.0, 30.0])
@pytest.mark.parametrize("n_exec, n_frames", [(8, 2), (8, 3), (4, 2), (12, 3)])
def test_history_frames_are_encoded_ahead_once(camera_hz, n_exec, n_frames):
    """The frames encode_ahead picks between chunks hold the older frames the next chunk's
    history takes (align's nearest-frame rule): the inference then encodes only its newest frame,
    and about two frames per history target are encoded ahead (those within a frame period). With n_exec at most one history spacing
    (the PushT file: 4 steps, 4 per frame) the older frames were planned from already: none."""
    dt, spacing = 0.1, 0.4  # 4 actions per frame at 10 Hz
    period = 1 / camera_hz
    rng = np.random.default_rng(1)
    stamps = np.cumsum(period + rng.uniform(-0.1, 0.1, 600) * period)
    planned, ahead, late = [], set(), 0
    for t in stamps:
        last = planned[-1] if planned else None
        if plan_due(t, last, n_exec, dt, period):
            history = {float(stamps[np.argmin(np.abs(stamps - (t - j * spacing)))])
                       for j in range(1, n_frames)}
            if last is not None:
                late += len({h for h in history if h > last} - ahead)
            planned.append(t)
        elif encode_ahead(t, last, n_exec, dt, n_frames, spacing, period):
            ahead.add(float(t))
    plans = len(planned) - 1
    if n_exec * dt <= spacing:
        assert not ahead and late == 0
    else:
        targets = plans * (n_frames - 1)
        assert late <= 0.05 * targets, (late, targets)  # jitter may move a few
        # the frames within a period of each target and nothing else (+ the last, unplanned)
        assert targets <= len(ahead) <= 2.2 * targets + 2 * n_frames, (len(ahead), targets)
