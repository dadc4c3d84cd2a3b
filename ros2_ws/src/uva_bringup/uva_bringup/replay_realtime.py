"""Realtime replay evaluation: play a rosbag2 over real DDS with its original timing (and /clock),
with the policy node running on sim time, record the node's outputs and score them against what
the robot did. Started by `uva replay-eval --mode realtime` (the ROS-free core spawns this).

    python -m uva_bringup.replay_realtime --bag B --ckpt C --out report.json [--topics map.yaml]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rclpy
from rclpy.serialization import deserialize_message
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CompressedImage, Image, JointState
from uva_msgs.msg import ActionChunk, PolicyStatus

from uva.topic_map import load_topic_map
from uva.rosbag import BagError, typestore

TYPES = {"sensor_msgs/msg/Image": Image, "sensor_msgs/msg/CompressedImage": CompressedImage,
         "sensor_msgs/msg/JointState": JointState}


def _load(bag, topics):
    from rosbags.highlevel import AnyReader
    wanted = {topics.image_topic, topics.joint_states_topic}
    out = []
    try:
        with AnyReader([Path(bag)], default_typestore=typestore()) as reader:
            conns = [c for c in reader.connections if c.topic in wanted]
            missing = wanted - {c.topic for c in conns}
            if missing:
                raise BagError(f"{bag}: required topics {sorted(missing)} not in bag")
            for conn, t_ns, raw in reader.messages(connections=conns):
                out.append((t_ns, conn.topic, deserialize_message(bytes(raw), TYPES[conn.msgtype])))
    except BagError:
        raise
    except Exception as e:
        raise BagError(f"{bag}: cannot read bag ({type(e).__name__}: {e})") from e
    return out


def run(bag: str, ckpt: str, topics, log_path: str | None = None) -> dict:
    messages = _load(bag, topics)
    names = list(topics.joint_names)
    # a compressed camera stream is replayed as such, on image_transport's '/compressed' name
    image_type = next((type(m) for _, topic, m in messages if topic == topics.image_topic), None)
    if image_type is None:
        raise BagError(f"{bag}: no messages on {topics.image_topic}")
    image_topic = "/camera/color/image_raw" + ("/compressed" if image_type is CompressedImage else "")
    rclpy.init()
    node = rclpy.create_node("uva_bag_player", parameter_overrides=[])
    clock_pub = node.create_publisher(Clock, "/clock", 10)
    img_pub = node.create_publisher(image_type, image_topic, 50)
    js_pub = node.create_publisher(JointState, "/joint_states", 50)
    chunks, statuses, received = [], [], {"image": 0, "joints": 0}
    node.create_subscription(ActionChunk, "/uva/action_chunk", chunks.append, 50)
    node.create_subscription(PolicyStatus, "/policy_node/status", statuses.append, 50)
    node.create_subscription(image_type, image_topic,
                             lambda m: received.__setitem__("image", received["image"] + 1), 50)
    node.create_subscription(JointState, "/joint_states",
                             lambda m: received.__setitem__("joints", received["joints"] + 1), 50)
    fmt = lambda v: "[" + ",".join(f'"{x}"' for x in v) + "]"
    argv = [sys.executable, "-m", "uva_policy.policy_node", "--ros-args", "-r", "__node:=policy_node",
            "-p", f"checkpoint:={ckpt}", "-p", "use_sim_time:=true", "-p", f"joint_names:={fmt(names)}",
            "-p", f"image_topics:={fmt([image_topic])}",
            "-p", f"control_rate_hz:={float(topics.control_rate_hz)}",
            "-p", f"max_obs_age_s:={float(topics.max_obs_age_s)}",
            "-p", f"sync_slop_s:={float(topics.sync_slop_s)}",
            "-p", "blend_steps:=0", "-p", "max_joint_step:=10.0", "-p", "max_joint_velocity:=[1.0e6]",
            # engaged at once; the whole chunk on /uva/action_chunk is what is compared, so no
            # gripper split (a bag's joints need not include the Franka finger)
            "-p", "autostart:=true", "-p", "gripper_joint:=''"]
    out = open(log_path, "w") if log_path else subprocess.DEVNULL
    policy = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    sent = {"image": 0, "joints": 0}
    t_first = messages[0][0]
    try:
        # wait for the policy node to subscribe, or the first messages are lost (DESIGN.md §4)
        deadline = time.time() + 60
        while time.time() < deadline and (img_pub.get_subscription_count() < 2
                                          or js_pub.get_subscription_count() < 2):
            rclpy.spin_once(node, timeout_sec=0.05)
        if policy.poll() is not None:
            raise BagError("policy node exited at start (see its log)")
        clock_pub.publish(Clock(clock=rclpy.time.Time(nanoseconds=t_first).to_msg()))
        time.sleep(1.0)
        wall0 = time.monotonic()
        for t_ns, topic, msg in messages:
            target = wall0 + (t_ns - t_first) * 1e-9
            while time.monotonic() < target:
                rclpy.spin_once(node, timeout_sec=max(min(target - time.monotonic(), 0.005), 0))
            clock_pub.publish(Clock(clock=rclpy.time.Time(nanoseconds=t_ns).to_msg()))
            if topic == topics.image_topic:
                img_pub.publish(msg)
                sent["image"] += 1
            else:
                js_pub.publish(msg)
                sent["joints"] += 1
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.02)
    finally:
        if policy.poll() is None:  # a node that refused its parameters has exited already
            os.killpg(policy.pid, signal.SIGINT)
        policy.wait(10)
        node.destroy_node()
        rclpy.shutdown()
    joints = [(m.header.stamp.sec + m.header.stamp.nanosec * 1e-9,
               np.array([m.position[list(m.name).index(n)] for n in names]))
              for _, topic, m in messages if topic == topics.joint_states_topic]
    t = np.array([s for s, _ in joints])
    q = np.stack([v for _, v in joints])
    dt = 1.0 / topics.control_rate_hz
    errors = []
    for c in chunks:
        stamp = c.header.stamp.sec + c.header.stamp.nanosec * 1e-9
        steps = np.asarray(c.data, np.float64).reshape(c.horizon, c.action_dim)
        times = stamp + dt * (c.first_step + 1 + np.arange(c.horizon))
        if times[-1] > t[-1]:
            continue
        actual = np.stack([np.interp(times, t, q[:, j]) for j in range(q.shape[1])], 1)
        errors.append(np.abs(steps - actual))
    lat = np.array([s.inference_latency_s for s in statuses if s.inference_latency_s > 0]) * 1000
    report = {
        "messages_sent": sent, "messages_received": received,
        "lost_messages": int(sum(sent.values()) - sum(received.values())),
        "chunks": len(chunks), "scored_chunks": len(errors),
        "mae": float(np.mean([e.mean() for e in errors])) if errors else None,
        "per_joint_mae": dict(zip(names, np.mean([e.mean(0) for e in errors], 0).tolist())) if errors else None,
        "held_ticks": int(statuses[-1].ticks_held) if statuses else None,
        "predict_action_ms": {"p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95))} if len(lat) else None,
        "first_step_skipped_mean": float(np.mean([c.first_step for c in chunks])) if chunks else None,
    }
    return report


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bag", required=True)
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--topics", default=None)
    ap.add_argument("--log", default=None)
    a = ap.parse_args(argv)
    try:
        report = run(a.bag, a.ckpt, load_topic_map(a.topics), a.log)
    except BagError as e:
        print(f"replay_realtime: error: {e}", file=sys.stderr)
        return 2
    with open(a.out, "w") as f:
        json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
