"""UVA policy node: RGB image topics + /joint_states in; arm trajectories and gripper goals out.

A thin, managed (lifecycle) adapter over `uva`: messages are converted to arrays, the
observation history is aligned by timestamp (.observations over uva.control), `predict_action`
runs on a worker thread (never the video head, never blocking callbacks), and every command
passes the safety filter. A chunk is planned as soon as the frame it is due on has arrived
(every n_action_steps control periods, uva.control.plan_due), not on the next timer tick: the
camera and the control timer are not phase-locked, and waiting for the tick would add up to a
control period of latency. The fixed-rate control tick keeps the rest: holds and their reasons,
gripper goals, ~/status, and planning whenever a due frame could not be matched on arrival.
Each chunk is split as a franka_ros2 robot needs it: the arm joints go to /uva/joint_trajectory (remapped to the arm's
JointTrajectoryController) with velocities consistent with the positions, the gripper dimension
becomes franka_gripper move/grasp goals with hysteresis (.gripper).

Lifecycle (.managed): `configure` resolves, loads and checks the checkpoint and warms up
inference; `activate` is the explicit engage, before which nothing is commanded; `deactivate`
stops commanding at once (with `stop_on_deactivate`, one empty trajectory tells the controller to
stop and hold where it is). On missing, stale or malformed input nothing new is published (the
controller holds) and the reason is reported once per second in the log, on ~/status and on
/diagnostics (at once when it changes).

Why one module of ~420 lines: the lifecycle, the tick, planning on a frame's arrival, the encode
ahead and the inference worker share one piece of state (the last plan, the settled frame, the
worker and encoder threads, the epoch a disengage bumps) under one locking discipline; message
building, parameters, observations, gripper, health and safety already live in their modules.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from trajectory_msgs.msg import JointTrajectory
from uva_msgs.msg import ActionChunk, PolicyStatus

from uva.control import SafetyFilter, camera_set_reason, encode_ahead, plan_due, schedule_chunk

from . import parameters
from .conversions import chunk_message, checkpoint_cameras, model_inputs, trajectory_message
from .diagnostics import Health
from .gripper import GripperClient, GripperSwitch
from .managed import (CheckpointParameterError, add_engage_service, lifecycle_state,
                      resolve_checkpoint, schedule_autostart)
from .observations import ObservationStreams
from .runtime import freeze_heap, run_node


PARAMETERS = parameters.POLICY  # every parameter, its descriptor and range: .parameters


class PolicyNode(LifecycleNode):
    def __init__(self):
        super().__init__("policy_node")
        # validated as a whole; ParameterError: run_node exits before anything is published
        self._values = parameters.declare(self, PARAMETERS)
        p = self._param
        self.joint_names = list(p("joint_names"))
        self.image_topics = list(p("image_topics"))
        self.camera_names = list(p("camera_names"))
        self.rate = float(p("control_rate_hz"))
        self.dt = 1.0 / self.rate
        self.status = PolicyStatus()
        self.health = Health(self.get_name())
        self._reason, self._last_log = "", 0.0
        self.policy = None
        self.configure_error = ""
        self._active = False
        self._epoch = 0  # bumped by activate / deactivate: results of an older epoch are dropped
        self._publish_lock = threading.Lock()
        self._timer = None
        self.gripper = None
        self.streams = ObservationStreams(self, self.image_topics, p("joint_states_topic"),
                                          self.joint_names, p("reset_topic"), self._forget_plan,
                                          self.camera_names, p("max_future_skew_s"),
                                          on_sample=self._on_sample)
        # runtime changes are validated and applied by _configure (refused ones keep the old)
        parameters.watch(self, PARAMETERS, self._values, self._configure)
        self.traj_pub = self.create_lifecycle_publisher(JointTrajectory, "/uva/joint_trajectory", 10)
        self.chunk_pub = self.create_lifecycle_publisher(ActionChunk, "/uva/action_chunk", 10)
        self.status_pub = self.create_publisher(PolicyStatus, "~/status", 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(1.0 / float(p("diagnostics_rate_hz")), self._publish_health)
        add_engage_service(self)
        schedule_autostart(self)

    def _param(self, name):
        """The validated value in force (runtime changes pass parameters.watch first)."""
        return self._values[name]

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state) -> TransitionCallbackReturn:
        p = self._param
        try:
            self._load_policy(p("checkpoint"), p("device"), int(p("torch_threads")))
            self._configure(self._values)  # e.g. n_action_steps beyond this checkpoint's horizon
        except (CheckpointParameterError, ValueError, RuntimeError) as e:
            self.configure_error = str(e)
            self.policy = None
            self.get_logger().error(f"configure failed: {e}")
            self.health.set_reason(f"configure failed: {e}")
            self._publish_health()
            return TransitionCallbackReturn.FAILURE
        self.configure_error = ""
        freeze_heap()  # the heap as configured is never traversed by the collector again
        gripper = p("gripper_joint")
        self.gripper_index = self.joint_names.index(gripper) if gripper else None
        self.arm_index = [i for i in range(len(self.joint_names)) if i != self.gripper_index]
        self.arm_names = [self.joint_names[i] for i in self.arm_index]
        if gripper:
            self.switch = GripperSwitch(float(p("gripper_open_position")),
                                        float(p("gripper_close_below")), float(p("gripper_open_above")))
            self.gripper = GripperClient(
                self, p("gripper_namespace"), float(p("gripper_open_width")),
                float(p("gripper_grasp_width")), float(p("gripper_epsilon_inner")),
                float(p("gripper_epsilon_outer")), float(p("gripper_speed")), float(p("gripper_force")))
        self._worker: threading.Thread | None = None
        self._encoder: threading.Thread | None = None  # a history frame encoded between chunks
        self._policy_lock = threading.Lock()  # one of them at a time uses the policy's cache
        self._encoded_ahead = 0
        self._slowed = 0  # chunks stretched in time to stay within max_joint_velocity
        self._forget_plan()
        self._last_tick = None
        self._timer = self.create_timer(self.dt, self._tick)
        self._hold("inactive: waiting for activate (engage)")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        with self._publish_lock:
            self._epoch += 1
            self._forget_plan()
            self._active = True
        self.get_logger().info("engaged: commanding the arm")
        self.health.set_reason("")
        return super().on_activate(state)

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        with self._publish_lock:  # a worker finishing now publishes nothing
            self._active = False
            self._epoch += 1
            if self._param("stop_on_deactivate"):
                self.traj_pub.publish(JointTrajectory(joint_names=self.arm_names))
        self.get_logger().info("disengaged: no further commands")
        self._hold("inactive: waiting for activate (engage)")
        return super().on_deactivate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self._teardown()
        self._hold("unconfigured")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        with self._publish_lock:
            self._active = False
            self._epoch += 1
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def _teardown(self) -> None:
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None
        if self.gripper is not None:
            self.gripper.destroy()
            self.gripper = None
        self.policy = None

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
        self.max_velocity = np.asarray(p["max_joint_velocity"], dtype=np.float64)
        self.streams.max_future_skew_s = p["max_future_skew_s"]
        self._values = p

    def _load_policy(self, value: str, device: str, threads: int) -> None:
        """Resolve, load and check the checkpoint against this node's parameters, then warm up;
        raises with the reason (the configure transition fails with it)."""
        import torch
        from uva import CheckpointError, load_policy
        torch.set_num_threads(max(threads, 1))
        path = resolve_checkpoint(value)
        try:
            policy = load_policy(path, device, precision=self._param("inference_precision"))
        except CheckpointError as e:
            raise CheckpointParameterError(f"parameter 'checkpoint' ({path}): {e}") from e
        cfg = policy.cfg
        n = len(self.joint_names)
        if cfg.action_dim != n:
            raise ValueError(f"checkpoint {path} has action_dim {cfg.action_dim} but "
                             f"joint_names lists {n} joints {self.joint_names}")
        if cfg.proprio_dim != n:
            raise ValueError(f"checkpoint {path} has proprio_dim {cfg.proprio_dim} but "
                             f"joint_names lists {n} joints")
        trained_joints = getattr(cfg, "joint_names", None)  # recorded by newer checkpoints
        if trained_joints and list(trained_joints) != self.joint_names:
            raise ValueError(f"checkpoint {path} was trained on joints {list(trained_joints)}, "
                             f"parameter joint_names is {self.joint_names}")
        reason = camera_set_reason(self.camera_names, checkpoint_cameras(cfg))
        if reason:
            raise ValueError(f"camera set refused: {reason}")
        gripper = self._param("gripper_joint")
        if gripper and gripper not in self.joint_names:
            raise ValueError(f"parameter gripper_joint {gripper!r} is not in joint_names")
        t0 = time.perf_counter()
        lower = np.asarray(self._param("joint_lower_limits"), dtype=np.float64)
        upper = np.asarray(self._param("joint_upper_limits"), dtype=np.float64)
        blank = np.zeros((cfg.n_frames, cfg.image_size, cfg.image_size, 3), np.uint8)
        cameras = checkpoint_cameras(cfg)
        warm = {"images": {c: blank for c in cameras}} if len(cameras) > 1 else {"image": blank}
        warm["state"] = np.tile((lower + upper) / 2, (cfg.n_frames, 1))
        policy.predict_action(warm)
        self.policy = policy
        self.health.extra["inference_precision"] = policy.precision
        self.get_logger().info(f"loaded UVA checkpoint {path} on {device}, "
                               f"{policy.precision} ({policy.precision_reason}; warm-up "
                               f"inference {time.perf_counter() - t0:.2f}s)")

    def _forget_plan(self) -> None:
        """On reset (under the streams' lock) or a lifecycle change: the next chunk is planned
        from fresh frames as soon as they arrive, without blending into an old chunk."""
        self._prev_chunk, self._prev_start = None, None
        self._last_plan_stamp = None  # stamp of the frame the last chunk was planned from
        # the newest frame already decided on arrival (planned, not due, or not alignable):
        # further samples (joint states may come at 1 kHz) cost one comparison until a new frame
        self._settled_anchor = None
        if self.gripper is not None:
            self.switch.reset()  # a new scene: the fingers' state is measured again

    # ------------------------------------------------------------------ health
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _hold(self, reason: str) -> None:
        self.status.state = PolicyStatus.HOLD
        self.status.reason = reason
        self.status.ticks_held += 1
        if self.health.set_reason(reason):
            self._publish_health()  # a new hold reason is reported at once
        now = time.monotonic()
        if reason != self._reason or now - self._last_log > 1.0:
            if self._active:
                self.get_logger().warning(f"HOLD: {reason}")
            self._reason, self._last_log = reason, now

    def _publish_health(self) -> None:
        h = self.health
        with h.lock:
            h.state = lifecycle_state(self)
            h.stream_ages = self.streams.ages(self._now(), self.image_topics)
            h.chunks_published = int(self.status.chunks_published)
            if self.gripper is not None:
                h.extra["gripper_goals_sent"] = str(self.gripper.goals_sent)
        self.diag_pub.publish(h.message(self.get_clock().now().to_msg()))

    # ------------------------------------------------------------------ control tick
    def _tick(self) -> None:
        now = self._now()
        if self._last_tick is not None:  # a late timer means control steps that never ran
            self.health.dropped_ticks += max(int(round((now - self._last_tick) / self.dt)) - 1, 0)
        self._last_tick = now
        cfg = self.policy.cfg
        obs, reason, generation = self.streams.aligned(
            now, cfg.n_frames, cfg.actions_per_frame * self.dt, self.slop, self.max_age)
        if not self._active:
            self._hold("inactive: waiting for activate (engage)")
        elif obs is None:
            self._hold(reason)
            self._prev_chunk = None  # after a hold, start the next chunk from the measured state
        else:
            self.status.observation_age_s = float(obs.age_s)
            self._command_gripper(now, obs.states[-1])
            self._plan(obs, generation)
        self.status.header.stamp = self.get_clock().now().to_msg()
        self.status_pub.publish(self.status)

    def _on_sample(self, source) -> None:
        """A new frame (or the joint state it waits for): plan now if it is the frame due."""
        if not self._active or self.policy is None or self._timer is None:
            return
        anchor = self.streams.anchor_stamp()
        if anchor is None or anchor == self._settled_anchor or self._busy():
            return  # busy: the frame stays open, it may still be planned once the worker is done
        if not self._due(anchor):
            if self._encode_ahead(anchor):  # else its partners are in flight: the next sample retries
                self._settled_anchor = anchor
            return
        cfg = self.policy.cfg
        obs, _, generation = self.streams.aligned(
            self._now(), cfg.n_frames, cfg.actions_per_frame * self.dt, self.slop, self.max_age)
        if obs is None:  # the tick holds and says why; no retry on every sample meanwhile
            self._settled_anchor = anchor
        elif obs.stamp == anchor:  # else its partners are still in flight: the next sample retries
            self._settled_anchor = anchor
            self._plan(obs, generation)

    def _due(self, stamp: float) -> bool:
        return plan_due(stamp, self._last_plan_stamp, self.n_exec, self.dt,
                        self.streams.anchor_period(self.dt))

    def _encode_ahead(self, anchor: float) -> bool:
        """A frame the next chunk's history will hold (not its newest): encode it now, between
        chunks, so that inference encodes one frame (uva.control.encode_ahead). False while the
        frame's partners (joint state, other cameras) are still in flight; a frame that cannot
        be aligned, or an encode still running, leaves the frame to the inference."""
        cfg = self.policy.cfg
        spacing = cfg.actions_per_frame * self.dt
        if not encode_ahead(anchor, self._last_plan_stamp, self.n_exec, self.dt, cfg.n_frames,
                            spacing, self.streams.anchor_period(self.dt)):
            return True
        if self._encoder is not None and self._encoder.is_alive():
            return True
        obs, _, _ = self.streams.aligned(self._now(), 1, spacing, self.slop, self.max_age)
        if obs is None:
            return True
        if obs.stamp != anchor:
            return False
        inputs = model_inputs(obs, cfg)
        self._encoder = threading.Thread(
            target=self._precache, args=(inputs.get("images", inputs.get("image")),), daemon=True)
        self._encoder.start()
        return True

    def _precache(self, images) -> None:
        try:
            with self._policy_lock:
                n = self.policy.precache(images)
            with self.health.lock:
                self._encoded_ahead += n
                self.health.extra["frames_encoded_ahead"] = str(self._encoded_ahead)
        except Exception as e:  # nothing lost: the inference encodes the frame itself
            self.get_logger().warning(f"encoding a history frame ahead failed: {e}",
                                      throttle_duration_sec=5.0)

    def _busy(self) -> bool:
        return self._worker is not None and self._worker.is_alive()

    def _plan(self, obs, generation: int) -> None:
        """Start inference on `obs` if its frame is due and no inference is running."""
        if self._busy() or not self._due(obs.stamp):
            return
        self._last_plan_stamp = obs.stamp
        self._worker = threading.Thread(target=self._infer, args=(obs, generation, self._epoch),
                                        daemon=True)
        self._worker.start()

    def _command_gripper(self, now: float, measured: np.ndarray) -> None:
        """The gripper dimension of the running chunk at this tick, through the hysteresis."""
        if self.gripper is None or self._prev_chunk is None:
            return
        chunk, start = self._prev_chunk, self._prev_start
        j = int(np.clip(np.ceil((now - start) / self.dt - 1e-6), 0, len(chunk) - 1))
        g = self.gripper_index
        command = self.switch.update(float(chunk[j, g]), float(measured[g]))
        if command is not None:
            problem = self.gripper.send(command)
            with self.health.lock:
                self.health.extra["gripper_error"] = problem
            if problem:  # the arm keeps running; the gripper is retried from the measured fingers
                self.switch.reset()
                self.get_logger().warning(f"gripper: {problem}", throttle_duration_sec=1.0)
            else:
                self.get_logger().info(f"gripper: {command}")

    def _infer(self, obs, generation: int, epoch: int) -> None:
        cfg = self.policy.cfg
        try:
            inputs = model_inputs(obs, cfg)
            t0 = time.perf_counter()
            with self._policy_lock:  # waits out an encode ahead (one VAE frame) if one runs
                encoded = self.policy.frames_encoded
                chunk = self.policy.predict_action(inputs)
                encoded = self.policy.frames_encoded - encoded
            latency = time.perf_counter() - t0
            with self.health.lock:  # 1 per camera once the history frames were encoded ahead
                self.health.extra["frames_encoded_in_last_inference"] = str(encoded)
            self.status.inference_latency_s = latency
            self.health.latency(latency)
            now = self._now()
            steps, first, start = schedule_chunk(chunk, obs.stamp, now, self.dt,
                                                 self._prev_chunk, self._prev_start,
                                                 self.blend_steps)
            # the first kept step is due one to two control periods ahead: it is limited against
            # where the arm is now, not where it was when the frame was taken (the arm kept
            # moving through the camera's latency and the inference; a controller refuses a
            # first point far from its measured state, and a step back toward an old state
            # would jerk the arm)
            measured = self.streams.latest_state()
            if measured is None:
                raise ValueError("joint_states: no measurement to start the chunk from")
            safe = self.safety.apply(steps, measured)
        except ValueError as e:
            self._hold(f"rejected observation or action: {e}")
            return
        with self._publish_lock:
            if epoch != self._epoch or not self._active:  # disengaged meanwhile
                return
            with self.streams.lock:
                if generation != self.streams.generation:  # planned from before a reset: stale
                    return
                self._prev_chunk, self._prev_start = safe, start
            self.status.state = PolicyStatus.RUNNING
            self.status.reason = ""
            self.health.set_reason("")
            self.status.chunks_published += 1
            self._publish(safe, first, obs.stamp, start, now, chunk.shape[1], measured)

    def _publish(self, steps: np.ndarray, first: int, obs_stamp: float, start: float,
                 now: float, action_dim: int, measured: np.ndarray) -> None:
        arm = self.arm_index
        traj, slowed = trajectory_message(steps[:, arm], self.arm_names, start, now, self.dt,
                                          measured[arm], self.max_velocity)
        if slowed > 1.0:  # the chunk moves too fast for the arm: executed more slowly
            self._slowed += 1
            with self.health.lock:
                self.health.extra["chunks_slowed"] = str(self._slowed)
            self.get_logger().warning(f"chunk slowed {slowed:.2f}x to stay within "
                                      f"max_joint_velocity", throttle_duration_sec=2.0)
        self.traj_pub.publish(traj)
        self.chunk_pub.publish(chunk_message(steps, first, obs_stamp, self.joint_names, self.dt,
                                             action_dim))


def _join_worker(node: PolicyNode) -> None:
    """On shutdown: let an inference in flight finish before the process tears down."""
    worker = getattr(node, "_worker", None)
    if worker is not None and worker.is_alive():
        worker.join(timeout=5.0)


def main(args=None):
    run_node(PolicyNode, args, on_shutdown=_join_worker)


if __name__ == "__main__":
    main()
