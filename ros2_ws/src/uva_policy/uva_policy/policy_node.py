"""UVA policy node: RGB image topics + /joint_states in, joint trajectory chunks out.

A thin adapter over `uva`: messages are converted to arrays, the observation history is aligned
by timestamp on a fixed-rate control timer (.observations over uva.control), `predict_action`
runs on a worker thread (never the video head, never blocking callbacks), and every command
passes the safety filter. On missing, stale or malformed input nothing new is published (the controller holds the
last trajectory) and the reason is reported once per second in the log and on ~/status.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import rclpy
from builtin_interfaces.msg import Duration
from rclpy.node import Node
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
from uva_msgs.msg import ActionChunk, PolicyStatus

from uva.control import SafetyFilter, camera_set_reason, schedule_chunk

from . import parameters
from .conversions import checkpoint_cameras, model_inputs
from .observations import ObservationStreams
from .runtime import run_node


PARAMETERS = parameters.POLICY  # every parameter, its descriptor and range: .parameters


class PolicyNode(Node):
    def __init__(self):
        super().__init__("policy_node")
        p = parameters.declare(self, PARAMETERS)  # ParameterError: run_node exits, nothing sent
        self.joint_names = p["joint_names"]
        self.rate = p["control_rate_hz"]
        self.dt = 1.0 / self.rate
        self.status = PolicyStatus()
        self._reason, self._last_log = "", 0.0
        self.policy = None
        self._load_policy(p["checkpoint"], p["device"], p["torch_threads"], p["camera_names"])
        self.streams = ObservationStreams(self, p["image_topics"], p["joint_states_topic"],
                                          self.joint_names, p["reset_topic"], self._forget_plan,
                                          p["camera_names"], p["max_future_skew_s"])
        try:
            self._configure(p)
        except ValueError as e:  # e.g. n_action_steps beyond the loaded checkpoint's horizon
            raise parameters.ParameterError(str(e)) from e
        parameters.watch(self, PARAMETERS, p, self._configure)
        self.traj_pub = self.create_publisher(JointTrajectory, "/uva/joint_trajectory", 10)
        self.chunk_pub = self.create_publisher(ActionChunk, "/uva/action_chunk", 10)
        self.status_pub = self.create_publisher(PolicyStatus, "~/status", 10)
        self._worker: threading.Thread | None = None
        self._ticks_since_plan = 10**9
        self._prev_chunk, self._prev_start = None, None
        self.create_timer(self.dt, self._tick)

    # ------------------------------------------------------------------ setup
    def _configure(self, p: dict) -> None:
        """Runtime settings from validated parameters, swapped in at once (they hold from the next
        tick); ValueError refuses a parameter change and keeps the old settings."""
        safety = SafetyFilter(p["joint_lower_limits"], p["joint_upper_limits"],
                              p["max_joint_step"], n_joints=len(self.joint_names))
        horizon = self.policy.cfg.horizon if self.policy else None
        if horizon is not None and p["n_action_steps"] > horizon:
            raise ValueError(f"n_action_steps {p['n_action_steps']} exceeds the checkpoint's "
                             f"horizon {horizon}")
        n_exec = p["n_action_steps"] or (self.policy.cfg.n_action_steps if self.policy else 8)
        self.max_age, self.slop, self.blend_steps = p["max_obs_age_s"], p["sync_slop_s"], p["blend_steps"]
        self.n_exec, self.safety = n_exec, safety
        self.streams.max_future_skew_s = p["max_future_skew_s"]

    def _load_policy(self, path: str, device: str, threads: int, cameras: list[str]) -> None:
        import torch
        from uva import CheckpointError, load_policy
        torch.set_num_threads(max(threads, 1))
        try:
            if not path:
                raise CheckpointError("parameter 'checkpoint' is empty")
            self.policy = load_policy(path, device)
            self.get_logger().info(f"loaded UVA checkpoint {path} on {device}")
        except CheckpointError as e:
            self.policy = None
            self._hold(f"no usable checkpoint: {e}")
            return
        if self.policy.cfg.action_dim != len(self.joint_names):
            self._hold(f"checkpoint action_dim {self.policy.cfg.action_dim} != "
                       f"{len(self.joint_names)} joint_names")
            self.policy = None
            return
        reason = camera_set_reason(cameras, checkpoint_cameras(self.policy.cfg))
        if reason:
            self._hold(f"camera set refused: {reason}")
            self.policy = None

    def _forget_plan(self) -> None:
        """On reset (under the streams' lock): the next chunk is planned from fresh frames as
        soon as they arrive, without blending into the old scene's chunk."""
        self._prev_chunk, self._prev_start = None, None
        self._ticks_since_plan = 10**9

    # ------------------------------------------------------------------ control tick
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _hold(self, reason: str) -> None:
        self.status.state = PolicyStatus.HOLD
        self.status.reason = reason
        self.status.ticks_held += 1
        now = time.monotonic()
        if reason != self._reason or now - self._last_log > 1.0:
            self.get_logger().warning(f"HOLD: {reason}")
            self._reason, self._last_log = reason, now

    def _tick(self) -> None:
        now = self._now()
        self._ticks_since_plan += 1
        cfg = self.policy.cfg if self.policy else None
        obs, reason, generation = self.streams.aligned(
            now, cfg.n_frames if cfg else 1, (cfg.actions_per_frame if cfg else 1) * self.dt,
            self.slop, self.max_age)
        if self.policy is None:
            self._hold(self.status.reason or "no policy loaded")
        elif obs is None:
            self._hold(reason)
            self._prev_chunk = None  # after a hold, start the next chunk from the measured state
        else:
            self.status.observation_age_s = float(obs.age_s)
            busy = self._worker is not None and self._worker.is_alive()
            if not busy and self._ticks_since_plan >= self.n_exec:
                self._ticks_since_plan = 0
                self._worker = threading.Thread(target=self._infer, args=(obs, generation),
                                                daemon=True)
                self._worker.start()
        self.status.header.stamp = self.get_clock().now().to_msg()
        self.status_pub.publish(self.status)

    def _infer(self, obs, generation: int) -> None:
        cfg = self.policy.cfg
        try:
            inputs = model_inputs(obs, cfg)
            t0 = time.perf_counter()
            chunk = self.policy.predict_action(inputs)
            self.status.inference_latency_s = time.perf_counter() - t0
            now = self._now()
            steps, first, start = schedule_chunk(chunk, obs.stamp, now, self.dt,
                                                 self._prev_chunk, self._prev_start,
                                                 self.blend_steps)
            safe = self.safety.apply(steps, obs.states[-1])
        except ValueError as e:
            self._hold(f"rejected observation or action: {e}")
            return
        with self.streams.lock:
            if generation != self.streams.generation:  # planned from before a reset: stale
                return
            self._prev_chunk, self._prev_start = safe, start
        self.status.state = PolicyStatus.RUNNING
        self.status.reason = ""
        self.status.chunks_published += 1
        self._publish(safe, first, obs.stamp, start, now, chunk.shape[1])

    def _publish(self, steps: np.ndarray, first: int, obs_stamp: float, start: float,
                 now: float, action_dim: int) -> None:
        traj = JointTrajectory()
        traj.header.stamp = self.get_clock().now().to_msg()
        traj.joint_names = self.joint_names
        for j, q in enumerate(steps):
            pt = JointTrajectoryPoint()
            pt.positions = [float(v) for v in q]
            offset = max(start + j * self.dt - now, 0.0) + 1e-3 * j  # strictly increasing
            pt.time_from_start = Duration(sec=int(offset), nanosec=int((offset % 1) * 1e9))
            traj.points.append(pt)
        self.traj_pub.publish(traj)
        msg = ActionChunk()
        msg.header.stamp = rclpy.time.Time(seconds=obs_stamp).to_msg()
        msg.joint_names = self.joint_names
        msg.dt = float(self.dt)
        msg.horizon = int(len(steps))
        msg.action_dim = int(action_dim)
        msg.data = steps.astype(np.float32).ravel().tolist()
        msg.first_step = int(first)
        self.chunk_pub.publish(msg)


def main(args=None):
    run_node(PolicyNode, args)


if __name__ == "__main__":
    main()
