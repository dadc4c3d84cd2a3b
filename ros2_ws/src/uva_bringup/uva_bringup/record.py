"""Record a running UVA graph into a rosbag2 (mcap by default, sqlite3 option).

Subscribes raw (serialized CDR) to the camera, /joint_states, the commanded trajectory and the
/uva/* topics and writes them with their message definitions via `rosbags`, so standard tools
(and `ros2 bag info` on a ROS install) read the result. The table also holds the two-camera
layout's topics (config/franka_2cam.yaml: the wrist camera, and the video node's per-camera
strips /uva/predicted_frames/scene and /wrist); a one-camera graph leaves them empty.

    python -m uva_bringup.record --out outputs/demo/bag [--storage sqlite3] [--duration 30]
"""
from __future__ import annotations

import argparse
import threading
import time

import rclpy
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from trajectory_msgs.msg import JointTrajectory
from uva_msgs.msg import ActionChunk, PolicyStatus

from uva.rosbag import BagWriter

DEFAULT_TOPICS = {
    "/camera/color/image_raw": (Image, "sensor_msgs/msg/Image"),
    "/joint_states": (JointState, "sensor_msgs/msg/JointState"),
    "/fr3_arm_controller/joint_trajectory": (JointTrajectory, "trajectory_msgs/msg/JointTrajectory"),
    "/uva/action_chunk": (ActionChunk, "uva_msgs/msg/ActionChunk"),
    "/uva/predicted_frames": (Image, "sensor_msgs/msg/Image"),  # every camera's strip, stacked
    # the two-camera layout (franka_2cam.yaml): the wrist camera and each camera's strip
    "/wrist_camera/color/image_raw": (Image, "sensor_msgs/msg/Image"),
    "/uva/predicted_frames/scene": (Image, "sensor_msgs/msg/Image"),
    "/uva/predicted_frames/wrist": (Image, "sensor_msgs/msg/Image"),
    "/policy_node/status": (PolicyStatus, "uva_msgs/msg/PolicyStatus"),
}


class Recorder(Node):
    def __init__(self, writer: BagWriter, topics=DEFAULT_TOPICS):
        super().__init__("uva_recorder")
        self.writer = writer
        self.lock = threading.Lock()
        self.counts = {t: 0 for t in topics}
        for topic, (cls, typename) in topics.items():
            writer.add_topic(topic, typename)
            self.create_subscription(cls, topic, lambda data, t=topic: self._on(t, data), 50, raw=True)

    def _on(self, topic: str, data: bytes) -> None:
        with self.lock:
            self.writer.write(topic, self.get_clock().now().nanoseconds, data)
            self.counts[topic] += 1


def record(out: str, storage: str = "mcap", duration: float | None = None, stop_event=None) -> dict:
    """Record until `duration` seconds pass or `stop_event` is set; returns message counts."""
    own_context = not rclpy.ok()
    if own_context:
        rclpy.init()
    with BagWriter(out, storage) as writer:
        node = Recorder(writer)
        executor = rclpy.executors.SingleThreadedExecutor()
        executor.add_node(node)
        t0 = time.time()
        while (duration is None or time.time() - t0 < duration) and \
                not (stop_event is not None and stop_event.is_set()):
            executor.spin_once(timeout_sec=0.05)
        counts = dict(node.counts)
        node.destroy_node()
    if own_context:
        rclpy.shutdown()
    return counts


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--storage", default="mcap", choices=["mcap", "sqlite3"])
    ap.add_argument("--duration", type=float, default=None)
    a = ap.parse_args(argv)
    try:
        print(record(a.out, a.storage, a.duration))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
