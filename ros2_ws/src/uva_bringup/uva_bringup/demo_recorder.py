"""Record teleoperated demonstrations, one rosbag2 (mcap) per episode, for `uva dataset import`.

Subscribes raw (serialized CDR) to the cameras, the joint states, the command topic and any extra
topics, and writes them with their message definitions (rosbags), stamped with the receive time.
An episode is written to `<out_dir>/episode_NNNN.partial` and renamed to `episode_NNNN` when it is
kept, or deleted when discarded, so an interrupted recording never leaves a bag that looks whole.

Control (std_srvs/Trigger): `~/start_episode`, `~/stop_episode` (keep), `~/discard_episode`.
With `episode_topic` set, every message there keeps the running episode and starts the next (the
simulator announces each reset this way). `max_episodes` > 0 stops after that many kept episodes.
One log line per episode says what it holds.

    python -m uva_bringup.demo_recorder --ros-args --params-file config/record_demos.yaml
"""
from __future__ import annotations

import importlib
import json
import shutil
import threading
import time
from pathlib import Path

import rclpy
from rclpy.node import Node
from std_srvs.srv import Trigger

from uva.rosbag import BagWriter

PARAMETERS = {
    "out_dir": "outputs/demos",
    "storage": "mcap",
    "image_topics": ["/camera/color/image_raw"],
    "joint_states_topic": "/joint_states",
    "command_topic": "/fr3_arm_controller/joint_trajectory",
    "command_type": "trajectory_msgs/msg/JointTrajectory",
    "extra_topics": [""],  # "topic|pkg/msg/Type" entries recorded too
    "episode_topic": "",
    "episode_topic_type": "std_msgs/msg/Empty",
    "max_episodes": 0,
    "reset_topic": "",  # a Bool topic asked once for a fresh scene when everything is connected
    "reset_after_s": 3.0,  # ... and has been sending for this long (a teleop may still be loading)
}


def message_class(typename: str):
    pkg, _, name = typename.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


def image_type(topic: str) -> str:
    """image_transport's naming: '<base>/compressed' carries CompressedImage."""
    compressed = topic.rstrip("/").endswith("/compressed")
    return "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"


