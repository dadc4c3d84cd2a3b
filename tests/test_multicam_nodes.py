"""Two cameras through the video node over real DDS: each camera's predicted strip on
/uva/predicted_frames/<camera>, all of them stacked on /uva/predicted_frames (and in the what-if
answer); nothing while the wrist stream is missing or stale, with the camera named on
/diagnostics, and strips again once it returns. A one-camera checkpoint publishes exactly as
before, on /uva/predicted_frames only. (The policy node's hold on a missing wrist stream:
test_node_safety.test_two_cameras_hold_on_a_missing_wrist_stream_and_run_when_it_returns.)"""
from __future__ import annotations

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from ros_helpers import (HOME, PANDA_JOINTS, answer_on_current_inputs, isolate_dds, make_joints,
                         start_node, stop)

isolate_dds()

PREDICTED = "/uva/predicted_frames"
TOPICS = {"scene": "/cam/scene", "wrist": "/cam/wrist"}
VALUES = {"scene": 40, "wrist": 200}  # each camera's pixels: its strip's "now" tile shows them
TILE = 2 * 64  # tile_scale x the checkpoints' image_size
BAND = 14  # the label band at the top of every tile
N_TILES = 1 + 2  # the real current frame, then the checkpoints' 2 future frames


def solid_image(node, value: int, size: int = 96):
    from sensor_msgs.msg import Image
    msg = Image()
    msg.header.stamp = node.get_clock().now().to_msg()
    msg.height = msg.width = size
    msg.encoding, msg.step = "rgb8", 3 * size
    msg.data = np.full((size, size, 3), value, np.uint8).tobytes()
    return msg


def pixels(msg) -> np.ndarray:
    assert msg.encoding == "rgb8" and msg.step == 3 * msg.width
    return np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width, 3)


def stamp(msg) -> int:
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


class Feeder:
    """Publishes the cameras named in `cameras`, joint states and an action chunk at 20 Hz while
    spinning; records the strips on every predicted-frames topic and the node's diagnostics."""

    def __init__(self, node, executor, camera_topics: dict, strip_topics: list[str]):
        from diagnostic_msgs.msg import DiagnosticArray
        from sensor_msgs.msg import Image, JointState
        from uva_msgs.msg import ActionChunk
        from uva_policy.diagnostics import parse
        self.node, self.executor = node, executor
        self.img_pubs = {c: node.create_publisher(Image, t, 10) for c, t in camera_topics.items()}
        self.js_pub = node.create_publisher(JointState, "/joint_states", 10)
        self.chunk_pub = node.create_publisher(ActionChunk, "/uva/action_chunk", 10)
        self.chunk = ActionChunk(joint_names=PANDA_JOINTS, horizon=8, action_dim=8, dt=0.1)
        self.chunk.data = np.tile(HOME, 8).astype(np.float32).tolist()
        self.strips = {t: [] for t in strip_topics}
        self.diags = []
        self.subs = [node.create_subscription(Image, t, self.strips[t].append, 10)
                     for t in strip_topics]
        self.subs.append(node.create_subscription(
            DiagnosticArray, "/diagnostics",
            lambda m: self.diags.append(parse(m, "video_node")), 10))
        self.pubs = [*self.img_pubs.values(), self.js_pub, self.chunk_pub]

    def spin(self, seconds=None, until=None, cameras=None, timeout=30.0) -> bool:
        end = time.time() + (seconds if seconds is not None else timeout)
        next_pub = 0.0
        while time.time() < end and not (until and until()):
            if time.time() >= next_pub:
                for c in (self.img_pubs if cameras is None else cameras):
                    self.img_pubs[c].publish(solid_image(self.node, VALUES.get(c, 90)))
                self.js_pub.publish(make_joints(self.node, HOME))
                self.chunk_pub.publish(self.chunk)
                next_pub = time.time() + 0.05
            self.executor.spin_once(timeout_sec=0.01)
        return until() if until else True

    def held(self, text: str) -> bool:
        return any(d and d["state"] == "active" and text in d["hold_reason"] for d in self.diags)

    def call(self, request, timeout=60.0):
        from uva_msgs.srv import PredictFuture
        client = self.node.create_client(PredictFuture, "/video_node/predict_future")

        def ask():
            self.spin(0.5)  # fresh inputs before each question
            fut = client.call_async(request)
            assert self.spin(until=fut.done, timeout=timeout), "predict_future did not answer"
            return fut.result()
        try:
            assert client.wait_for_service(timeout_sec=30)
            return answer_on_current_inputs(ask)
        finally:
            self.node.destroy_client(client)

    def close(self):
        for s in self.subs:
            self.node.destroy_subscription(s)
        for p in self.pubs:
            self.node.destroy_publisher(p)


def assert_now_tile(strip: np.ndarray, value: int) -> None:
    """The real current frame (first tile, below its label) is the camera's own pixels."""
    assert (strip[BAND:TILE, :TILE] == value).all()


