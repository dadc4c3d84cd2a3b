"""Fuzz the running policy node over real DDS with randomly corrupted camera images and joint
states (bad encodings and sizes, NaN/inf, repeated, missing or extra names, empty messages,
stamps in the past, at zero and far in the future) mixed with good ones, for a bounded time.

Whatever arrives, the node must stay alive, and every trajectory it publishes must be finite,
inside the joint limits, and within max_joint_step of the measured state (the only well-formed
state the fuzzer ever sends is HOME) and of the point before it."""
from __future__ import annotations

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from ros_helpers import (HOME, PANDA_JOINTS, PANDA_LOWER, PANDA_UPPER, isolate_dds, make_image,
                         make_joints, start_node, stop)

isolate_dds()

MAX_STEP = 0.05
# counted in messages, not seconds: a stall of the machine (CI neighbours) must not eat the fuzzing
FUZZ_MESSAGES = 500  # ~15 s at the 30 ms pace below
FUZZ_MESSAGES_MAX = 1500  # fuzzing goes on up to this until the node has said several reasons
REASON_KINDS = ("encoding", "malformed", "backwards", "future", "repeated", "missing joints",
                "non-finite", "positions")


def _stamp(node, offset_s: float):
    from builtin_interfaces.msg import Time
    t = max(node.get_clock().now().nanoseconds * 1e-9 + offset_s, 0.0)
    return Time(sec=min(int(t), 2**31 - 1), nanosec=int((t % 1) * 1e9))


def corrupt_image(node, rng):
    from sensor_msgs.msg import Image
    kind = rng.integers(8)
    msg = make_image(node, seed=int(rng.integers(1 << 30)))
    if kind == 0:
        msg.encoding = str(rng.choice(["16UC1", "32FC1", "", "yuv422", "RGB8", "bayer_rggb8"]))
    elif kind == 1:
        msg.data = msg.data[: int(rng.integers(0, len(msg.data)))]  # truncated
    elif kind == 2:
        msg.height, msg.width = int(rng.integers(0, 100000)), int(rng.integers(0, 100000))
    elif kind == 3:
        msg.step = int(rng.integers(0, msg.step))
    elif kind == 4:
        msg = Image()  # empty
        msg.header.stamp = node.get_clock().now().to_msg()
    elif kind == 5:
        msg.header.stamp = _stamp(node, float(rng.choice([-5.0, -1e6, 1e6, 3600.0])))
    elif kind == 6:
        msg.header.stamp = _stamp(node, -1e12)  # zero
    else:
        msg.data = bytes(rng.integers(0, 255, int(rng.integers(0, 50)), dtype=np.uint8))
    return msg


def corrupt_joints(node, rng):
    from sensor_msgs.msg import JointState
    kind = rng.integers(8)
    q, names = list(HOME), list(PANDA_JOINTS)
    if kind == 0:
        q[int(rng.integers(8))] = float(rng.choice([np.nan, np.inf, -np.inf]))
    elif kind == 1:  # a joint named twice, the repeat far away
        j = int(rng.integers(8))
        names, q = names + [names[j]], q + [float(rng.uniform(-3, 3))]
    elif kind == 2:
        k = int(rng.integers(8))
        names, q = names[:k] + names[k + 1:], q[:k] + q[k + 1:]
    elif kind == 3:
        q = q[: int(rng.integers(0, 8))]  # fewer positions than names
    elif kind == 4:
        msg = JointState()
        msg.header.stamp = node.get_clock().now().to_msg()
        return msg
    elif kind == 5:
        return make_joints(node, q, names, stamp=_stamp(node, float(rng.choice([-5.0, 1e6]))))
    elif kind == 6:
        names = [f"panda_joint{i}" for i in range(8)]
    else:
        return make_joints(node, q, names, stamp=_stamp(node, -1e12))
    return make_joints(node, q, names)


def test_corrupted_messages_never_produce_an_unsafe_command(ros, panda_ckpt, tmp_path):
    from sensor_msgs.msg import Image, JointState
    from trajectory_msgs.msg import JointTrajectory
    from uva_msgs.msg import PolicyStatus
    node, executor = ros
    log = tmp_path / "policy.log"
    proc = start_node("uva_policy.policy_node", "policy_node",
                      {"checkpoint": str(panda_ckpt), "joint_lower_limits": PANDA_LOWER,
                       "joint_upper_limits": PANDA_UPPER, "max_joint_step": MAX_STEP,
                       "max_obs_age_s": 0.5, "autostart": True}, log_path=log)
    img_pub = node.create_publisher(Image, "/camera/color/image_raw", 10)
    js_pub = node.create_publisher(JointState, "/joint_states", 10)
    trajs, reasons = [], set()
    subs = [node.create_subscription(JointTrajectory, "/uva/joint_trajectory", trajs.append, 10),
            node.create_subscription(PolicyStatus, "/policy_node/status",
                                     lambda s: reasons.add(s.reason), 10)]
    rng = np.random.default_rng(18)

    def drive(messages, corrupt_p):
        for sent in range(messages):
            bad = rng.random() < corrupt_p
            img_pub.publish(corrupt_image(node, rng) if bad and rng.random() < 0.5
                            else make_image(node, seed=sent))
            js_pub.publish(corrupt_joints(node, rng) if bad and rng.random() < 0.5
                           else make_joints(node, HOME))
            t_next = time.time() + 0.03
            while time.time() < t_next:
                executor.spin_once(timeout_sec=0.01)

    def kinds():
        return {k for k in REASON_KINDS if any(k in r for r in reasons)}

    try:
        end = time.time() + 40
        while not trajs and time.time() < end:
            drive(7, 0.0)
        assert trajs, log.read_text()
        drive(FUZZ_MESSAGES, 0.35)
        for _ in range((FUZZ_MESSAGES_MAX - FUZZ_MESSAGES) // 100):
            if len(kinds()) >= 4:
                break
            drive(100, 0.35)
        n_fuzz = len(trajs)
        drive(100, 0.0)  # good input again: the node must still be working
        assert proc.poll() is None, log.read_text()
        assert len(trajs) > n_fuzz, log.read_text()
    finally:
        for s in subs:
            node.destroy_subscription(s)
        node.destroy_publisher(img_pub)
        node.destroy_publisher(js_pub)
        stop(proc)
    # the corruption reached the node: it held for several different reasons
    assert len(kinds()) >= 4, reasons
    lower, upper, home = np.array(PANDA_LOWER)[:7], np.array(PANDA_UPPER)[:7], np.array(HOME)[:7]
    for t in trajs:
        q = np.array([p.positions for p in t.points])
        assert q.shape[1] == 7 and np.isfinite(q).all()  # the arm joints; the gripper has its actions
        assert (q >= lower - 1e-9).all() and (q <= upper + 1e-9).all()
        steps = np.abs(np.diff(np.vstack([np.clip(home, lower, upper), q]), axis=0))
        assert (steps <= MAX_STEP + 1e-6).all(), steps.max()
        offsets = [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in t.points]
        assert max(offsets) < 10.0 and all(b > a for a, b in zip(offsets, offsets[1:]))