class DemoRecorder(Node):
    def __init__(self):
        super().__init__("demo_recorder")
        for name, default in PARAMETERS.items():
            self.declare_parameter(name, default)
        p = lambda n: self.get_parameter(n).value
        self.out_dir = Path(p("out_dir"))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.storage = p("storage")
        self.max_episodes = int(p("max_episodes"))
        self.topics = {t: image_type(t) for t in p("image_topics")}
        self.topics[p("joint_states_topic")] = "sensor_msgs/msg/JointState"
        self.required = set(self.topics)  # cameras and joint states: an episode needs them
        if p("command_topic"):
            self.topics[p("command_topic")] = p("command_type")
        for entry in p("extra_topics"):
            if entry:
                topic, _, typename = entry.partition("|")
                self.topics[topic] = typename
        self.lock = threading.Lock()
        self.writer: BagWriter | None = None
        self.episode_path: Path | None = None
        self.counts: dict[str, int] = {}
        self.started = 0.0
        self.kept = 0
        self.index = len(list(self.out_dir.glob("episode_*[0-9]")))  # continue after earlier ones
        self.done = False
        self.seen: dict[str, float] = {}  # topic -> first receive time, recording or not
        self.armed = not p("reset_topic")  # with a reset topic, markers count after our reset
        self.reset_after_s = float(p("reset_after_s"))
        # the marker subscription is made first: when it and the next episode's first messages
        # are ready together, the executor serves it first, so they land in the new bag
        marker = p("episode_topic")
        if marker:
            self.create_subscription(message_class(p("episode_topic_type")), marker,
                                     lambda _: self._marker(), 10)
        for topic, typename in self.topics.items():
            self.create_subscription(message_class(typename), topic,
                                     lambda data, t=topic: self._on(t, data), 50, raw=True)
        for verb, fn in (("start_episode", self.start), ("stop_episode", self.stop),
                         ("discard_episode", self.discard)):
            self.create_service(Trigger, f"~/{verb}", lambda req, res, fn=fn: self._serve(fn, res))
        self.reset_topic = p("reset_topic")
        if self.reset_topic:
            from std_msgs.msg import Bool
            self.reset_pub = self.create_publisher(Bool, self.reset_topic, 10)
            self.reset_timer = self.create_timer(0.5, self._request_reset)
        self.get_logger().info(f"recording {sorted(self.topics)} into {self.out_dir} "
                               f"({self.storage}), one bag per episode")

    # ---------------------------------------------------------------- episodes
    def _serve(self, fn, res):
        res.success, res.message = fn()
        return res

    def start(self) -> tuple[bool, str]:
        with self.lock:
            if self.done:
                return False, f"max_episodes {self.max_episodes} reached"
            if self.writer is not None:
                return False, f"episode {self.index} is already recording"
            self.episode_path = self.out_dir / f"episode_{self.index:04d}.partial"
            shutil.rmtree(self.episode_path, ignore_errors=True)
            self.writer = BagWriter(self.episode_path, self.storage)
            self.writer.__enter__()
            for topic, typename in self.topics.items():
                self.writer.add_topic(topic, typename)
            self.counts = {t: 0 for t in self.topics}
            self.started = time.time()
            return True, f"episode {self.index} recording"

    def _close(self) -> tuple[Path, dict, float]:
        self.writer.__exit__(None, None, None)
        path, counts = self.episode_path, dict(self.counts)
        self.writer = self.episode_path = None
        return path, counts, time.time() - self.started

    def stop(self) -> tuple[bool, str]:
        with self.lock:
            if self.writer is None:
                return False, "no episode is recording"
            empty = [t for t, n in self.counts.items() if t in self.required and not n]
        if empty:  # nothing to learn from: never a bag that import would refuse
            ok, msg = self.discard()
            return False, f"{msg}: no messages on {empty}"
        with self.lock:
            path, counts, seconds = self._close()
            final = path.with_name(path.name[: -len(".partial")])
            shutil.rmtree(final, ignore_errors=True)
            path.rename(final)
            (final.parent / f"{final.name}.json").write_text(json.dumps(
                {"episode": self.index, "seconds": round(seconds, 3), "messages": counts}))
            msg = f"episode {self.index} kept: {seconds:.1f} s, " + ", ".join(
                f"{t} {n}" for t, n in counts.items()) + f" -> {final}"
            self.index += 1
            self.kept += 1
            if self.max_episodes and self.kept >= self.max_episodes:
                self.done = True
                msg += f" (max_episodes {self.max_episodes} reached; recording stopped)"
        self.get_logger().info(msg)
        return True, msg

    def discard(self) -> tuple[bool, str]:
        with self.lock:
            if self.writer is None:
                return False, "no episode is recording"
            path, counts, seconds = self._close()
            shutil.rmtree(path, ignore_errors=True)
            msg = f"episode {self.index} discarded after {seconds:.1f} s ({sum(counts.values())} messages)"
        self.get_logger().info(msg)
        return True, msg

    def _marker(self) -> None:
        if not self.armed:
            return  # a reset from before ours: its scene started before we were ready
        if self.writer is not None:
            self.stop()
        if not self.done:
            self.start()

    def _on(self, topic: str, data: bytes) -> None:
        with self.lock:
            self.seen.setdefault(topic, time.time())
            if self.writer is None:
                return
            self.writer.write(topic, self.get_clock().now().nanoseconds, data)
            self.counts[topic] += 1

    def _request_reset(self) -> None:
        """Ask for a fresh scene once every recorded topic has a publisher and the cameras and
        joint states have been arriving for `reset_after_s`, so the first episode is whole."""
        missing = [t for t in self.topics if not self.get_publishers_info_by_topic(t)]
        flowing = [self.seen.get(t) for t in self.required]
        if missing or not self.reset_pub.get_subscription_count() or None in flowing \
                or time.time() - max(flowing) < self.reset_after_s:
            return
        from std_msgs.msg import Bool
        self.armed = True
        self.reset_pub.publish(Bool(data=True))
        self.reset_timer.cancel()
        self.get_logger().info(f"all topics connected; asked {self.reset_topic} for a fresh scene")

    def shutdown(self) -> None:
        if self.writer is not None:
            self.discard()  # an episode cut short by shutdown is not a demonstration


def main(args=None):
    from uva_policy.runtime import run_node
    run_node(DemoRecorder, args, on_shutdown=lambda node: node.shutdown())


if __name__ == "__main__":
    main()
