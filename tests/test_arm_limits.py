"""scripts/arm_limits.py on a bag whose answer is known: a gentle trajectory stays within the
Panda's limits, one that starts a joint from rest too hard passes the acceleration and jerk
limits, and one that leaves a joint limit is counted. No DDS needed."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from uva.franka import ARM_JOINTS, PANDA_UPPER_LIMITS
from uva.rosbag import BagWriter

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_700_000_000 * 10**9


def write(path: Path, trajectories) -> None:
    """trajectories: [(receipt ns, [(time_from_start s, positions, velocities)])]; the arm
    stays measured at its start (a slow arm: none of them restarts the replay)."""
    q0 = np.array([0.0, -0.5, 0.0, -2.0, 0.0, 1.5, 0.7])
    with BagWriter(path) as bag:
        T = bag.store.types
        bag.add_topic("/joint_states", "sensor_msgs/msg/JointState")
        bag.add_topic("/fr3_arm_controller/joint_trajectory", "trajectory_msgs/msg/JointTrajectory")
        for k in range(60):
            t = T0 + k * 10**8
            bag.write("/joint_states", t, bag.joint_state(t, ARM_JOINTS[::-1], q0[::-1].copy()))
        for t_ns, pts in trajectories:
            point = T["trajectory_msgs/msg/JointTrajectoryPoint"]
            duration = T["builtin_interfaces/msg/Duration"]
            msg = T["trajectory_msgs/msg/JointTrajectory"](
                header=bag.header(0), joint_names=ARM_JOINTS,
                points=[point(positions=q0 + np.asarray(dq, dtype=np.float64),
                              velocities=np.asarray(v, dtype=np.float64),
                              accelerations=np.zeros(0), effort=np.zeros(0),
                              time_from_start=duration(sec=int(s), nanosec=int(round(s % 1 * 1e9))))
                        for s, dq, v in pts])
            bag.write("/fr3_arm_controller/joint_trajectory", t_ns, msg)
    return q0


def run(bag: Path, tmp_path: Path) -> dict:
    out = tmp_path / "limits.json"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "arm_limits.py"), "--bag", str(bag),
                    "--json", str(out)], check=True, capture_output=True, text=True, timeout=120)
    return json.loads(out.read_text())


def test_arm_limits_counts_what_a_franka_would_refuse(tmp_path):
    e = np.eye(7)
    zero = np.zeros(7)
    gentle = [(2.0, 0.05 * e[0], zero)]  # 0.05 rad in 2 s from rest: 0.075 rad/s^2
    hard = [(0.1, 0.05 * e[1], zero)]  # 0.05 rad in 0.1 s from rest: 30 rad/s^2 on joint 2
    q0 = write(tmp_path / "gentle", [(T0 + 10**9, gentle)])
    s = run(tmp_path / "gentle", tmp_path)
    assert s["trajectories"] == 1 and s["restarts"] == 1
    assert all(v["over"] == 0 for v in s["limits"].values()), s
    assert 0 < s["limits"]["acceleration"]["worst_ratio"] < 0.01

    beyond = (PANDA_UPPER_LIMITS[3] - q0[3] + 0.05) * e[3]  # joint 4 past its upper limit
    write(tmp_path / "mixed", [(T0 + 10**9, gentle), (T0 + 3 * 10**9, hard),
                               (T0 + 4 * 10**9, [(3.0, beyond, zero)])])
    s = run(tmp_path / "mixed", tmp_path)
    assert s["trajectories"] == 3
    acc, jerk = s["limits"]["acceleration"], s["limits"]["jerk"]
    assert acc["over"] == 1 and acc["worst_joint"] == "fr3_joint2"
    assert 3.5 < acc["worst_ratio"] < 4.5  # 30 rad/s^2 against 7.5
    assert jerk["over"] == 1 and s["limits"]["velocity"]["over"] == 0
    assert s["limits"]["position, whole path"]["over"] == 1
