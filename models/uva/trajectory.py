"""Joint trajectories a controller can follow smoothly: velocities for a chunk of position
targets, and the cubic Hermite interpolation ros2_control's JointTrajectoryController uses
between points that carry positions and velocities (linear when they carry positions only).

ROS-free: the policy node uses `chunk_velocities` for the points it publishes and
`slow_to_limit` to keep them within the arm's joint velocity limits; the simulated driver uses
`check_trajectory` / `continue_from` / `sample` to behave like the real controller, and
`peak_velocity` / `path_bounds` to refuse a path the real arm would abort (too fast, or past a
joint limit). `replay_controller` (with `state_at`, `peak_acceleration`, `cycle_rates`) follows
a recorded stream of trajectories as the controller would and measures what the arm samples
every 1 ms: scripts/arm_limits.py, against the acceleration and jerk limits too.
"""
from __future__ import annotations

import numpy as np


def chunk_velocities(times: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Velocities for the points that keep the controller's cubic path between each pair of
    points inside the two points' range: monotone piecewise-cubic (PCHIP, Fritsch-Carlson;
    scipy's PchipInterpolator) slopes, zero at a point where a joint turns back and zero at the
    last point (the controller comes to rest there unless the next chunk replaces the trajectory
    first; the JointTrajectoryController refuses a nonzero final velocity by default). So a path
    through points inside the joint limits stays inside them: central differences would
    overshoot a target held at a limit.

    times (N,) strictly increasing seconds, positions (N, D) -> velocities (N, D)."""
    from scipy.interpolate import PchipInterpolator
    t = np.asarray(times, dtype=np.float64)
    q = np.asarray(positions, dtype=np.float64)
    if q.ndim != 2 or len(t) != len(q):
        raise ValueError(f"times {t.shape} and positions {q.shape} do not match")
    if len(q) < 2:
        return np.zeros_like(q)
    if np.any(np.diff(t) <= 0):
        raise ValueError("trajectory times must be strictly increasing")
    v = PchipInterpolator(t, q, axis=0).derivative()(t)
    v[-1] = 0.0
    return v


def check_trajectory(joint_names: list[str], expected: list[str], times: np.ndarray,
                     positions: np.ndarray, velocities: np.ndarray | None,
                     current: np.ndarray, max_start_deviation: float) -> str:
    """Why a JointTrajectoryController would refuse this trajectory ("" if it accepts it).

    Mirrors the checks of ros2_control's controller with its default parameters: the joint
    names must be exactly the controlled joints (any order, no partial goals, no extra joints),
    every point carries one finite position per joint (velocities optional, same count),
    time_from_start is strictly increasing, the last velocity is zero; plus a start-deviation
    limit standing in for the robot's own discontinuity reflex. `current` is in `expected`
    order; positions and velocities in the order of `joint_names`."""
    names = list(joint_names)
    if len(set(names)) != len(names):
        return f"duplicate joint names {names}"
    if set(names) != set(expected):
        extra = sorted(set(names) - set(expected))
        missing = sorted(set(expected) - set(names))
        return f"joints {names} do not match the controller's {list(expected)}" \
               f" (extra {extra}, missing {missing})"
    if len(positions) == 0:
        return "empty trajectory"
    if positions.shape[1:] != (len(expected),):
        return f"points must carry {len(expected)} positions"
    if not np.isfinite(positions).all():
        return "non-finite positions"
    if velocities is not None:
        if velocities.shape != positions.shape:
            return "velocities must be empty or one per joint on every point"
        if not np.isfinite(velocities).all():
            return "non-finite velocities"
        if np.any(velocities[-1] != 0.0):
            return "the last point's velocity must be zero"
    if np.any(np.diff(times) <= 0) or times[0] < 0:
        return "time_from_start of the points is not strictly increasing"
    first = positions[0][[names.index(n) for n in expected]]
    jump = float(np.max(np.abs(first - np.asarray(current, dtype=np.float64))))
    if jump > max_start_deviation:
        return f"first point is {jump:.3f} rad from the current state (limit {max_start_deviation})"
    return ""


def sample(times: np.ndarray, positions: np.ndarray, velocities: np.ndarray | None,
           t: float) -> np.ndarray:
    """Position at time t of the trajectory through (times, positions[, velocities]): cubic
    Hermite between points with velocities, linear without; held at the ends."""
    times = np.asarray(times, dtype=np.float64)
    if t <= times[0]:
        return positions[0].copy()
    if t >= times[-1]:
        return positions[-1].copy()
    k = int(np.searchsorted(times, t, side="right")) - 1
    h = times[k + 1] - times[k]
    s = (t - times[k]) / h
    q0, q1 = positions[k], positions[k + 1]
    if velocities is None:
        return q0 + s * (q1 - q0)
    return _hermite(s, q0, q1, velocities[k] * h, velocities[k + 1] * h)


def _hermite(s, q0, q1, v0h, v1h):
    """The cubic Hermite segment at s in [0, 1] from q0 to q1, with end slopes v0h, v1h in
    position per segment (velocity times the segment's duration); broadcasts."""
    h00, h10 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s
    h01, h11 = -2 * s**3 + 3 * s**2, s**3 - s**2
    return h00 * q0 + h10 * v0h + h01 * q1 + h11 * v1h


def _rate_coefficients(t: np.ndarray, q: np.ndarray, v: np.ndarray):
    """Per segment of the Hermite path: (h, v0, v1, a, b) with dq/dt = a s^2 + b s + v0 at
    s = (t - t0) / h; (S, 1) and (S, D) arrays."""
    h = np.diff(t)[:, None]
    mean = np.diff(q, axis=0) / h
    v0, v1 = v[:-1], v[1:]
    return h, v0, v1, -6 * mean + 3 * v0 + 3 * v1, 6 * mean - 4 * v0 - 2 * v1


def peak_velocity(times: np.ndarray, positions: np.ndarray,
                  velocities: np.ndarray | None) -> np.ndarray:
    """The largest |dq/dt| of each joint along the path `sample` follows through the points
    (cubic Hermite with velocities, linear without): (D,) rad/s. A robot's joint velocity limit
    applies to the whole interpolated path, not only to the points' own velocities: a cubic
    segment between points can move up to twice as fast as its mean."""
    t = np.asarray(times, dtype=np.float64)
    q = np.asarray(positions, dtype=np.float64)
    if len(q) < 2:
        return np.zeros(q.shape[1:])
    if np.any(np.diff(t) <= 0):
        return np.full(q.shape[1:], np.inf)
    if velocities is None:
        return np.max(np.abs(np.diff(q, axis=0) / np.diff(t)[:, None]), axis=0)
    _, v0, v1, a, b = _rate_coefficients(t, q, np.asarray(velocities, dtype=np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        vertex = np.where(a != 0, np.clip(-b / (2 * np.where(a != 0, a, 1.0)), 0.0, 1.0), 0.0)
    ends = np.maximum(np.abs(v0), np.abs(v1))
    inner = np.abs(a * vertex**2 + b * vertex + v0)
    return np.max(np.maximum(ends, inner), axis=0)


def state_at(times: np.ndarray, positions: np.ndarray, velocities: np.ndarray | None,
             t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(position, velocity, acceleration) at time t on the path `sample` follows: where a
    controller continues from when a new trajectory replaces this one. Before the first point
    and after the last the path holds still (zero velocity and acceleration); on a linear
    segment the acceleration is zero."""
    times = np.asarray(times, dtype=np.float64)
    q = np.asarray(positions, dtype=np.float64)
    zero = np.zeros(q.shape[1:])
    if t <= times[0] or t >= times[-1] or len(q) < 2:
        return sample(times, q, velocities, t), zero, zero.copy()
    k = int(np.searchsorted(times, t, side="right")) - 1
    h = times[k + 1] - times[k]
    if velocities is None:
        return sample(times, q, None, t), (q[k + 1] - q[k]) / h, zero
    seg = slice(k, k + 2)
    _, v0, _, a, b = _rate_coefficients(times[seg], q[seg], np.asarray(velocities)[seg])
    s = (t - times[k]) / h
    return (sample(times, q, velocities, t), (a * s**2 + b * s + v0)[0],
            ((2 * a * s + b) / h)[0])


def knot_accelerations(times: np.ndarray, positions: np.ndarray,
                       velocities: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Accelerations at the two ends of every segment of the path `sample` follows: (S, D)
    at each segment's start, (S, D) at its end. Within a cubic segment the acceleration is
    linear in time, so these bound it; at a point between two segments it jumps from one
    segment's end value to the next one's start value. Positions without velocities are
    joined by straight lines whose velocity jumps at every point: infinite acceleration where
    the slope changes."""
    t = np.asarray(times, dtype=np.float64)
    q = np.asarray(positions, dtype=np.float64)
    if velocities is None:
        slope = np.diff(q, axis=0) / np.diff(t)[:, None]
        turn = np.vstack([np.zeros((1, q.shape[1])), np.diff(slope, axis=0)]) != 0
        start = np.where(turn, np.inf, 0.0)
        return start, np.zeros_like(start)
    h, _, _, a, b = _rate_coefficients(t, q, np.asarray(velocities, dtype=np.float64))
    return b / h, (2 * a + b) / h


def peak_acceleration(times: np.ndarray, positions: np.ndarray,
                      velocities: np.ndarray | None) -> np.ndarray:
    """The largest |d2q/dt2| of each joint along the path `sample` follows: (D,) rad/s^2."""
    q = np.asarray(positions, dtype=np.float64)
    if len(q) < 2:
        return np.zeros(q.shape[1:])
    start, end = knot_accelerations(times, q, velocities)
    return np.maximum(np.abs(start), np.abs(end)).max(axis=0)


def sample_many(times: np.ndarray, positions: np.ndarray, velocities: np.ndarray | None,
                ts: np.ndarray) -> np.ndarray:
    """`sample` at many times at once: (K,) -> (K, D)."""
    t = np.asarray(times, dtype=np.float64)
    q = np.asarray(positions, dtype=np.float64)
    ts = np.clip(np.asarray(ts, dtype=np.float64), t[0], t[-1])
    if len(q) < 2:
        return np.repeat(q[:1], len(ts), axis=0)
    k = np.clip(np.searchsorted(t, ts, side="right") - 1, 0, len(t) - 2)
    h = (t[k + 1] - t[k])[:, None]
    s = (ts[:, None] - t[k][:, None]) / h
    if velocities is None:
        return q[k] + s * (q[k + 1] - q[k])
    v = np.asarray(velocities, dtype=np.float64)
    return _hermite(s, q[k], q[k + 1], v[k] * h, v[k + 1] * h)


def cycle_rates(path, start: float, cycle: float, before=None,
                until: float | None = None) -> dict[str, np.ndarray]:
    """What a robot that samples its command every `cycle` seconds sees of a path (times,
    positions, velocities or None) taken over at `start`: the commanded positions on the grid
    start + k*cycle, the three samples before `start` from `before` (the path it followed until
    then; held at the path's first position if None), and their backward differences as the
    robot computes them. Returns the largest |velocity|, |acceleration| and |jerk| of each joint
    (D,) over the differences that reach a sample of `path` up to `until` (default: its end,
    where it holds still; a newer trajectory taking over earlier cuts it short). A Franka does
    this at 1 kHz and aborts with a "velocity/acceleration discontinuity" reflex when they pass
    its limits: an acceleration that jumps at a trajectory point or at the takeover shows up as
    a jerk of up to the jump divided by one cycle."""
    t = np.asarray(path[0], dtype=np.float64)
    end = t[-1] if until is None else min(until, t[-1])
    n = max(int(np.ceil((end - start) / cycle)), 0) + 1
    ts = start + cycle * np.arange(n)
    back = start + cycle * np.arange(-3, 0)
    old = sample_many(*before, back) if before is not None else \
        np.repeat(np.asarray(path[1], dtype=np.float64)[:1], 3, axis=0)
    q = np.vstack([old, sample_many(*path, ts)])
    v = np.diff(q, axis=0) / cycle
    a = np.diff(v, axis=0) / cycle
    j = np.diff(a, axis=0) / cycle
    return {"velocity": np.abs(v[2:]).max(axis=0), "acceleration": np.abs(a[1:]).max(axis=0),
            "jerk": np.abs(j).max(axis=0)}


def slow_to_limit(times: np.ndarray, positions: np.ndarray, velocities: np.ndarray,
                  current: np.ndarray, max_velocity) -> tuple[np.ndarray, np.ndarray, float]:
    """Stretch a trajectory in time so that the path a controller follows - from `current` at
    rest at time 0 (where it starts a new trajectory) through the points - stays within
    `max_velocity` (one limit or one per joint). The path itself is unchanged: times are
    multiplied and velocities divided by the same factor >= 1, which divides every speed on it
    by that factor. Returns (times, velocities, factor)."""
    q = np.vstack([np.asarray(current, dtype=np.float64)[None], positions])
    t = np.concatenate([[0.0], times])
    v = np.vstack([np.zeros((1, q.shape[1])), velocities])
    limit = np.broadcast_to(np.asarray(max_velocity, dtype=np.float64), q.shape[1:])
    factor = max(float(np.max(peak_velocity(t, q, v) / limit)), 1.0)
    return np.asarray(times) * factor, np.asarray(velocities) / factor, factor


def path_bounds(times: np.ndarray, positions: np.ndarray,
                velocities: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The lowest and highest position of each joint along the path `sample` follows through the
    points ((D,), (D,)): a cubic segment can swing past both of its points."""
    t = np.asarray(times, dtype=np.float64)
    q = np.asarray(positions, dtype=np.float64)
    low, high = q.min(axis=0), q.max(axis=0)
    if velocities is None or len(q) < 2:
        return low, high
    h, v0, v1, a, b = _rate_coefficients(t, q, np.asarray(velocities, dtype=np.float64))
    disc = b**2 - 4 * a * v0
    root = np.sqrt(np.maximum(disc, 0.0))
    for sign in (1.0, -1.0):
        with np.errstate(divide="ignore", invalid="ignore"):
            s = np.where(np.abs(a) > 1e-12, (-b + sign * root) / (2 * a),
                         np.where(np.abs(b) > 1e-12, -v0 / b, 0.0))
        s = np.where((disc >= 0) & (s > 0) & (s < 1), s, 0.0)  # else an end point, seen already
        x = _hermite(s, q[:-1], q[1:], h * v0, h * v1)
        low, high = np.minimum(low, x.min(axis=0)), np.maximum(high, x.max(axis=0))
    return low, high


def continue_from(times: np.ndarray, positions: np.ndarray, velocities: np.ndarray | None,
                  start: float, position: np.ndarray, velocity: np.ndarray):
    """The path a controller follows when it takes a trajectory at time `start` (`times`
    absolute): from the state it commands then (`position`, `velocity`) to the first point,
    then through the points. Returns (times, positions, velocities or None); a first point due
    at or before `start` is not reached smoothly (the caller decides what that means)."""
    times = np.asarray(times, dtype=np.float64)
    if times[0] <= start:
        return times, positions, velocities
    q = np.vstack([np.asarray(position, dtype=np.float64)[None], positions])
    v = (np.vstack([np.asarray(velocity, dtype=np.float64)[None], velocities])
         if velocities is not None else None)
    return np.concatenate([[start], times]), q, v


def replay_controller(trajectories, joint_states, cycle: float,
                      restart_deviation: float = 0.1) -> list[dict]:
    """Follow a recorded stream of trajectories the way a JointTrajectoryController does and
    measure the path it commands, trajectory by trajectory.

    trajectories: [(receipt time, time_from_start (N,), positions (N, D), velocities (N, D) or
    None)], in receipt order, joints in the controller's order; joint_states: (times (M,),
    positions (M, D)) measured. Each trajectory takes over from the commanded state at its
    receipt (position, velocity, acceleration of the path before); where the arm measured
    then is more than `restart_deviation` from that command (an episode reset, the first
    trajectory) it starts from the measured joints at rest instead. Returns one dict per
    trajectory: receipt time `t`, `restarted`; per joint (D,) over its whole path `velocity`,
    `acceleration` (peaks) and `low` / `high` (path_bounds); and `executed_velocity`,
    `executed_acceleration`, `executed_jerk`: what the arm samples every `cycle` (cycle_rates)
    from its takeover until the next trajectory replaces it - what the arm actually runs."""
    js_t, js_q = (np.asarray(a, dtype=np.float64) for a in joint_states)
    out, path, prev = [], None, None
    for t_r, rel, q, v in [*trajectories, (None,) * 4]:
        if prev is not None:  # the previous one ran until this one took over (or its end)
            row, before = prev
            rates = cycle_rates(path, row["t"], cycle, before,
                                until=t_r if t_r is not None else None)
            row.update({f"executed_{k}": x for k, x in rates.items()})
            out.append(row)
        if t_r is None:
            break
        measured = js_q[max(int(np.searchsorted(js_t, t_r, side="right")) - 1, 0)]
        restarted = path is None
        if not restarted:
            q_c, v_c, _ = state_at(*path, t_r)
            restarted = bool(np.max(np.abs(q_c - measured)) > restart_deviation)
        before = path
        if restarted:  # at rest where the arm is
            q_c, v_c = measured, np.zeros_like(measured)
            before = (np.array([t_r - 1.0, t_r]), np.vstack([measured, measured]), None)
        path = continue_from(t_r + np.asarray(rel, dtype=np.float64), q, v, t_r, q_c, v_c)
        prev = ({"t": float(t_r), "restarted": restarted, "velocity": peak_velocity(*path),
                 "acceleration": peak_acceleration(*path),
                 **dict(zip(("low", "high"), path_bounds(*path)))}, before)
    return out
