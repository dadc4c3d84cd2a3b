"""Record teleoperated demonstrations, one rosbag2 (mcap) per episode, for `uva dataset import`.

Subscribes raw (serialized CDR) to the cameras, the joint states, the command topic and any extra
topics, and writes them with their message definitions (rosbags), stamped with the receive time.
An episode is written to `<out_dir>/episode_NNNN.partial` and renamed to the next free
`episode_NNNN` when it is kept, or deleted when discarded, so an interrupted recording never
leaves a bag that looks whole.

Control (std_srvs/Trigger): `~/start_episode`, `~/stop_episode` (keep), `~/discard_episode`.
With `episode_topic` set, every message there keeps the running episode and starts the next (the
simulator announces each reset this way). `max_episodes` > 0 stops after that many kept episodes.
One log line per episode says what it holds.

Which episode a message belongs to is decided by when it was published (its DDS source
timestamp), not by when this node took it: topics are delivered independently, so on a loaded
machine the last frames of one episode can be taken after the next episode's marker, or the
first of the next before it. Messages wait `reorder_window_s` before they are written, and an
episode ended by a marker is closed once that window has passed, so each lands in its own bag.
The publishers' clocks must agree within a frame (one machine, or PTP/chrony across machines).

    python -m uva_bringup.demo_recorder --ros-args --params-file config/record_demos.yaml
"""
from __future__ import annotations

import bisect
import importlib
import json
import shutil
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import rclpy
from rclpy.node import Node
from std_srvs.srv import Trigger

from uva.rosbag import BagWriter
from uva_policy.runtime import freeze_heap

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
    "reorder_window_s": 1.0,  # how late a message may be taken and still reach its own episode
}


def message_class(typename: str):
    pkg, _, name = typename.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


def image_type(topic: str) -> str:
    """image_transport's naming: '<base>/compressed' carries CompressedImage."""
    compressed = topic.rstrip("/").endswith("/compressed")
    return "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"


@dataclass
class Episode:
    """One bag being written: messages published in [start_ns, end_ns) belong to it."""
    path: Path
    writer: BagWriter
    start_ns: int
    started: float  # wall time, for the log
    counts: dict
    end_ns: int | None = None
    close_after: float = 0.0  # monotonic time after which no late message can still arrive


