"""Joint trajectories a controller can follow smoothly: velocities for a chunk of position
targets, and the cubic Hermite interpolation ros2_control's JointTrajectoryController uses
between points that carry positions and velocities (linear when they carry positions only).

ROS-free: the policy node uses `chunk_velocities` for the points it publishes, the simulated
driver uses `check_trajectory` / `sample` to behave like the real controller.
"""
from __future__ import annotations

import numpy as np


def chunk_velocities(times: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Velocities consistent with the positions: central finite differences on the (possibly
    non-uniform) point times, one-sided at the first point, and zero at the last point (the
    controller comes to rest there unless the next chunk replaces the trajectory first; the
    JointTrajectoryController refuses a nonzero final velocity by default).

    times (N,) strictly increasing seconds, positions (N, D) -> velocities (N, D)."""
    t = np.asarray(times, dtype=np.float64)
    q = np.asarray(positions, dtype=np.float64)
    if q.ndim != 2 or len(t) != len(q):
        raise ValueError(f"times {t.shape} and positions {q.shape} do not match")
    if len(q) < 2:
        return np.zeros_like(q)
    if np.any(np.diff(t) <= 0):
        raise ValueError("trajectory times must be strictly increasing")
    v = np.gradient(q, t, axis=0, edge_order=1)
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
    v0, v1 = velocities[k] * h, velocities[k + 1] * h
    h00, h10 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s
    h01, h11 = -2 * s**3 + 3 * s**2, s**3 - s**2
    return h00 * q0 + h10 * v0 + h01 * q1 + h11 * v1
