"""rosbag2 reading/writing with PyPI `rosbags` (no ROS install needed), and the bag decoding used
by `uva replay-eval`. Bags are real rosbag2 (mcap or sqlite3) with message definitions, so
`ros2 bag info` on a ROS install reads them.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data import DatasetError
from .images import ImageDecodeError, message_to_rgb

UVA_MSGS_DIR = Path(__file__).resolve().parents[2] / "ros2_ws" / "src" / "uva_msgs" / "msg"


class BagError(DatasetError):
    """A bag is missing, truncated/corrupt, lacks a required topic, or does not fit the model."""


@functools.lru_cache(maxsize=1)
def typestore():
    """ROS 2 Jazzy message types plus this project's uva_msgs (built once per process: a
    recorder opening a bag per episode must not stall on parsing message definitions)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore
    store = get_typestore(Stores.ROS2_JAZZY)
    types = {}
    for path in sorted(UVA_MSGS_DIR.glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"uva_msgs/msg/{path.stem}"))
    store.register(types)
    return store


class BagWriter:
    """Write messages (rosbags dataclasses, or raw CDR bytes from rclpy) to a rosbag2."""

    def __init__(self, path: str | Path, storage: str = "mcap"):
        from rosbags.rosbag2 import StoragePlugin, Writer
        plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}.get(storage)
        if plugin is None:
            raise ValueError(f"unknown storage '{storage}' (mcap or sqlite3)")
        self.store = typestore()
        self.writer = Writer(Path(path), version=9, storage_plugin=plugin)
        self.connections = {}

    def __enter__(self):
        self.writer.open()
        return self

    def __exit__(self, *exc):
        self.writer.close()

    def add_topic(self, topic: str, msgtype: str) -> None:
        if topic not in self.connections:
            self.connections[topic] = self.writer.add_connection(topic, msgtype, typestore=self.store)

    def write(self, topic: str, stamp_ns: int, msg) -> None:
        conn = self.connections[topic]
        data = msg if isinstance(msg, (bytes, bytearray, memoryview)) else \
            self.store.serialize_cdr(msg, conn.msgtype)
        self.writer.write(conn, int(stamp_ns), bytes(data))

    # convenience constructors for the message types we write
    def header(self, stamp_ns: int, frame_id: str = ""):
        T = self.store.types
        return T["std_msgs/msg/Header"](
            stamp=T["builtin_interfaces/msg/Time"](sec=int(stamp_ns // 10**9), nanosec=int(stamp_ns % 10**9)),
            frame_id=frame_id)

    def image(self, stamp_ns: int, rgb: np.ndarray, encoding: str = "rgb8"):
        data = rgb if encoding == "rgb8" else rgb[..., ::-1]
        return self.store.types["sensor_msgs/msg/Image"](
            header=self.header(stamp_ns, "camera_color_optical_frame"), height=rgb.shape[0],
            width=rgb.shape[1], encoding=encoding, is_bigendian=0, step=rgb.shape[1] * 3,
            data=np.ascontiguousarray(data, dtype=np.uint8).ravel())

    def joint_state(self, stamp_ns: int, names: list[str], q: np.ndarray):
        z = np.zeros(0, dtype=np.float64)
        return self.store.types["sensor_msgs/msg/JointState"](
            header=self.header(stamp_ns), name=list(names), position=np.asarray(q, np.float64),
            velocity=z, effort=z)


@dataclass
class BagStreams:
    images: list[tuple[float, np.ndarray]] = field(default_factory=list)  # (t, rgb), first camera
    joints: list[tuple[float, np.ndarray]] = field(default_factory=list)  # (t, q by joint_names)
    counts: dict = field(default_factory=dict)
    cameras: dict = field(default_factory=dict)  # camera name -> [(t, rgb)]; images is the first


def decode_image(msg, msgtype: str) -> np.ndarray:
    """sensor_msgs Image (rgb8/bgr8/rgba8/bgra8/mono8) or CompressedImage -> RGB uint8."""
    try:
        return message_to_rgb(msg, msgtype)
    except ImageDecodeError as e:
        raise BagError(str(e)) from e


def read_streams(path: str | Path, image_topic, joint_topic: str,
                 joint_names: list[str]) -> BagStreams:
    """Decode the camera and joint-state topics (stamped by header). `image_topic` is one topic
    (camera "scene") or a {camera name: topic} mapping (in camera order; `images` is the first
    camera's stream). Extra topics are ignored, joint_states may carry extra joints in any order
    (matched by name)."""
    from rosbags.highlevel import AnyReader
    path = Path(path)
    if not path.exists():
        raise BagError(f"{path}: bag not found")
    cameras = dict(image_topic) if isinstance(image_topic, dict) else {"scene": image_topic}
    if not cameras:
        raise BagError(f"{path}: no camera topic to read")
    by_topic: dict[str, list[str]] = {}
    for name, topic in cameras.items():
        by_topic.setdefault(topic, []).append(name)
    streams = BagStreams(cameras={name: [] for name in cameras})
    try:
        with AnyReader([path], default_typestore=typestore()) as reader:
            topics = {c.topic: c for c in reader.connections}
            for topic in (*by_topic, joint_topic):
                if topic not in topics:
                    raise BagError(f"{path}: required topic '{topic}' not in bag "
                                   f"(topics: {sorted(topics)})")
            conns = [topics[t] for t in by_topic] + [topics[joint_topic]]
            for conn, _, raw in reader.messages(connections=conns):
                msg = reader.deserialize(raw, conn.msgtype)
                t = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
                streams.counts[conn.topic] = streams.counts.get(conn.topic, 0) + 1
                if conn.topic in by_topic:
                    rgb = decode_image(msg, conn.msgtype)
                    for name in by_topic[conn.topic]:
                        streams.cameras[name].append((t, rgb))
                else:
                    index = {n: i for i, n in enumerate(msg.name)}
                    missing = [n for n in joint_names if n not in index]
                    if missing:
                        raise BagError(f"{path}: {joint_topic} lacks joints {missing} "
                                       f"(has {list(msg.name)}); map names with --topics")
                    streams.joints.append((t, np.array([msg.position[index[n]] for n in joint_names])))
    except BagError:
        raise
    except Exception as e:  # rosbags raises many types on truncated or damaged files
        raise BagError(f"{path}: cannot read bag ({type(e).__name__}: {e})") from e
    for topic, msgs in (*((cameras[n], streams.cameras[n]) for n in cameras),
                        (joint_topic, streams.joints)):
        if not msgs:
            raise BagError(f"{path}: required topic '{topic}' has no messages")
    for msgs in (*streams.cameras.values(), streams.joints):
        msgs.sort(key=lambda x: x[0])
    streams.images = streams.cameras[next(iter(cameras))]
    return streams
