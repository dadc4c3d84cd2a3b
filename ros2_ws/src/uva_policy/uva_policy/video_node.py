"""UVA video node: predicted future frames for rviz, and a what-if service.

At a low rate it runs forward dynamics (the video head) for the current observation and the
latest action chunk from the policy node, and publishes each camera's horizontal strip: the real
current frame first, then each predicted frame, labelled with its index and seconds ahead.

- One-camera checkpoint: the strip on /uva/predicted_frames (as before cameras were named).
- Several cameras: camera <name>'s strip on /uva/predicted_frames/<name> (its first tile is
  labelled "<name> now"), and on /uva/predicted_frames all strips stacked top to bottom in the
  checkpoint's camera order, so one rviz Image display (or scripts/demo.py, `uva viz`) still shows
  the whole prediction. Every message of one prediction carries the same stamp (the aligned
  observation's).

~/predict_future answers the same for a caller's candidate chunk: `frames` is what
/uva/predicted_frames would carry (the stacked strip for several cameras; `message` names the
rows). Managed like the policy node (.managed): `configure` loads and checks the checkpoint and
warms up the video head, strips are published only while `active`, the what-if service answers
once configured; health on /diagnostics (a hold names the missing or stale camera).
"""
from __future__ import annotations

import re
import threading
import time

import cv2
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from sensor_msgs.msg import Image
from uva_msgs.msg import ActionChunk
from uva_msgs.srv import PredictFuture

from uva.control import camera_set_reason

from . import parameters
from .conversions import checkpoint_cameras, model_inputs, rgb_to_image
from .diagnostics import Health
from .managed import (CheckpointParameterError, add_engage_service, lifecycle_state,
                      resolve_checkpoint, schedule_autostart)
from .observations import ObservationStreams
from .runtime import freeze_heap, run_node
from .scheduling import ControlPriority

PARAMETERS = parameters.VIDEO  # every parameter, its descriptor and range: .parameters
PREDICTED_TOPIC = "/uva/predicted_frames"
_TOPIC_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def camera_topics(camera_names: list[str]) -> dict[str, str]:
    """{camera: /uva/predicted_frames/<camera>} for several cameras, {} for one (whose strip is
    /uva/predicted_frames alone). A name that cannot be a topic name token is a ParameterError."""
    if len(camera_names) < 2:
        return {}
    bad = [c for c in camera_names if not _TOPIC_TOKEN.fullmatch(c)]
    if bad:
        raise parameters.ParameterError(
            f"camera_names {bad}: the video node publishes {PREDICTED_TOPIC}/<camera>, so a "
            f"camera name must be letters, digits and '_', not starting with a digit")
    return {c: f"{PREDICTED_TOPIC}/{c}" for c in camera_names}


def label_strip(current: np.ndarray, predicted: np.ndarray, seconds_ahead: list[float],
                scale: int = 2, camera: str = "") -> np.ndarray:
    """[current | pred 1 | ... | pred K], each tile upscaled and labelled, rgb8. The current
    tile is labelled "now", or "<camera> now" when `camera` is given."""
    tiles = []
    labels = [f"{camera} now" if camera else "now"] + \
        [f"+{s:.1f}s #{i + 1}" for i, s in enumerate(seconds_ahead)]
    for k, frame in enumerate([current, *predicted]):
        tile = cv2.resize(frame, (frame.shape[1] * scale, frame.shape[0] * scale),
                          interpolation=cv2.INTER_NEAREST)
        cv2.rectangle(tile, (0, 0), (tile.shape[1] - 1, 13), (0, 0, 0), -1)
        cv2.putText(tile, labels[k], (2, 10), cv2.FONT_HERSHEY_SIMPLEX, 0.33,
                    (255, 255, 0) if k == 0 else (255, 255, 255), 1, cv2.LINE_8)
        tiles.append(tile)
    return np.concatenate(tiles, axis=1)


