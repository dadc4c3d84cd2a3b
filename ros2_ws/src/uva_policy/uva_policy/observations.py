"""The observation streams both UVA nodes read: camera topics, joint states and a reset topic.

One class owns the subscriptions, the timestamped buffers and the lock around them, so the policy
node and the video node cannot drift apart in how they treat bad input or a reset: a malformed
message empties that stream's buffer and is reported as the input error until the stream
recovers; a reset forgets every buffer and bumps `generation`, which lets a node drop results
computed from observations taken before it. Cameras are named (`camera_names`, parallel to
`image_topics`) and every reason names its stream: "camera wrist: ...", "joint_states: ...".
A message stamped beyond `max_future_skew_s` ahead of the node's clock is refused on arrival
(uva.control.future_skew_reason) and empties its stream's buffer like a malformed one.
"""
from __future__ import annotations

import threading

import numpy as np

from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import JointState
from std_msgs.msg import Empty

from uva.control import StampedBuffer, align_history, future_skew_reason

from .conversions import ImageError, image_msg_type, image_to_rgb, joint_positions, stamp_to_sec


class ObservationStreams:
    def __init__(self, node: Node, image_topics: list[str], joint_states_topic: str,
                 joint_names: list[str], reset_topic: str, on_reset=None,
                 camera_names: list[str] | None = None, max_future_skew_s: float = 0.1,
                 on_sample=None):
        """`on_reset` runs under `lock` after the buffers are cleared (a node's own state that
        must not outlive the scene, e.g. its last chunk). `on_sample(source)` runs after a
        sample was stored, outside the lock, with the camera index or "joint_states" (the
        policy node plans on the arrival of the frame a chunk is due on).
        `max_future_skew_s` may be changed at any time (a node's parameter callback does)."""
        self.node = node
        self.joint_names = joint_names
        self.camera_names = list(camera_names) if camera_names is not None else \
            [str(k) for k in range(len(image_topics))]
        if len(self.camera_names) != len(image_topics):
            raise ValueError(f"{len(self.camera_names)} camera names for {len(image_topics)} topics")
        self.max_future_skew_s = max_future_skew_s
        self.lock = threading.Lock()
        self.image_buffers = [StampedBuffer() for _ in image_topics]
        self.state_buffer = StampedBuffer()
        self.error = ""  # the last input problem, "" once the stream that had it recovers
        self.generation = 0
        self._on_reset_extra = on_reset
        self._on_sample = on_sample
        for i, topic in enumerate(image_topics):
            node.create_subscription(image_msg_type(topic), topic,
                                     lambda m, i=i: self._on_image(i, m), qos_profile_sensor_data)
        node.create_subscription(JointState, joint_states_topic, self._on_joints, 50)
        node.create_subscription(Empty, reset_topic, self._on_reset, 10)

    def _on_image(self, index: int, msg) -> None:
        source = f"camera {self.camera_names[index]}"
        try:
            rgb = image_to_rgb(msg)
        except ImageError as e:
            with self.lock:
                self.image_buffers[index].clear()
                self.error = f"{source}: {e}"
            return
        with self.lock:
            ok = self._record(self.image_buffers[index], stamp_to_sec(msg.header.stamp), rgb, source)
        if ok and self._on_sample is not None:
            self._on_sample(index)

    def _on_joints(self, msg: JointState) -> None:
        try:
            q = joint_positions(msg, self.joint_names)
        except ValueError as e:
            with self.lock:
                self.error = f"joint_states: {e}"
            return
        with self.lock:
            ok = self._record(self.state_buffer, stamp_to_sec(msg.header.stamp), q, "joint_states")
        if ok and self._on_sample is not None:
            self._on_sample("joint_states")

    def _record(self, buffer: StampedBuffer, stamp: float, value, source: str) -> bool:
        """Store one sample (under `lock`); False when it was refused."""
        now = self.node.get_clock().now().nanoseconds * 1e-9
        err = future_skew_reason(stamp, now, self.max_future_skew_s) or buffer.push(stamp, value)
        if err:
            buffer.clear()
            self.error = f"{source}: {err}"
            return False
        if self.error.startswith(f"{source}:"):
            self.error = ""
        return True

    def anchor_stamp(self) -> float | None:
        """Stamp of the newest frame of the first camera (the one histories are anchored on)."""
        with self.lock:
            return self.image_buffers[0].latest_stamp

    def anchor_period(self, default: float) -> float:
        """The first camera's frame period (median of its recent stamp intervals), `default`
        before there are enough frames."""
        with self.lock:
            stamps = self.image_buffers[0].stamps[-9:]
        if len(stamps) < 3:
            return default
        return float(np.median(np.diff(stamps)))

    def latest_state(self) -> np.ndarray | None:
        """The newest measured joint positions (None while the stream is empty: before the first
        message, after a reset or a malformed message)."""
        with self.lock:
            values = self.state_buffer.values
            return None if not values else np.array(values[-1], dtype=np.float64)

    def _on_reset(self, _msg: Empty) -> None:
        with self.lock:
            for buf in (*self.image_buffers, self.state_buffer):
                buf.clear()
            self.error = ""
            self.generation += 1
            if self._on_reset_extra is not None:
                self._on_reset_extra()
        self.node.get_logger().info("reset: observation history cleared")

    def aligned(self, now: float, n_frames: int, spacing_s: float, slop_s: float,
                max_age_s: float):
        """(history or None, reason, generation it came from), read under one lock."""
        with self.lock:
            if self.error:
                return None, self.error, self.generation
            obs, reason = align_history(self.image_buffers, self.state_buffer, now, n_frames,
                                        spacing_s, slop_s, max_age_s, self.camera_names,
                                        self.max_future_skew_s)
            return obs, reason, self.generation

    def ages(self, now: float, image_topics: list[str]) -> dict[str, float | None]:
        """Seconds since the newest message of each stream (None before the first), for health."""
        with self.lock:
            out = {t: (None if b.latest_stamp is None else now - b.latest_stamp)
                   for t, b in zip(image_topics, self.image_buffers)}
            stamp = self.state_buffer.latest_stamp
            out["joint_states"] = None if stamp is None else now - stamp
            return out
