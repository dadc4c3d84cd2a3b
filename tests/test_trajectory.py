"""Smooth chunks and the controller's checks (uva.trajectory), the gripper hysteresis, and the
checkpoint parameter's resolution: no DDS needed."""
from __future__ import annotations

import numpy as np
import pytest

from uva.franka import ARM_JOINTS, FINGER_JOINTS
from uva.trajectory import (check_trajectory, chunk_velocities, continue_from, cycle_rates,
                            path_bounds, peak_acceleration, peak_velocity, replay_controller,
                            sample, sample_many, slow_to_limit, state_at)


def test_velocities_keep_the_path_between_its_points_and_end_at_rest():
    t = np.array([0.03, 0.1, 0.2, 0.3, 0.4, 0.5])
    # joint 0 climbs to a limit and is held there (a clipped target), joint 1 turns back,
    # joint 2 moves at a constant speed
    q = np.array([[0.0, 0.0, 0.0], [0.05, 0.1, -0.21], [0.1, 0.15, -0.51], [0.1, 0.1, -0.81],
                  [0.1, 0.0, -1.11], [0.1, -0.1, -1.41]])
    v = chunk_velocities(t, q)
    assert (v[-1] == 0).all()
    assert v[2, 0] == 0 and v[3, 0] == 0  # held at the limit: no overshoot past it
    assert v[2, 1] == 0  # the turning point
    np.testing.assert_allclose(v[2:5, 2], -3.0)  # a straight line keeps its slope
    for k in range(len(t) - 1):  # the path between two points stays within their range
        low, high = path_bounds(t[k:k + 2], q[k:k + 2], v[k:k + 2])
        np.testing.assert_allclose(low, np.minimum(q[k], q[k + 1]), atol=1e-12)
        np.testing.assert_allclose(high, np.maximum(q[k], q[k + 1]), atol=1e-12)
    with pytest.raises(ValueError):
        chunk_velocities(np.array([0.0, 0.1, 0.1]), np.zeros((3, 2)))


def test_path_bounds_are_the_extremes_of_the_interpolated_path():
    rng = np.random.default_rng(5)
    t = np.cumsum(rng.uniform(0.02, 0.2, 5))
    q = rng.normal(size=(5, 3))
    v = 5 * rng.normal(size=(5, 3))  # fast: the cubics swing well past their points
    ts = np.linspace(t[0], t[-1], 100001)
    x = np.array([sample(t, q, v, s) for s in ts])
    low, high = path_bounds(t, q, v)
    np.testing.assert_allclose(low, x.min(axis=0), atol=1e-6)
    np.testing.assert_allclose(high, x.max(axis=0), atol=1e-6)
    assert (low < q.min(axis=0) - 0.01).any()


def test_hermite_sampling_passes_through_points_with_their_slopes():
    t = np.array([0.0, 0.1, 0.2, 0.3])
    q = np.array([[0.0], [0.1], [0.15], [0.15]])
    v = chunk_velocities(t, q)
    for k in range(len(t)):
        np.testing.assert_allclose(sample(t, q, v, t[k]), q[k], atol=1e-12)
    eps = 1e-6
    slope = (sample(t, q, v, 0.1 + eps) - sample(t, q, v, 0.1 - eps)) / (2 * eps)
    np.testing.assert_allclose(slope, v[1], rtol=1e-4)
    np.testing.assert_allclose(sample(t, q, None, 0.05), [0.05])  # positions only: linear
    np.testing.assert_allclose(sample(t, q, v, 9.0), q[-1])  # held after the end


def _check(names=ARM_JOINTS, times=(0.1, 0.2), q=None, v=None, current=None, limit=0.3):
    q = np.zeros((len(times), len(names))) if q is None else np.asarray(q, dtype=float)
    return check_trajectory(list(names), ARM_JOINTS, np.asarray(times, dtype=float), q, v,
                            np.zeros(7) if current is None else current, limit)


def test_controller_checks_refuse_what_the_trajectory_controller_refuses():
    assert _check() == ""
    assert _check(names=ARM_JOINTS[::-1]) == ""  # any order
    assert "do not match" in _check(names=ARM_JOINTS + FINGER_JOINTS[:1])
    assert "do not match" in _check(names=ARM_JOINTS[:6])
    assert "duplicate" in _check(names=ARM_JOINTS[:6] + ARM_JOINTS[:1])
    assert "strictly increasing" in _check(times=(0.2, 0.2))
    assert "strictly increasing" in _check(times=(0.3, 0.2))
    bad = np.zeros((2, 7))
    bad[1, 3] = np.nan
    assert "non-finite" in _check(q=bad)
    moving_end = np.ones((2, 7))
    assert "last point's velocity" in _check(v=moving_end)
    far = np.zeros((2, 7))
    far[0, 2] = 0.5
    assert "from the current state" in _check(q=far)
    assert _check(q=far, current=np.array([0, 0, 0.4, 0, 0, 0, 0])) == ""