class VideoNode(LifecycleNode):
    def __init__(self):
        super().__init__("video_node")
        values = parameters.declare(self, PARAMETERS)  # ParameterError: run_node exits
        p = values.__getitem__
        # the control loop first: lower OS priority, 1 torch thread, no start while the policy
        # infers (scheduling.py)
        self.priority = ControlPriority(self)
        self.joint_names = list(p("joint_names"))
        self.image_topics = list(p("image_topics"))
        self.dt = 1.0 / float(p("control_rate_hz"))
        self.camera_names = list(p("camera_names"))
        topics = camera_topics(self.camera_names)  # ParameterError: run_node exits
        self._configure(values)
        self.policy = None
        self.configure_error = ""
        self.health = Health(self.get_name())
        self._model_lock = threading.Lock()
        self.latest_chunk: np.ndarray | None = None
        self.streams = ObservationStreams(self, self.image_topics, p("joint_states_topic"),
                                          self.joint_names, p("reset_topic"), self._forget_chunk,
                                          self.camera_names, p("max_future_skew_s"))
        parameters.watch(self, PARAMETERS, values, self._configure)
        self.create_subscription(ActionChunk, "/uva/action_chunk", self._on_chunk, 10)
        self.pub = self.create_lifecycle_publisher(Image, PREDICTED_TOPIC, 5)
        self.camera_pubs = {c: self.create_lifecycle_publisher(Image, t, 5)
                            for c, t in topics.items()}
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # own callback group: a what-if request (one predict_video) never stalls the image and
        # joint-state callbacks, which run on the executor's other thread
        self.create_service(PredictFuture, "~/predict_future", self._on_predict_future,
                            callback_group=MutuallyExclusiveCallbackGroup())
        self._timer = None
        self._active = False
        self._busy = False
        self.create_timer(1.0 / float(p("diagnostics_rate_hz")), self._publish_health)
        add_engage_service(self)
        schedule_autostart(self)

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state) -> TransitionCallbackReturn:
        p = lambda n: self.get_parameter(n).value
        from uva import CheckpointError, load_policy
        import torch
        torch.set_num_threads(max(int(p("torch_threads")), 1))
        try:
            path = resolve_checkpoint(p("checkpoint"))
            try:
                policy = load_policy(path, p("device"), precision=p("inference_precision"))
            except CheckpointError as e:
                raise CheckpointParameterError(f"parameter 'checkpoint' ({path}): {e}") from e
            cfg = policy.cfg
            if cfg.action_dim != len(self.joint_names):
                raise ValueError(f"checkpoint {path} has action_dim {cfg.action_dim} but "
                                 f"joint_names lists {len(self.joint_names)} joints")
            reason = camera_set_reason(self.camera_names, checkpoint_cameras(cfg))
            if reason:
                raise ValueError(f"camera set refused: {reason}")
            blank = np.zeros((cfg.n_frames, cfg.image_size, cfg.image_size, 3), np.uint8)
            cameras = checkpoint_cameras(cfg)
            obs = ({"images": {c: blank for c in cameras}} if len(cameras) > 1
                   else {"image": blank})
            obs["state"] = np.zeros((cfg.n_frames, cfg.proprio_dim))
            policy.predict_video(obs, actions=np.zeros((cfg.horizon, cfg.action_dim)))  # warm-up
        except (CheckpointParameterError, ValueError, RuntimeError) as e:
            self.configure_error = str(e)
            self.get_logger().error(f"configure failed: {e}")
            self.health.set_reason(f"configure failed: {e}")
            self._publish_health()
            return TransitionCallbackReturn.FAILURE
        self.configure_error = ""
        self.policy = policy
        freeze_heap()  # as the policy node: no full collection of the loaded heap later
        self.health.set_reason("")
        self._timer = self.create_timer(1.0 / float(p("publish_rate_hz")), self._tick)
        self.get_logger().info(f"loaded UVA checkpoint {path}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        self._active = True
        return super().on_activate(state)

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self._active = False
        self.health.set_reason("")  # a hold is about predicting, which stops here
        return super().on_deactivate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None
        self.policy = None
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        self._active = False
        return self.on_cleanup(state)

    def _publish_health(self) -> None:
        with self.health.lock:
            self.health.state = lifecycle_state(self)
            self.health.stream_ages = self.streams.ages(
                self.get_clock().now().nanoseconds * 1e-9, self.image_topics)
        self.diag_pub.publish(self.health.message(self.get_clock().now().to_msg()))

    def _configure(self, p: dict) -> None:
        """Runtime settings from validated parameters (they hold from the next tick)."""
        self.max_age, self.slop, self.scale = p["max_obs_age_s"], p["sync_slop_s"], p["tile_scale"]
        if hasattr(self, "streams"):
            self.streams.max_future_skew_s = p["max_future_skew_s"]

    def _on_chunk(self, msg: ActionChunk):
        if msg.action_dim == 0 or len(msg.data) != msg.horizon * msg.action_dim:
            return
        with self.streams.lock:
            self.latest_chunk = np.asarray(msg.data, dtype=np.float64).reshape(msg.horizon, msg.action_dim)

    def _forget_chunk(self) -> None:
        """On reset (under the streams' lock): the last chunk was planned from the old scene."""
        self.latest_chunk = None

    def _observation(self):
        cfg = self.policy.cfg
        now = self.get_clock().now().nanoseconds * 1e-9
        obs, reason, _ = self.streams.aligned(now, cfg.n_frames, cfg.actions_per_frame * self.dt,
                                              self.slop, self.max_age)
        if obs is None:
            return None, None, reason
        return model_inputs(obs, cfg), obs, ""

    def _fit_chunk(self, chunk: np.ndarray) -> np.ndarray:
        """Pad (repeat last) or cut a chunk to the model's horizon."""
        h = self.policy.cfg.horizon
        if len(chunk) >= h:
            return chunk[:h]
        return np.concatenate([chunk, np.repeat(chunk[-1:], h - len(chunk), 0)])

    def _predict_strips(self, obs, chunk):
        """({camera: labelled strip} in the checkpoint's camera order, seconds ahead)."""
        cfg = self.policy.cfg
        with self._model_lock:
            frames = self.policy.predict_video(obs, actions=chunk)
        ahead = [(i + 1) * cfg.actions_per_frame * self.dt for i in range(cfg.n_frames)]
        cameras = checkpoint_cameras(cfg)
        if not isinstance(frames, dict):  # one camera: the strip as before cameras were named
            return {cameras[0]: label_strip(obs["image"][-1], frames, ahead, self.scale)}, ahead
        return {c: label_strip(obs["images"][c][-1], frames[c], ahead, self.scale, camera=c)
                for c in cameras}, ahead

    @staticmethod
    def _stacked(strips: dict) -> np.ndarray:
        """What /uva/predicted_frames carries: the one strip, or every camera's stacked."""
        return np.concatenate(list(strips.values()), axis=0)

    def _hold(self, reason: str) -> None:
        """Record why no strip is predicted (or "" once one is); a new reason is sent at once."""
        if self.health.set_reason(reason):
            self._publish_health()

    def _tick(self):
        if self.policy is None or self._busy or not self._active:
            return
        obs, aligned, reason = self._observation()
        with self.streams.lock:
            chunk, input_error = self.latest_chunk, self.streams.error
        if input_error:  # malformed input is worth a warning; waiting for data is not
            self.get_logger().warning(f"not predicting: {reason}", throttle_duration_sec=1.0)
        if obs is None or chunk is None:
            self._hold(reason if obs is None else "waiting for an action chunk on /uva/action_chunk")
            return
        if not self.priority.may_start():
            return
        self._busy = True
        threading.Thread(target=self._run, args=(obs, aligned, chunk), daemon=True).start()

    def _run(self, obs, aligned, chunk):
        try:
            t0 = time.perf_counter()
            with self.priority.job():
                strips, _ = self._predict_strips(obs, self._fit_chunk(chunk))
            self.health.latency(time.perf_counter() - t0)
            if not self._active:  # deactivated while predicting
                return
            self.health.chunks_published += 1
            stamp = rclpy.time.Time(seconds=aligned.stamp).to_msg()
            for camera, pub in self.camera_pubs.items():
                pub.publish(rgb_to_image(strips[camera], stamp, "uva_predicted_frames"))
            self.pub.publish(rgb_to_image(self._stacked(strips), stamp, "uva_predicted_frames"))
            self._hold("")
        except ValueError as e:
            self.get_logger().warning(f"prediction skipped: {e}", throttle_duration_sec=1.0)
        finally:
            self._busy = False

    def _on_predict_future(self, request, response):
        if self.policy is None:
            response.success, response.message = False, "not configured: no checkpoint loaded"
            return response
        n = request.horizon * request.action_dim
        if request.action_dim != self.policy.cfg.action_dim or n == 0 or len(request.actions) != n:
            response.success = False  # the request's own fault, whatever the cameras are doing
            response.message = (f"actions must be horizon x {self.policy.cfg.action_dim} "
                                f"(got {request.horizon}x{request.action_dim}, {len(request.actions)} values)")
            return response
        obs, _, reason = self._observation()
        if obs is None:
            response.success, response.message = False, f"no current observation: {reason}"
            return response
        chunk = np.asarray(request.actions, dtype=np.float64).reshape(request.horizon, request.action_dim)
        try:
            strips, ahead = self._predict_strips(obs, self._fit_chunk(chunk))
        except ValueError as e:
            response.success, response.message = False, str(e)
            return response
        response.frames = rgb_to_image(self._stacked(strips), self.get_clock().now().to_msg(),
                                       "uva_predicted_frames")
        response.seconds_ahead = [float(a) for a in ahead]
        response.success = True
        response.message = ("ok" if len(strips) == 1 else
                            "ok: one row per camera, top to bottom: " + ", ".join(strips))
        return response


def main(args=None):
    run_node(VideoNode, args, threads=2)  # the what-if service runs beside the timer


if __name__ == "__main__":
    main()