def test_two_camera_video_node_publishes_each_cameras_strip_and_holds_on_a_missing_wrist(
        ros, two_camera_ckpt, tmp_path):
    from uva_msgs.srv import PredictFuture
    node, executor = ros
    log = tmp_path / "video.log"
    # the node lists its cameras in another order than the checkpoint: matched by name
    proc = start_node("uva_policy.video_node", "video_node",
                      {"checkpoint": str(two_camera_ckpt), "autostart": True,
                       "camera_names": ["wrist", "scene"],
                       "image_topics": [TOPICS["wrist"], TOPICS["scene"]],
                       # 2 s: generous enough that a stall of this loaded machine does not
                       # make the what-if call's joint states stale (1.2-1.8 s were seen), short
                       # enough that the wrist drop-out below holds within its timeout
                       "publish_rate_hz": 4.0, "max_obs_age_s": 2.0}, log_path=log)
    per_camera = {c: f"{PREDICTED}/{c}" for c in TOPICS}
    f = Feeder(node, executor, TOPICS, [PREDICTED, *per_camera.values()])
    try:
        # the wrist camera is missing: active, holding, naming it; nothing predicted
        assert f.spin(until=lambda: f.held("camera wrist: no image received yet"), timeout=90,
                      cameras=["scene"]), log.read_text()[-3000:]
        assert not any(f.strips.values())
        assert node.count_publishers(PREDICTED) == 1
        assert all(node.count_publishers(t) == 1 for t in per_camera.values())
        # both cameras: one strip per camera and the stack, from one prediction
        assert f.spin(until=lambda: all(f.strips.values()), timeout=60), log.read_text()[-3000:]
        for c, topic in per_camera.items():
            msg = f.strips[topic][0]
            assert (msg.height, msg.width) == (TILE, N_TILES * TILE)
            assert_now_tile(pixels(msg), VALUES[c])
        scene, wrist = (pixels(f.strips[per_camera[c]][0]) for c in ("scene", "wrist"))
        assert not np.array_equal(scene[:, TILE:], wrist[:, TILE:])  # predictions per camera
        stacked = next(m for m in f.strips[PREDICTED]
                       if stamp(m) == stamp(f.strips[per_camera["scene"]][0]))
        assert stamp(stacked) == stamp(f.strips[per_camera["wrist"]][0])
        assert (stacked.height, stacked.width) == (2 * TILE, N_TILES * TILE)
        # rows in the checkpoint's camera order (scene, wrist), whatever the node's order
        assert np.array_equal(pixels(stacked), np.concatenate([scene, wrist], axis=0))
        assert f.spin(until=lambda: f.diags and f.diags[-1] and f.diags[-1]["hold_reason"] == "",
                      timeout=10)
        # what-if: the answer is the stacked strip, and says so
        req = PredictFuture.Request(horizon=8, action_dim=8)
        req.actions = np.tile(HOME, 8).astype(np.float32).tolist()
        res = f.call(req)
        assert res.success, res.message
        assert "scene, wrist" in res.message and len(res.seconds_ahead) == 2
        assert (res.frames.height, res.frames.width) == (2 * TILE, N_TILES * TILE)
        answer = pixels(res.frames)
        assert_now_tile(answer[:TILE], VALUES["scene"])
        assert_now_tile(answer[TILE:], VALUES["wrist"])
        # the wrist stream drops out: holds naming it, no new strip (but one in flight)
        f.diags.clear()
        assert f.spin(until=lambda: f.held("camera wrist is stale"), timeout=10,
                      cameras=["scene"]), [d and d["hold_reason"] for d in f.diags[-3:]]
        counts = {t: len(s) for t, s in f.strips.items()}
        f.spin(1.5, cameras=["scene"])
        assert all(len(f.strips[t]) <= counts[t] + 1 for t in counts)
        counts = {t: len(s) for t, s in f.strips.items()}
        # back: strips on every topic again
        assert f.spin(until=lambda: all(len(f.strips[t]) > counts[t] + 1 for t in counts),
                      timeout=40), log.read_text()[-3000:]
        assert proc.poll() is None
    finally:
        f.close()
        stop(proc)


def test_one_camera_video_node_publishes_its_strip_on_predicted_frames_only(
        ros, panda_ckpt, tmp_path):
    node, executor = ros
    log = tmp_path / "video.log"
    proc = start_node("uva_policy.video_node", "video_node",
                      {"checkpoint": str(panda_ckpt), "autostart": True, "publish_rate_hz": 4.0,
                       "max_obs_age_s": 5.0}, log_path=log)
    f = Feeder(node, executor, {"scene": "/camera/color/image_raw"}, [PREDICTED])
    try:
        assert f.spin(until=lambda: f.strips[PREDICTED], timeout=90), log.read_text()[-3000:]
        msg = f.strips[PREDICTED][0]
        assert (msg.height, msg.width) == (TILE, N_TILES * TILE)
        strip = pixels(msg)
        assert_now_tile(strip, VALUES["scene"])
        # labelled "now" as before cameras were named: the one-camera label_strip, tile for tile
        from uva_policy.video_node import label_strip
        want = label_strip(np.full((64, 64, 3), VALUES["scene"], np.uint8),
                           np.zeros((2, 64, 64, 3), np.uint8), [0.4, 0.8])
        assert np.array_equal(strip[:BAND, :TILE], want[:BAND, :TILE])
        assert node.count_publishers(PREDICTED) == 1
        assert node.count_publishers(f"{PREDICTED}/scene") == 0
    finally:
        f.close()
        stop(proc)


def test_camera_name_that_cannot_be_a_topic_is_refused_at_start(tmp_path):
    log = tmp_path / "video.log"
    proc = start_node("uva_policy.video_node", "video_node",
                      {"camera_names": ["scene", "wrist-cam"], "image_topics": ["/a", "/b"]},
                      log_path=log)
    try:
        assert proc.wait(60) == 2
        assert "wrist-cam" in log.read_text() and f"{PREDICTED}/<camera>" in log.read_text()
    finally:
        stop(proc)