def _numeric_peak(t, q, v):
    ts = np.linspace(t[0], t[-1], 100001)
    x = np.array([sample(t, q, v, s) for s in ts])
    return np.abs(np.diff(x, axis=0) / np.diff(ts)[:, None]).max(axis=0)


def test_peak_velocity_is_the_fastest_point_of_the_interpolated_path():
    rng = np.random.default_rng(3)
    t = np.cumsum(rng.uniform(0.02, 0.2, 6))
    q = rng.normal(size=(6, 3))
    v = chunk_velocities(t, q)
    np.testing.assert_allclose(peak_velocity(t, q, v), _numeric_peak(t, q, v), rtol=1e-4)
    np.testing.assert_allclose(peak_velocity(t, q, None), _numeric_peak(t, q, None), rtol=1e-4)
    # from rest to rest over one segment, a cubic peaks at 1.5x its mean speed
    rest = peak_velocity(np.array([0.0, 0.1]), np.array([[0.0], [0.1]]), np.zeros((2, 1)))
    np.testing.assert_allclose(rest, [1.5])


def test_state_and_peak_acceleration_match_the_sampled_path():
    rng = np.random.default_rng(4)
    t = np.cumsum(rng.uniform(0.05, 0.2, 6))
    q = rng.normal(size=(6, 3))
    v = chunk_velocities(t, q)
    ts = np.linspace(t[0], t[-1], 200001)
    x = sample_many(t, q, v, ts)
    np.testing.assert_allclose(x[::5000], [sample(t, q, v, s) for s in ts[::5000]], atol=1e-12)
    d = ts[1] - ts[0]
    acc = np.diff(x, 2, axis=0) / d**2
    np.testing.assert_allclose(peak_acceleration(t, q, v), np.abs(acc).max(axis=0), rtol=1e-3)
    for s in (t[0] + 0.013, 0.5 * (t[2] + t[3]), t[-1] - 0.004):
        p, vel, a = state_at(t, q, v, s)
        e = 1e-5
        up, down = sample(t, q, v, s + e), sample(t, q, v, s - e)
        np.testing.assert_allclose(p, sample(t, q, v, s))
        np.testing.assert_allclose(vel, (up - down) / (2 * e), atol=1e-5)
        np.testing.assert_allclose(a, (up - 2 * p + down) / e**2, atol=1e-2)
    # past the end the controller holds: at rest
    _, vel, a = state_at(t, q, v, t[-1] + 1.0)
    assert not vel.any() and not a.any()
    # positions only: straight lines, a velocity jump (infinite acceleration) where they bend
    assert np.isinf(peak_acceleration(t, q, None)).all()


def test_a_takeover_that_keeps_the_motion_going_is_smooth_and_a_jerky_one_is_seen():
    """The robot's view (1 kHz samples, backward differences): a trajectory that continues the
    commanded velocity shows no jerk spike at the takeover; starting from rest while moving,
    or an acceleration jump at a point, shows up as jump / cycle."""
    cycle = 1e-3
    t = np.array([0.0, 1.0])
    old = (t, np.array([[0.0], [1.0]]), None)  # 1 rad/s straight line
    start = 0.5
    q_c, v_c, a_c = state_at(*old, start)
    assert v_c[0] == pytest.approx(1.0) and a_c[0] == 0.0
    ahead = np.array([0.6, 0.7])
    pts = np.array([[0.6], [0.7]])
    smooth = continue_from(ahead, pts, np.ones((2, 1)), start, q_c, v_c)
    r = cycle_rates(smooth, start, cycle, old, until=0.65)
    assert r["velocity"][0] == pytest.approx(1.0, abs=1e-6)
    assert r["acceleration"][0] < 1e-3 and r["jerk"][0] < 1e-3
    from_rest = continue_from(ahead, pts, np.ones((2, 1)), start, q_c, np.zeros(1))
    r = cycle_rates(from_rest, start, cycle, old, until=0.65)
    assert r["acceleration"][0] > 500 and r["jerk"][0] > 5e5  # a velocity jump: a reflex
    # an acceleration jump of da at a point on the grid: jerk da/(2 cycle) over two samples
    tt = np.array([0.0, 0.1, 0.2])
    qq = np.array([[0.0], [0.0], [0.01]])
    vv = np.array([[0.0], [0.0], [0.15]])
    path = (tt, qq, vv)
    jump = peak_acceleration(tt[1:], qq[1:], vv[1:])[0]  # at 0.1: from 0 to this
    r = cycle_rates(path, 0.0, cycle, None)
    assert r["jerk"][0] == pytest.approx(jump / (2 * cycle), rel=0.05)


