"""Does anything starve the control loop? Image stamp -> action latency and control-tick jitter
of the policy node in the sim graph, with and without the video node, over real DDS.

Scenarios (each a fresh graph from uva_bringup's sim.yaml, as `python -m uva_bringup.run sim`):
  policy        sim + policy node (no video node)
  graph         sim + policy + video node (as shipped: demoted, backs off, uva_policy.scheduling)
  graph_normal  the same with the video node at normal priority and no back-off
                (-p background_nice:=0 -p background_max_duty:=1.0: the behaviour before)
  stress / stress_normal   the video node asked for 20 predictions/s (a starved, saturated
                background process), demoted vs normal priority
Per scenario: latency_ms (chunk received - its observation stamp: in-bound DDS + wait for the
tick + predict_action + filtering + out-bound DDS), inference_ms (~/status), tick intervals from
the status stamps (the policy node stamps ~/status on every tick): p50/p95, and |interval - dt|
p95/max as jitter, and predicted strips received. Writes JSON; a benchmark, not a test.
--precision sets both nodes' inference_precision; --rounds repeats the scenario list with the
precisions alternated (A B, B A, ...), so two precisions are compared in the same hour.

    python -m uva_bringup.latency_probe --seconds 40 --out outputs/realtime/latency.json
    python -m uva_bringup.latency_probe --scenarios policy graph --precision fp32 bf16 --rounds 2
"""
from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

import numpy as np
import rclpy
from sensor_msgs.msg import Image
from uva_msgs.msg import ActionChunk, PolicyStatus

from uva.bench import machine_info
from uva_bringup.run import Graph
from uva_policy.conversions import stamp_to_sec

VIDEO_ARGS = {
    "policy": None,
    "graph": [],
    "graph_normal": ["-p", "background_nice:=0", "-p", "background_max_duty:=1.0"],
    "stress": ["-p", "publish_rate_hz:=20.0"],
    "stress_normal": ["-p", "publish_rate_hz:=20.0", "-p", "background_nice:=0",
                      "-p", "background_max_duty:=1.0"],
}


def run_scenario(name: str, checkpoint: str, seconds: float, warmup_s: float,
                 control_rate_hz: float = 10.0, precision: str | None = None) -> dict:
    """One scenario in a fresh graph; rclpy must be initialised (own domain, loopback).
    control_rate_hz: the sim graph's (sim.yaml), for the jitter figures; precision: the nodes'
    inference_precision (None: the YAML's)."""
    video_args = VIDEO_ARGS[name]
    graph = Graph("sim", checkpoint, use_video=video_args is not None)
    for node_name, argv in graph.cmds:
        if node_name == "video_node":
            argv.extend(video_args)
        if precision and node_name in ("policy_node", "video_node"):
            argv.extend(["-p", f"inference_precision:={precision}"])
    node = rclpy.create_node(f"uva_realtime_probe_{name}")
    lat, inf, ticks, strips = [], [], [], [0]
    t_start = [None]

    def measuring() -> bool:
        return t_start[0] is not None and time.monotonic() - t_start[0] > warmup_s

    def on_chunk(msg):
        if measuring():
            now = node.get_clock().now().nanoseconds * 1e-9
            lat.append((now - stamp_to_sec(msg.header.stamp)) * 1000)

    def on_status(msg):
        if t_start[0] is None and msg.chunks_published > 0:
            t_start[0] = time.monotonic()  # the policy is running: start the warm-up clock
        if measuring():
            ticks.append(stamp_to_sec(msg.header.stamp))
            if msg.inference_latency_s > 0:
                inf.append(msg.inference_latency_s * 1000)

    def on_strip(_msg):
        strips[0] += measuring()

    node.create_subscription(ActionChunk, "/uva/action_chunk", on_chunk, 50)
    node.create_subscription(PolicyStatus, "/policy_node/status", on_status, 50)
    node.create_subscription(Image, "/uva/predicted_frames", on_strip, 10)
    with graph:
        deadline = time.monotonic() + 120 + seconds + warmup_s  # load + warm-up allowance
        while time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.05)
            if t_start[0] is not None and time.monotonic() - t_start[0] > warmup_s + seconds:
                break
        alive = graph.alive()
    node.destroy_node()
    pct = lambda x: ({"p50": float(np.percentile(x, 50)), "p95": float(np.percentile(x, 95)),
                      "n": int(len(x))} if len(x) else None)
    dt = 1.0 / control_rate_hz
    intervals = np.diff(np.asarray(ticks)) * 1000
    jitter = np.abs(intervals - dt * 1000)
    return {"latency_ms": pct(np.array(lat)), "inference_ms": pct(np.array(inf)),
            "tick_interval_ms": pct(intervals),
            "tick_jitter_ms": ({"p95": float(np.percentile(jitter, 95)),
                                "max": float(jitter.max())} if len(jitter) else None),
            "tick_rate_hz": float(1000 / intervals.mean()) if len(intervals) else None,
            "predicted_strips": strips[0], "nodes_alive_at_end": alive}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="models/checkpoints/panda")
    ap.add_argument("--scenarios", nargs="+", default=list(VIDEO_ARGS), choices=list(VIDEO_ARGS))
    ap.add_argument("--seconds", type=float, default=40)
    ap.add_argument("--warmup", type=float, default=5)
    ap.add_argument("--precision", nargs="+", default=[None], choices=["auto", "fp32", "bf16"],
                    help="the nodes' inference_precision (default: sim.yaml's); several: compared")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--out", default="outputs/realtime/latency.json")
    a = ap.parse_args()
    # a domain of its own, loopback only: other graphs on this machine must not mix in
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(101, 200)))
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    rclpy.init()
    result = {"machine": machine_info("cpu"), "checkpoint": a.checkpoint,
              "seconds": a.seconds, "scenarios": {}}
    for r in range(a.rounds):
        order = a.precision if r % 2 == 0 else a.precision[::-1]
        for name in a.scenarios:
            for precision in order:
                key = "/".join([name] + ([precision] if precision else [])
                               + ([str(r + 1)] if a.rounds > 1 else []))
                result["scenarios"][key] = run_scenario(name, a.checkpoint, a.seconds,
                                                        a.warmup, precision=precision)
                print(key, json.dumps(result["scenarios"][key]), flush=True)
    rclpy.shutdown()
    result["load_avg_1m_end"] = machine_info("cpu")["load_avg_1m"]
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
