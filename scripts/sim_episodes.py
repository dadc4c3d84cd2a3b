"""Run the sim graph (simulated Franka + lifecycle policy node, arm trajectory and gripper goals
split as on a real FR3) for N episodes; write the success rate as JSON and a plot of the
executed joint path (positions and velocities from /joint_states) of the first episode.

    python scripts/sim_episodes.py --episodes 10 --out outputs/sim_split \
        [--checkpoint models/checkpoints/panda] [--plot docs/media/sim_joint_path.png]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def record(episodes: int, checkpoint: str | None, first_seed: int, log_dir: Path,
           timeout_s: float) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Bool, Int32
    from uva_bringup.run import Graph
    from uva.envs.panda import PandaEnv

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    rclpy.init()
    node = rclpy.create_node("sim_episodes_recorder")
    executor = rclpy.executors.SingleThreadedExecutor()
    executor.add_node(node)
    state = {"episode": None}
    joints: dict[int, list] = {}
    success: dict[int, bool] = {}

    started: set[int] = set()

    def on_episode(msg):
        state["episode"] = msg.data if state.get("engaged") else None
        if state["episode"] is not None:
            started.add(msg.data)

    def on_diagnostics(msg):
        for status in msg.status:
            if status.name == "policy_node" and any(kv.key == "state" and kv.value == "active"
                                                    for kv in status.values):
                state["active"] = True

    def on_joints(msg):
        if state["episode"] is not None:
            t = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
            joints.setdefault(state["episode"], []).append((t, list(msg.position), list(msg.velocity)))

    def on_success(msg):
        if state["episode"] is not None:
            success[state["episode"]] = success.get(state["episode"], False) or bool(msg.data)

    node.create_subscription(Int32, "/franka_sim/episode", on_episode, 50)
    node.create_subscription(JointState, "/joint_states", on_joints, 50)
    node.create_subscription(Bool, "/franka_sim/task_success", on_success, 50)
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
    reset = node.create_publisher(Bool, "/franka_sim/reset", 10)
    seeds = list(range(first_seed, first_seed + episodes))
    # the sim starts one seed early and is reset once the policy is engaged, so every recorded
    # episode runs under the policy from its first step
    with Graph("sim", checkpoint, use_video=False, log_dir=log_dir,
               sim_params={"first_seed": first_seed - 1, "episode_steps": PandaEnv.max_steps}) as graph:
        end = time.time() + timeout_s
        while time.time() < end and not (state.get("active") and reset.get_subscription_count()):
            executor.spin_once(timeout_sec=0.05)
        state["engaged"] = True
        reset.publish(Bool(data=True))
        # an episode is over once the next one has started (the sim resets on success or time-out)
        while time.time() < end and state["episode"] != first_seed + episodes:
            executor.spin_once(timeout_sec=0.05)
            if not all(graph.alive().values()):
                raise RuntimeError(f"a node died: {graph.alive()} (logs in {log_dir})")
    node.destroy_node()
    rclpy.shutdown()
    done = [s for s in seeds if s in joints and (s + 1) in started]
    return {"seeds": done, "success": [bool(success.get(s, False)) for s in done],
            "joints": {s: joints[s] for s in done}}


def plot(samples: list, path: Path, seed: int, succeeded: bool) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from uva.franka import ARM_JOINTS
    t = np.array([s[0] for s in samples])
    gaps = np.flatnonzero(np.diff(t) > 1.0)  # a stray sample after the episode's reset
    if len(gaps):
        samples, t = samples[:gaps[0] + 1], t[:gaps[0] + 1]
    t = t - t[0]
    q = np.array([s[1][:7] for s in samples])
    v = np.array([s[2][:7] if len(s[2]) >= 7 else [np.nan] * 7 for s in samples])
    finger = np.array([s[1][7] for s in samples])
    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True,
                             gridspec_kw={"height_ratios": [3, 3, 1.3]})
    for j, name in enumerate(ARM_JOINTS):
        axes[0].plot(t, q[:, j], label=name)
        axes[1].plot(t, v[:, j], label=name)
    axes[2].plot(t, finger * 2, color="k")
    axes[0].set_ylabel("position (rad)")
    axes[1].set_ylabel("velocity (rad/s)")
    axes[2].set_ylabel("gripper width (m)")
    axes[2].set_xlabel("time in episode (s)")
    axes[0].legend(ncol=4, fontsize=8, loc="upper right")
    axes[0].set_title(f"Executed joint path, sim episode seed {seed} "
                      f"({'success' if succeeded else 'no success'})\n"
                      "policy node -> arm trajectory controller + gripper actions", fontsize=10)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--checkpoint", default=None, help="default: the graph's (shipped Panda)")
    ap.add_argument("--first-seed", type=int, default=100000)
    ap.add_argument("--out", required=True)
    ap.add_argument("--plot", default=None,
                    help="PNG of the joint path of the first successful episode (else the first)")
    ap.add_argument("--timeout", type=float, default=None, help="seconds (default 40 per episode)")
    ap.add_argument("--overwrite", action="store_true")
    a = ap.parse_args(argv)
    out = Path(a.out)
    if out.exists() and not a.overwrite:
        raise SystemExit(f"{out} exists; pass --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    res = record(a.episodes, a.checkpoint, a.first_seed, out / "logs",
                 a.timeout or 40.0 * (a.episodes + 1))
    n = len(res["seeds"])
    metrics = {"episodes": n, "successes": int(sum(res["success"])),
               "success_rate": float(np.mean(res["success"])) if n else 0.0,
               "seeds": res["seeds"], "success": res["success"],
               "checkpoint": a.checkpoint or "default (uva_bringup share: checkpoints/panda)"}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps({k: metrics[k] for k in ("episodes", "successes", "success_rate")}))
    if a.plot and res["joints"]:
        k = res["success"].index(True) if any(res["success"]) else 0
        seed = res["seeds"][k]
        plot(res["joints"][seed], Path(a.plot), seed, res["success"][k])
        print(f"wrote {a.plot}")


if __name__ == "__main__":
    main()
