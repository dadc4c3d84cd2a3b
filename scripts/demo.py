"""`make demo`: the simulated Franka + policy node + video node over real DDS, closed loop.

Starts the graph from uva_bringup's sim.yaml (same as sim.launch.py), watches N episodes, and
writes outputs/demo/: metrics.json (success rate, latency summary, and `arm_limits`: how the
commanded motion compares with a real Panda's velocity, acceleration and jerk limits), demo.gif
(camera frames beside the latest predicted-frames strip received on /uva/predicted_frames).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rclpy
from sensor_msgs.msg import Image
from std_msgs.msg import Bool, Int32
from uva_msgs.msg import ActionChunk, PolicyStatus

from arm_limits import measure as arm_limits
from uva.fsutil import atomic_write_json
from uva.images import write_gif
from uva.viz import viz
from uva_bringup.run import TRAJECTORY_CONTROLLER, Graph
from uva_policy.conversions import image_to_rgb, stamp_to_sec


class Monitor:
    def __init__(self, node):
        self.node = node
        self.episodes: dict[int, bool] = {}
        self.current = None
        self.frames, self.strip = [], None
        self.latency_ms, self.inference_ms = [], []
        self.status = None
        node.create_subscription(Int32, "/franka_sim/episode", self._on_episode, 10)
        node.create_subscription(Bool, "/franka_sim/task_success", self._on_success, 10)
        node.create_subscription(Image, "/camera/color/image_raw", self._on_image, 10)
        node.create_subscription(Image, "/uva/predicted_frames", self._on_strip, 10)
        node.create_subscription(ActionChunk, "/uva/action_chunk", self._on_chunk, 10)
        node.create_subscription(PolicyStatus, "/policy_node/status", self._on_status, 10)

    def _on_episode(self, msg):
        self.current = msg.data
        self.episodes.setdefault(msg.data, False)

    def _on_success(self, msg):
        if self.current is not None and msg.data:
            self.episodes[self.current] = True

    def _on_image(self, msg):
        if len(self.frames) < 600 and self.strip is not None:
            cam = image_to_rgb(msg)
            strip = self.strip
            h = strip.shape[0]
            import cv2
            cam = cv2.resize(cam, (int(cam.shape[1] * h / cam.shape[0]), h))
            self.frames.append(np.concatenate([cam, strip], axis=1))

    def _on_strip(self, msg):
        self.strip = image_to_rgb(msg)

    def _on_chunk(self, msg):
        # image stamp -> chunk published (the chunk header carries the observation stamp)
        now = self.node.get_clock().now().nanoseconds * 1e-9
        self.latency_ms.append((now - stamp_to_sec(msg.header.stamp)) * 1000)

    def _on_status(self, msg):
        self.status = msg
        if msg.inference_latency_s > 0:
            self.inference_ms.append(msg.inference_latency_s * 1000)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--checkpoint", default="models/checkpoints/panda")
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--out", default="outputs/demo")
    ap.add_argument("--timeout-s", type=float, default=600)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rclpy.init()
    node = rclpy.create_node("uva_demo_monitor")
    mon = Monitor(node)
    t0 = time.time()
    bag = out / "bag"
    shutil.rmtree(bag, ignore_errors=True)
    with Graph("sim", a.checkpoint, True, log_dir=out / "logs") as graph:
        print(f"graph started: {list(graph.procs)}; trajectory -> {TRAJECTORY_CONTROLLER}", flush=True)
        recorder = subprocess.Popen([sys.executable, "-m", "uva_bringup.record", "--out", str(bag)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        done = lambda: len([e for e in mon.episodes if e != mon.current]) >= a.episodes
        last_print = 0
        while not done() and time.time() - t0 < a.timeout_s and all(graph.alive().values()):
            rclpy.spin_once(node, timeout_sec=0.05)
            finished = [e for e in mon.episodes if e != mon.current]
            if len(finished) != last_print:
                last_print = len(finished)
                print(f"episodes finished {last_print}/{a.episodes}, successes "
                      f"{sum(mon.episodes[e] for e in finished)}", flush=True)
        alive = graph.alive()
        os.killpg(recorder.pid, signal.SIGINT)  # the recorder closes the bag cleanly on SIGINT
        recorder.wait(30)
    finished = [e for e in mon.episodes if e != mon.current][: a.episodes]
    lat = np.array(mon.latency_ms) if mon.latency_ms else np.array([np.nan])
    inf = np.array(mon.inference_ms) if mon.inference_ms else np.array([np.nan])
    metrics = {
        "checkpoint": a.checkpoint, "episodes": len(finished),
        "successes": int(sum(mon.episodes[e] for e in finished)),
        "success_rate": float(np.mean([mon.episodes[e] for e in finished])) if finished else 0.0,
        "episode_seeds": finished,
        "image_stamp_to_chunk_ms": {"p50": float(np.nanpercentile(lat, 50)),
                                    "p95": float(np.nanpercentile(lat, 95)), "n": int(len(mon.latency_ms))},
        "predict_action_ms": {"p50": float(np.nanpercentile(inf, 50)),
                              "p95": float(np.nanpercentile(inf, 95))},
        "predicted_frame_strips_received": mon.strip is not None,
        "nodes_alive_at_end": alive, "wall_s": time.time() - t0,
    }
    if mon.frames:
        write_gif(out / "demo.gif", mon.frames[::2], fps=5, upscale=1)
    metrics["bag"] = str(bag)
    metrics["viz"] = viz(str(bag), str(out / "viz"), max_frames=300)
    try:  # would a real Panda run these commands? (scripts/arm_limits.py, docs/node-safety.md)
        metrics["arm_limits"] = arm_limits(bag, "panda", TRAJECTORY_CONTROLLER)
    except ValueError as e:
        metrics["arm_limits"] = {"error": str(e)}
    atomic_write_json(out / "metrics.json", metrics)
    print(json.dumps(metrics, indent=2))
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