def test_replaying_a_stream_measures_what_the_arm_runs_until_the_next_takes_over():
    cycle = 1e-3
    js_t = np.arange(0.0, 2.0, 0.01)
    js = (js_t, 0.5 * js_t[:, None])  # the arm follows the ramp
    dt = 0.1
    # chunks of a 0.5 rad/s ramp, each ending at rest, each replaced halfway
    trajs = []
    for i in range(4):
        t_r = 0.2 * i
        rel = dt * np.arange(1, 5)
        q = (0.5 * (t_r + rel))[:, None]
        trajs.append((t_r, rel, q, chunk_velocities(rel, q)))
    rows = replay_controller(trajs, js, cycle)
    assert [r["restarted"] for r in rows] == [True, False, False, False]
    # each whole path brakes to rest at its end, which the arm never runs but the last one
    assert all(r["acceleration"][0] > 4.0 for r in rows)
    assert all(r["executed_acceleration"][0] < r["acceleration"][0] for r in rows[1:-1])
    assert rows[-1]["executed_acceleration"][0] == pytest.approx(rows[-1]["acceleration"][0],
                                                                 rel=0.05)
    # an arm far from the command (a reset) starts from its measured joints at rest
    js_far = (js_t, np.where(js_t[:, None] > 0.3, 2.0, 0.5 * js_t[:, None]))
    rows = replay_controller(trajs, js_far, cycle)
    assert [r["restarted"] for r in rows] == [True, False, True, True]


def test_slowing_a_trajectory_keeps_its_path_and_meets_the_limit():
    t = 0.1 * np.arange(1, 6)
    q = np.cumsum(np.full((5, 2), [0.1, -0.02]), axis=0)  # 1 rad/s on joint 0 at the points
    v = chunk_velocities(t, q)
    current = np.zeros(2)
    t2, v2, factor = slow_to_limit(t, q, v, current, [0.5, 10.0])
    assert factor > 2.0
    path = lambda tt, vv: (np.concatenate([[0.0], tt]), np.vstack([current, q]),
                           np.vstack([np.zeros(2), vv]))
    assert peak_velocity(*path(t2, v2))[0] == pytest.approx(0.5)
    for s in np.linspace(0, 1, 11):  # the same positions, later
        np.testing.assert_allclose(sample(*path(t2, v2), s * t2[-1]),
                                   sample(*path(t, v), s * t[-1]), atol=1e-12)
    same = slow_to_limit(t, q, v, current, 100.0)
    assert same[2] == 1.0 and np.array_equal(same[0], t) and np.array_equal(same[1], v)


def test_gripper_switch_has_hysteresis_and_does_not_spam():
    from uva_policy.gripper import CLOSED, OPEN, GripperSwitch
    sw = GripperSwitch(0.04, close_below=0.3, open_above=0.7)
    # starts from the measured fingers (open), then flickers around the close threshold
    commands = [sw.update(target, measured=0.04) for target in
                [0.04, 0.02, 0.013, 0.011, 0.013, 0.011, 0.012, 0.02, 0.025, 0.0]]
    assert [c for c in commands if c] == [CLOSED]
    assert commands.index(CLOSED) == 3  # first target below 0.3 * 0.04 = 0.012
    assert [sw.update(x, 0.0) for x in [0.02, 0.027, 0.029]] == [None, None, OPEN]
    sw.reset()
    assert sw.update(0.0, measured=0.0) is None  # measured closed, target closed: nothing to do
    with pytest.raises(ValueError):
        GripperSwitch(0.04, close_below=0.7, open_above=0.3)


def test_checkpoint_parameter_resolves_the_installed_default_or_names_itself(tmp_path):
    from uva_policy.managed import CheckpointParameterError, resolve_checkpoint
    default = resolve_checkpoint("")
    assert (default / "config.json").is_file() and default.name == "panda"
    assert resolve_checkpoint("panda") == default  # a name under the share's checkpoints/
    assert resolve_checkpoint(str(tmp_path)) == tmp_path.resolve()
    with pytest.raises(CheckpointParameterError, match="parameter 'checkpoint'.*nowhere"):
        resolve_checkpoint(str(tmp_path / "nowhere"))
