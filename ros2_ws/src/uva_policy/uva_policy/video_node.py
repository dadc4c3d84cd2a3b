"""UVA video node: predicted future frames for rviz, and a what-if service.

At a low rate it runs forward dynamics (the video head) for the current observation and the
latest action chunk from the policy node, and publishes a horizontal strip on
/uva/predicted_frames: the real current frame first, then each predicted frame, labelled with its
index and seconds ahead. ~/predict_future answers the same for a caller's candidate chunk.
"""
from __future__ import annotations

import threading

import cv2
import numpy as np
import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import Image
from uva_msgs.msg import ActionChunk
from uva_msgs.srv import PredictFuture

from uva.control import camera_set_reason

from . import parameters
from .conversions import checkpoint_cameras, model_inputs, rgb_to_image
from .observations import ObservationStreams
from .runtime import run_node

PARAMETERS = parameters.VIDEO  # every parameter, its descriptor and range: .parameters


def label_strip(current: np.ndarray, predicted: np.ndarray, seconds_ahead: list[float],
                scale: int = 2) -> np.ndarray:
    """[current | pred 1 | ... | pred K], each tile upscaled and labelled, rgb8."""
    tiles = []
    labels = ["now"] + [f"+{s:.1f}s #{i + 1}" for i, s in enumerate(seconds_ahead)]
    for k, frame in enumerate([current, *predicted]):
        tile = cv2.resize(frame, (frame.shape[1] * scale, frame.shape[0] * scale),
                          interpolation=cv2.INTER_NEAREST)
        cv2.rectangle(tile, (0, 0), (tile.shape[1] - 1, 13), (0, 0, 0), -1)
        cv2.putText(tile, labels[k], (2, 10), cv2.FONT_HERSHEY_SIMPLEX, 0.33,
                    (255, 255, 0) if k == 0 else (255, 255, 255), 1, cv2.LINE_8)
        tiles.append(tile)
    return np.concatenate(tiles, axis=1)


class VideoNode(Node):
    def __init__(self):
        super().__init__("video_node")
        values = parameters.declare(self, PARAMETERS)  # ParameterError: run_node exits
        p = values.__getitem__
        from uva import CheckpointError, load_policy
        import torch
        torch.set_num_threads(max(int(p("torch_threads")), 1))
        self.joint_names = list(p("joint_names"))
        self.dt = 1.0 / float(p("control_rate_hz"))
        self._configure(values)
        try:
            self.policy = load_policy(p("checkpoint"), p("device"))
        except CheckpointError as e:
            self.policy = None
            self.get_logger().error(f"no usable checkpoint, not predicting: {e}")
        reason = camera_set_reason(p("camera_names"), checkpoint_cameras(self.policy.cfg)) \
            if self.policy is not None else ""
        if reason:
            self.policy = None
            self.get_logger().error(f"camera set refused, not predicting: {reason}")
        self._model_lock = threading.Lock()
        self.latest_chunk: np.ndarray | None = None
        self.streams = ObservationStreams(self, list(p("image_topics")), p("joint_states_topic"),
                                          self.joint_names, p("reset_topic"), self._forget_chunk,
                                          p("camera_names"), p("max_future_skew_s"))
        parameters.watch(self, PARAMETERS, values, self._configure)
        self.create_subscription(ActionChunk, "/uva/action_chunk", self._on_chunk, 10)
        self.pub = self.create_publisher(Image, "/uva/predicted_frames", 5)
        # own callback group: a what-if request (one predict_video) never stalls the image and
        # joint-state callbacks, which run on the executor's other thread
        self.create_service(PredictFuture, "~/predict_future", self._on_predict_future,
                            callback_group=MutuallyExclusiveCallbackGroup())
        self.create_timer(1.0 / float(p("publish_rate_hz")), self._tick)
        self._busy = False

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

    def _predict_strip(self, obs, chunk):
        cfg = self.policy.cfg
        with self._model_lock:
            frames = self.policy.predict_video(obs, actions=chunk)
        ahead = [(i + 1) * cfg.actions_per_frame * self.dt for i in range(cfg.n_frames)]
        first = checkpoint_cameras(cfg)[0]  # several cameras: the strip shows the first one
        current = obs["image"] if "image" in obs else obs["images"][first]
        if isinstance(frames, dict):
            frames = frames[first]
        return label_strip(current[-1], frames, ahead, self.scale), ahead

    def _tick(self):
        if self.policy is None or self._busy:
            return
        obs, aligned, reason = self._observation()
        with self.streams.lock:
            chunk, input_error = self.latest_chunk, self.streams.error
        if input_error:  # malformed input is worth a warning; waiting for data is not
            self.get_logger().warning(f"not predicting: {reason}", throttle_duration_sec=1.0)
        if obs is None or chunk is None:
            return
        self._busy = True
        threading.Thread(target=self._run, args=(obs, aligned, chunk), daemon=True).start()

    def _run(self, obs, aligned, chunk):
        try:
            strip, _ = self._predict_strip(obs, self._fit_chunk(chunk))
            self.pub.publish(rgb_to_image(strip, rclpy.time.Time(seconds=aligned.stamp).to_msg(),
                                          "uva_predicted_frames"))
        except ValueError as e:
            self.get_logger().warning(f"prediction skipped: {e}", throttle_duration_sec=1.0)
        finally:
            self._busy = False

    def _on_predict_future(self, request, response):
        if self.policy is None:
            response.success, response.message = False, "no checkpoint loaded"
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
            strip, ahead = self._predict_strip(obs, self._fit_chunk(chunk))
        except ValueError as e:
            response.success, response.message = False, str(e)
            return response
        response.frames = rgb_to_image(strip, self.get_clock().now().to_msg(), "uva_predicted_frames")
        response.seconds_ahead = [float(a) for a in ahead]
        response.success, response.message = True, "ok"
        return response


def main(args=None):
    run_node(VideoNode, args, threads=2)  # the what-if service runs beside the timer


if __name__ == "__main__":
    main()
