"""Helpers for tests over real DDS: node processes, a test node, unique domain per run."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np

from uva.franka import MODEL_JOINTS as PANDA_JOINTS  # the names the nodes use
PANDA_LOWER = [-2.9671, -1.8326, -2.9671, -3.1416, -2.9671, -0.0873, -2.9671, 0.0]
PANDA_UPPER = [2.9671, 1.8326, 2.9671, 0.0, 2.9671, 3.8223, 2.9671, 0.04]
HOME = [0.0, -0.3, 0.0, -2.2, 0.0, 2.0, 0.785, 0.04]


_DOMAIN_LOCK = None  # held open for the life of the test process


def isolate_dds() -> None:
    """A ROS_DOMAIN_ID no other test session on this machine holds, discovery on loopback only.

    Two pytest runs sharing a domain see each other's nodes (a second `policy_node` on
    /diagnostics); each run takes an exclusive lock file per domain id, starting from one drawn
    from its pid, so concurrent runs get different ids."""
    global _DOMAIN_LOCK
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    if "ROS_DOMAIN_ID" in os.environ or _DOMAIN_LOCK is not None:
        return
    import fcntl
    import tempfile
    start = random.Random(os.getpid()).randint(0, 99)
    for k in range(100):
        domain = 1 + (start + k) % 100
        f = open(os.path.join(tempfile.gettempdir(), f"uva-test-ros-domain-{domain}.lock"), "w")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        _DOMAIN_LOCK = f
        os.environ["ROS_DOMAIN_ID"] = str(domain)
        return
    raise RuntimeError("every ROS domain id 1-100 is held by another test session")


def start_node(module: str, name: str, params: dict, remaps: dict | None = None,
               log_path=None) -> subprocess.Popen:
    argv = [sys.executable, "-m", module, "--ros-args", "-r", f"__node:={name}"]
    for k, v in params.items():
        if isinstance(v, list):
            v = "[" + ",".join(f'"{x}"' if isinstance(x, str) else repr(float(x)) for x in v) + "]"
        argv += ["-p", f"{k}:={v}"]
    for a, b in (remaps or {}).items():
        argv += ["-r", f"{a}:={b}"]
    out = open(log_path, "w") if log_path else subprocess.DEVNULL
    return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def matched_publisher(node, executor, msg_type, topic: str, timeout: float = 10.0):
    """A publisher on `topic` once a subscriber is matched: a message sent before discovery
    completes is silently lost, which would make a test pass or fail by timing."""
    pub = node.create_publisher(msg_type, topic, 10)
    end = time.time() + timeout
    while pub.get_subscription_count() == 0 and time.time() < end:
        executor.spin_once(timeout_sec=0.05)
    return pub


def answer_on_current_inputs(ask, tries: int = 3):
    """`ask()`'s service response, asked again (up to `tries`) while the node rightly refuses
    because a stall of this loaded machine left its inputs stale ("no current observation")."""
    for _ in range(tries):
        res = ask()
        if res.success or "no current observation" not in res.message:
            break
    return res


def spin(executor, seconds: float) -> None:
    """Process callbacks for `seconds` while publishing nothing."""
    end = time.time() + seconds
    while time.time() < end:
        executor.spin_once(timeout_sec=0.02)


def make_image(node, size=96, encoding="rgb8", stamp=None, seed=0):
    from sensor_msgs.msg import Image
    rng = np.random.default_rng(seed)
    ch = {"mono8": 1, "rgba8": 4, "bgra8": 4}.get(encoding, 3)
    if encoding == "16UC1":
        ch = 2
    arr = rng.integers(0, 255, (size, size, ch), dtype=np.uint8)
    msg = Image()
    msg.header.stamp = stamp or node.get_clock().now().to_msg()
    msg.height = msg.width = size
    msg.encoding = encoding
    msg.step = size * ch
    msg.data = arr.tobytes()
    return msg


def make_joints(node, q, names=PANDA_JOINTS, stamp=None):
    from sensor_msgs.msg import JointState
    msg = JointState()
    msg.header.stamp = stamp or node.get_clock().now().to_msg()
    msg.name = list(names)
    msg.position = [float(v) for v in q]
    return msg


def refused_trajectories(sim_log: str) -> tuple[list[str], list[str]]:
    """The simulated driver's refusals: (malformed ones: joints, times, values, velocities;
    ones that do not fit where the arm is: a first point too far, or too fast to reach). A
    trajectory planned just before an episode reset teleports the arm does not fit the new state
    and is refused, as a real robot would; nothing else may be."""
    lines = [ln for ln in sim_log.splitlines() if "trajectory refused" in ln]
    deviation = [ln for ln in lines if "from the current state" in ln or "velocity limit" in ln]
    return [ln for ln in lines if ln not in deviation], deviation
