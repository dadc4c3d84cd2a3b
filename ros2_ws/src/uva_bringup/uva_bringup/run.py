"""Run the sim graph without launch_ros: the same nodes, YAML and remappings as
launch/sim.launch.py, started as processes with standard `--ros-args` arguments.

    python -m uva_bringup.run sim [--checkpoint PATH] [--no-video] [--no-autostart]

The policy's arm trajectory (/uva/joint_trajectory) is remapped to the arm controller's topic;
its gripper goals go to franka_gripper's actions under /fr3_gripper, which the simulated driver
serves as the real gripper node does. The nodes are lifecycle nodes: sim.yaml sets `autostart`
(they engage by themselves); --no-autostart leaves them unconfigured, for `~/engage` or the
lifecycle services.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SHARE = Path(__file__).resolve().parent.parent
CONFIG = {"sim": SHARE / "config" / "sim.yaml", "franka": SHARE / "config" / "franka.yaml"}
TRAJECTORY_CONTROLLER = "/fr3_arm_controller/joint_trajectory"


def node_commands(graph: str, checkpoint: str | None, use_video: bool, device: str | None,
                  autostart: bool | None = None, sim_params: dict | None = None):
    """(name, argv) per node, mirroring the launch file; `autostart` None keeps the YAML's."""
    params = str(CONFIG[graph])
    py = sys.executable
    extra = []
    if autostart is not None:
        extra += ["-p", f"autostart:={'true' if autostart else 'false'}"]
    if checkpoint:
        extra += ["-p", f"checkpoint:={checkpoint}"]
    if device:
        extra += ["-p", f"device:={device}"]
    cmds = []
    if graph == "sim":
        sim_extra = [a for k, v in (sim_params or {}).items() for a in ("-p", f"{k}:={v}")]
        cmds.append(("franka_sim", [py, "-m", "uva_sim.sim_node", "--ros-args", "-r",
                                    "__node:=franka_sim", "--params-file", params, *sim_extra]))
    cmds.append(("policy_node", [py, "-m", "uva_policy.policy_node", "--ros-args", "-r",
                                 "__node:=policy_node", "--params-file", params, *extra, "-r",
                                 f"/uva/joint_trajectory:={TRAJECTORY_CONTROLLER}"]))
    if use_video:
        cmds.append(("video_node", [py, "-m", "uva_policy.video_node", "--ros-args", "-r",
                                    "__node:=video_node", "--params-file", params, *extra]))
    return cmds


class Graph:
    """Starts the node processes; stops them all on exit."""

    def __init__(self, graph="sim", checkpoint=None, use_video=True, device=None, log_dir=None,
                 autostart=None, sim_params=None):
        self.cmds = node_commands(graph, checkpoint, use_video, device, autostart, sim_params)
        self.log_dir = Path(log_dir) if log_dir else None
        self.procs: dict[str, subprocess.Popen] = {}

    def __enter__(self):
        for name, argv in self.cmds:
            out = subprocess.DEVNULL
            if self.log_dir:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                out = open(self.log_dir / f"{name}.log", "w")
            self.procs[name] = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                                env=os.environ.copy(), start_new_session=True)
        return self

    def alive(self) -> dict[str, bool]:
        return {n: p.poll() is None for n, p in self.procs.items()}

    def __exit__(self, *exc):
        for p in self.procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGINT)
        deadline = time.time() + 5
        for p in self.procs.values():
            try:
                p.wait(max(deadline - time.time(), 0.1))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("graph", choices=["sim"])
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--device", default=None)
    ap.add_argument("--no-video", action="store_true")
    ap.add_argument("--no-autostart", action="store_true",
                    help="leave the nodes unconfigured (engage with ~/engage or lifecycle services)")
    a = ap.parse_args(argv)
    with Graph(a.graph, a.checkpoint, not a.no_video, a.device,
               autostart=False if a.no_autostart else None) as g:
        try:
            while all(g.alive().values()):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