@dataclass
class EpisodeRouter:
    """The ROS-free part of the recorder: a reorder window between taking a message and writing
    it, and the episodes' publish-time intervals. `write(episode, topic, recv_ns, data)` is
    called for each message that falls inside an episode; the rest (between episodes) is
    dropped and counted."""
    window_s: float
    write: object
    pending: deque = field(default_factory=deque)  # (taken monotonic, source_ns, topic, recv_ns, data)
    episodes: list = field(default_factory=list)  # open or closing, by start_ns
    dropped: int = 0

    def take(self, source_ns: int, topic: str, recv_ns: int, data: bytes, now: float) -> None:
        self.pending.append((now, source_ns, topic, recv_ns, data))

    def flush(self, now: float, force: bool = False) -> None:
        """Write every message that has waited the window (all of them with `force`)."""
        while self.pending and (force or self.pending[0][0] <= now - self.window_s):
            _, source_ns, topic, recv_ns, data = self.pending.popleft()
            ep = self.owner(source_ns)
            if ep is None:
                self.dropped += 1
            else:
                self.write(ep, topic, recv_ns, data)

    def owner(self, source_ns: int) -> Episode | None:
        starts = [e.start_ns for e in self.episodes]
        i = bisect.bisect_right(starts, source_ns) - 1
        if i < 0:
            return None
        ep = self.episodes[i]
        return ep if ep.end_ns is None or source_ns < ep.end_ns else None

    def due(self, now: float) -> list[Episode]:
        """Closed episodes whose window has passed: nothing more can reach them."""
        return [e for e in self.episodes if e.end_ns is not None and now >= e.close_after]


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
        window = float(p("reorder_window_s"))
        if not window >= 0:
            raise ValueError(f"reorder_window_s must be >= 0, got {window}")
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
        self.router = EpisodeRouter(window, self._write)
        self.current: Episode | None = None
        self.index = len(list(self.out_dir.glob("episode_*[0-9]")))  # continue after earlier ones
        self.serial = self.index  # names of the bags being written, unique while they overlap
        self.kept = 0
        self.done = False
        self.seen: dict[str, float] = {}  # topic -> first receive time, recording or not
        self.armed = not p("reset_topic")  # with a reset topic, markers count after our reset
        self.reset_after_s = float(p("reset_after_s"))
        # the marker subscription is made first: when it and the next episode's first messages
        # are ready together, the executor serves it first
        marker = p("episode_topic")
        if marker:
            self.create_subscription(message_class(p("episode_topic_type")), marker,
                                     lambda _, info: self._marker(info["source_timestamp"]), 10)
        for topic, typename in self.topics.items():
            self.create_subscription(message_class(typename), topic,
                                     lambda data, info, t=topic: self._on(t, data, info), 50,
                                     raw=True)
        for verb, fn in (("start_episode", self.start), ("stop_episode", self.stop),
                         ("discard_episode", self.discard)):
            self.create_service(Trigger, f"~/{verb}", lambda req, res, fn=fn: self._serve(fn, res))
        self.create_timer(0.1, self._tick)
        self.reset_topic = p("reset_topic")
        if self.reset_topic:
            from std_msgs.msg import Bool
            self.reset_pub = self.create_publisher(Bool, self.reset_topic, 10)
            self.reset_timer = self.create_timer(0.5, self._request_reset)
        self.get_logger().info(f"recording {sorted(self.topics)} into {self.out_dir} "
                               f"({self.storage}), one bag per episode")
        freeze_heap()  # no full collection of the loaded heap while the reorder window runs

    # ---------------------------------------------------------------- episodes
    def _serve(self, fn, res):
        res.success, res.message = fn()
        return res

    def start(self, start_ns: int | None = None) -> tuple[bool, str]:
        with self.lock:
            if self.done:
                return False, f"max_episodes {self.max_episodes} reached"
            if self.current is not None:
                return False, f"episode {self.index} is already recording"
            path = self.out_dir / f"episode_{self.serial:04d}.partial"
            self.serial += 1
            shutil.rmtree(path, ignore_errors=True)
            writer = BagWriter(path, self.storage)
            writer.__enter__()
            for topic, typename in self.topics.items():
                writer.add_topic(topic, typename)
            self.current = Episode(path, writer, time.time_ns() if start_ns is None else start_ns,
                                   time.time(), {t: 0 for t in self.topics})
            self.router.episodes.append(self.current)
            return True, f"episode {self.index} recording"

    def _end(self, end_ns: int, wait: bool) -> Episode | None:
        """End the running episode at publish time `end_ns`; with `wait` it closes once the
        reorder window has passed, else now (a person's button has no sharper boundary)."""
        ep, self.current = self.current, None
        if ep is not None:
            ep.end_ns = end_ns
            ep.close_after = time.monotonic() + (self.router.window_s if wait else 0.0)
            if not wait:
                self.router.flush(time.monotonic(), force=True)
        return ep

    def _finish(self, ep: Episode, keep: bool) -> tuple[bool, str]:
        """Close a bag: keep it (renamed to the next free number) or delete it. Lock held."""
        self.router.episodes.remove(ep)
        ep.writer.__exit__(None, None, None)
        seconds = time.time() - ep.started
        empty = [t for t, n in ep.counts.items() if t in self.required and not n]
        if not keep or empty:  # nothing to learn from: never a bag that import would refuse
            shutil.rmtree(ep.path, ignore_errors=True)
            msg = f"episode {self.index} discarded after {seconds:.1f} s ({sum(ep.counts.values())} messages)"
            if keep:
                return False, f"{msg}: no messages on {empty}"
            return True, msg
        final = self.out_dir / f"episode_{self.index:04d}"
        shutil.rmtree(final, ignore_errors=True)
        ep.path.rename(final)
        (final.parent / f"{final.name}.json").write_text(json.dumps(
            {"episode": self.index, "seconds": round(seconds, 3), "messages": ep.counts}))
        msg = f"episode {self.index} kept: {seconds:.1f} s, " + ", ".join(
            f"{t} {n}" for t, n in ep.counts.items()) + f" -> {final}"
        self.index += 1
        self.kept += 1
        if self.max_episodes and self.kept >= self.max_episodes:
            self.done = True
            msg += f" (max_episodes {self.max_episodes} reached; recording stopped)"
        return True, msg

    def stop(self) -> tuple[bool, str]:
        return self._stop(keep=True)

    def discard(self) -> tuple[bool, str]:
        return self._stop(keep=False)

    def _stop(self, keep: bool) -> tuple[bool, str]:
        with self.lock:
            if self.current is None:
                return False, "no episode is recording"
            ep = self._end(time.time_ns(), wait=False)
            ok, msg = self._finish(ep, keep)
        self.get_logger().info(msg)
        return ok, msg

    def _marker(self, source_ns: int) -> None:
        if not self.armed:
            return  # a reset from before ours: its scene started before we were ready
        with self.lock:
            self._end(source_ns, wait=True)
        if not self.done and self.kept + len(self.router.episodes) < (self.max_episodes or 1 << 62):
            self.start(source_ns)

    def _on(self, topic: str, data: bytes, info: dict) -> None:
        with self.lock:
            self.seen.setdefault(topic, time.time())
            if self.router.episodes:  # else nothing can own it: no episode open or closing
                self.router.take(int(info["source_timestamp"]), topic,
                                 self.get_clock().now().nanoseconds, data, time.monotonic())

    def _write(self, ep: Episode, topic: str, recv_ns: int, data: bytes) -> None:
        ep.writer.write(topic, recv_ns, data)
        ep.counts[topic] += 1

    def _tick(self) -> None:
        """Write what has waited the window; close the episodes nothing more can reach."""
        msgs = []
        with self.lock:
            now = time.monotonic()
            due = self.router.due(now)
            self.router.flush(now, force=bool(due))  # all of it before a bag closes
            for ep in due:
                msgs.append(self._finish(ep, keep=True)[1])
        for msg in msgs:
            self.get_logger().info(msg)

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
        with self.lock:
            current = self._end(time.time_ns(), wait=False)  # writes everything taken
            self.router.flush(time.monotonic(), force=True)  # (when no episode was running)
            for ep in list(self.router.episodes):
                # an episode cut short by shutdown is not a demonstration; one ended by its
                # marker, only waiting for late messages, is whole and kept
                self.get_logger().info(self._finish(ep, keep=ep is not current)[1])


def main(args=None):
    from uva_policy.runtime import run_node
    run_node(DemoRecorder, args, on_shutdown=lambda node: node.shutdown())


if __name__ == "__main__":
    main()
