"""Would a Franka have run these commands? Replays the trajectories recorded in a rosbag the way
a JointTrajectoryController follows them (uva.trajectory.replay_controller: each takes over
from the commanded state at its receipt) and measures the commanded path against the arm's
limits: joint positions, velocities, accelerations, and jerk as the arm sees it sampling its
command every 1 ms (an acceleration that jumps at a trajectory point or a takeover counts as
jump / 1 ms). A ratio above 1 is a motion the real arm aborts with a reflex.

    python scripts/arm_limits.py --bag outputs/demo/bag [--arm panda|fr3] [--json out.json]

Reads the commanded trajectories (`--trajectory-topic`, default the Franka arm controller's) and
/joint_states from the bag; prints a table, writes JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from uva import franka
from uva.rosbag import typestore
from uva.trajectory import replay_controller

ARMS = {
    "panda": (franka.PANDA_LOWER_LIMITS, franka.PANDA_UPPER_LIMITS, franka.PANDA_VELOCITY_LIMITS),
    "fr3": (franka.LOWER_LIMITS[:7], franka.UPPER_LIMITS[:7], franka.VELOCITY_LIMITS),
}


def read(bag: Path, trajectory_topic: str, joint_topic: str):
    from rosbags.highlevel import AnyReader
    joints = franka.ARM_JOINTS
    trajs, js_t, js_q = [], [], []
    with AnyReader([bag], default_typestore=typestore()) as reader:
        topics = {c.topic: c for c in reader.connections}
        for topic in (trajectory_topic, joint_topic):
            if topic not in topics:
                raise ValueError(f"{bag}: topic {topic} not in the bag (topics: {sorted(topics)})")
        for conn, t_ns, raw in reader.messages(connections=[topics[trajectory_topic],
                                                            topics[joint_topic]]):
            msg = reader.deserialize(raw, conn.msgtype)
            index = {n: i for i, n in enumerate(msg.name if conn.topic == joint_topic
                                                else msg.joint_names)}
            if any(n not in index for n in joints):
                continue  # the controller refuses a trajectory without its joints
            order = [index[n] for n in joints]
            if conn.topic == joint_topic:
                js_t.append(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)
                js_q.append(np.asarray(msg.position, dtype=np.float64)[order])
                continue
            if not msg.points:
                continue
            stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
            received = t_ns * 1e-9
            rel = np.array([p.time_from_start.sec + p.time_from_start.nanosec * 1e-9
                            for p in msg.points]) + (stamp - received if stamp else 0.0)
            q = np.array([np.asarray(p.positions)[order] for p in msg.points])
            has_v = all(len(p.velocities) for p in msg.points)
            v = np.array([np.asarray(p.velocities)[order] for p in msg.points]) if has_v else None
            trajs.append((received, rel, q, v))
    return trajs, (np.array(js_t), np.array(js_q))


def measure(bag: Path, arm: str = "panda",
            trajectory_topic: str = "/fr3_arm_controller/joint_trajectory",
            joint_topic: str = "/joint_states") -> dict:
    """The summary for one bag (ValueError when it has nothing to replay)."""
    trajs, states = read(bag, trajectory_topic, joint_topic)
    if not trajs or not len(states[0]):
        raise ValueError(f"{bag}: no trajectories or joint states to replay")
    return summarise(replay_controller(trajs, states, franka.CONTROL_CYCLE_S), arm)


def summarise(rows: list[dict], arm: str) -> dict:
    lower, upper, velocity = (np.asarray(x, dtype=np.float64) for x in ARMS[arm])
    acceleration, jerk = np.asarray(franka.ACCELERATION_LIMITS), np.asarray(franka.JERK_LIMITS)
    checks = {  # what the arm runs until the next trajectory takes over, then whole paths
        "velocity": ("executed_velocity", velocity),
        "acceleration": ("executed_acceleration", acceleration),
        "jerk": ("executed_jerk", jerk),
        "velocity, whole path": ("velocity", velocity),
        "acceleration, whole path": ("acceleration", acceleration),
    }
    out = {"arm": arm, "trajectories": len(rows),
           "restarts": int(sum(r["restarted"] for r in rows)), "limits": {}}
    for name, (key, limit) in checks.items():
        ratio = np.array([r[key] / limit for r in rows])
        worst = ratio.max(axis=1)
        out["limits"][name] = {
            "over": int((worst > 1.0).sum()), "worst_ratio": float(worst.max()),
            "median_ratio": float(np.median(worst)),
            "worst_joint": franka.ARM_JOINTS[int(np.argmax(ratio.max(axis=0)))]}
    leaving = [bool((r["low"] < lower - 1e-9).any() or (r["high"] > upper + 1e-9).any())
               for r in rows]
    out["limits"]["position, whole path"] = {"over": int(sum(leaving))}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bag", required=True, type=Path)
    ap.add_argument("--arm", choices=sorted(ARMS), default="panda",
                    help="whose position and velocity limits (acceleration and jerk: libfranka's)")
    ap.add_argument("--trajectory-topic", default="/fr3_arm_controller/joint_trajectory")
    ap.add_argument("--joint-states-topic", default="/joint_states")
    ap.add_argument("--json", type=Path, help="write the summary here")
    args = ap.parse_args(argv)
    try:
        summary = measure(args.bag, args.arm, args.trajectory_topic, args.joint_states_topic)
    except ValueError as e:
        sys.exit(str(e))
    print(f"{summary['trajectories']} trajectories ({summary['restarts']} started from rest), "
          f"limits of the {args.arm}:")
    print(f"{'limit':<26}{'over':>6}{'worst':>9}{'median':>9}  worst joint")
    for name, s in summary["limits"].items():
        if "worst_ratio" not in s:
            print(f"{name:<26}{s['over']:>6}")
        else:
            print(f"{name:<26}{s['over']:>6}{s['worst_ratio']:>8.2f}x{s['median_ratio']:>8.2f}x"
                  f"  {s['worst_joint']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
