"""Timestamp alignment of the observation history (uva.control.align_history), without ROS:
the policy node, the video node and the offline bag replay all assemble observations with it."""
import numpy as np

from uva.control import StampedBuffer, align_history


def buffers(image_stamps, joint_stamps, n_cameras=1):
    cams = [StampedBuffer() for _ in range(n_cameras)]
    for cam in cams:
        for t in image_stamps:
            cam.push(t, np.full((2, 2, 3), int(round(t * 100)), np.uint8))
    joints = StampedBuffer()
    for t in joint_stamps:
        joints.push(t, np.array([t]))
    return cams, joints


def align(cams, joints, now, n_frames=2):
    return align_history(cams, joints, now, n_frames, frame_period_s=0.1, sync_slop_s=0.05,
                         max_age_s=0.5)


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
    assert obs is None and reason.startswith("camera is stale")


def test_silent_second_camera_is_named():
    cams, joints = buffers([0.0, 0.1], [0.0, 0.1])
    cams.append(StampedBuffer())
    obs, reason = align(cams, joints, now=0.1)
    assert obs is None and reason == "camera 1: no image received yet"
