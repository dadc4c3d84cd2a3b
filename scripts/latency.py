"""Latency of the policy node over real DDS: camera image stamp -> trajectory received.

A driver publishes 96x96 rgb8 images + joint states at the camera rate; the policy node runs at
`control_rate_hz`. For every trajectory it reports, in ms:
  total      = trajectory received - image stamp (what the arm controller sees: in-bound DDS,
               the wait for the frame's partners, predict_action, filtering, out-bound DDS)
  inference  = predict_action wall time (from ~/status)
Writes a JSON; a benchmark, not a test.

    python scripts/latency.py --checkpoint models/checkpoints/panda --seconds 30 --out outputs/latency.json
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
from sensor_msgs.msg import Image, JointState
from trajectory_msgs.msg import JointTrajectory
from uva_msgs.msg import ActionChunk, PolicyStatus

SIM_YAML = Path(__file__).resolve().parents[1] / "ros2_ws/src/uva_bringup/config/sim.yaml"


def stamp(t) -> float:
    return t.sec + t.nanosec * 1e-9


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="models/checkpoints/panda")
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--camera-hz", type=float, default=30.0)
    ap.add_argument("--out", default="outputs/latency.json")
    a = ap.parse_args()
    import yaml
    params = yaml.safe_load(SIM_YAML.read_text())["policy_node"]["ros__parameters"]
    home = [0.0, -0.3, 0.0, -2.2, 0.0, 2.0, 0.785, 0.04]
    proc = subprocess.Popen([sys.executable, "-m", "uva_policy.policy_node", "--ros-args",
                             "--params-file", str(SIM_YAML), "-p", f"checkpoint:={a.checkpoint}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    rclpy.init()
    node = rclpy.create_node("uva_latency_driver")
    img_pub = node.create_publisher(Image, "/camera/color/image_raw", 10)
    js_pub = node.create_publisher(JointState, "/joint_states", 10)
    rows, obs_stamps, inference = [], {}, []

    def on_chunk(msg: ActionChunk):
        obs_stamps[len(obs_stamps)] = stamp(msg.header.stamp)

    def on_traj(msg: JointTrajectory):
        rows.append(time.time())  # its header stamp is 0: the controller starts it on receipt

    node.create_subscription(ActionChunk, "/uva/action_chunk", on_chunk, 50)
    node.create_subscription(JointTrajectory, "/uva/joint_trajectory", on_traj, 50)
    node.create_subscription(PolicyStatus, "/policy_node/status",
                             lambda m: inference.append(m.inference_latency_s * 1000), 50)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (8, 96, 96, 3), dtype=np.uint8)
    period = 1.0 / a.camera_hz
    t_end = time.time() + a.seconds + 10
    next_pub, k = time.time(), 0
    while time.time() < t_end:
        now = time.time()
        if now >= next_pub:
            t = node.get_clock().now().to_msg()
            img = Image(height=96, width=96, encoding="rgb8", step=288, data=frames[k % 8].tobytes())
            img.header.stamp = t
            js = JointState(name=list(params["joint_names"]), position=home)
            js.header.stamp = t
            img_pub.publish(img)
            js_pub.publish(js)
            k += 1
            next_pub += period
        rclpy.spin_once(node, timeout_sec=max(0.0, min(next_pub - time.time(), 0.005)))
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(10)
    node.destroy_node()
    rclpy.shutdown()
    n = min(len(rows), len(obs_stamps))
    rows = rows[5:n]  # skip warm-up
    obs = [obs_stamps[i] for i in range(5, n)]
    total = np.array([r - o for r, o in zip(rows, obs)]) * 1000
    inf = np.array([v for v in inference if v > 0])
    pct = lambda x: {"p50": float(np.percentile(x, 50)), "p95": float(np.percentile(x, 95))}
    result = {"checkpoint": a.checkpoint, "control_rate_hz": params["control_rate_hz"],
              "camera_hz": a.camera_hz, "trajectories": int(len(total)),
              "total_ms": pct(total),
              "inference_ms": pct(inf)}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
