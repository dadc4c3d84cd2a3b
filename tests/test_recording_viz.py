"""Recording a live graph into rosbag2 over DDS, and `uva viz` (Foxglove mcap + GIF)."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from ros_helpers import HOME, PANDA_JOINTS, isolate_dds, make_image, make_joints

isolate_dds()


def _read_back(path):
    from rosbags.highlevel import AnyReader
    from uva.rosbag import typestore
    counts, types = {}, {}
    with AnyReader([path], default_typestore=typestore()) as reader:
        for conn, _, raw in reader.messages():
            reader.deserialize(raw, conn.msgtype)  # every message decodes with its definition
            counts[conn.topic] = counts.get(conn.topic, 0) + 1
            types[conn.topic] = conn.msgtype
    return counts, types


def test_recorder_writes_a_readable_bag_from_live_topics(tmp_path):
    from sensor_msgs.msg import Image, JointState
    from uva_msgs.msg import ActionChunk
    from uva_bringup.record import record
    rclpy.init()
    try:
        node = rclpy.create_node("rec_test_pub")
        img_pub = node.create_publisher(Image, "/camera/color/image_raw", 10)
        js_pub = node.create_publisher(JointState, "/joint_states", 10)
        chunk_pub = node.create_publisher(ActionChunk, "/uva/action_chunk", 10)
        wrist_pub = node.create_publisher(Image, "/uva/predicted_frames/wrist", 10)
        stop = threading.Event()
        result = {}
        t = threading.Thread(target=lambda: result.update(record(str(tmp_path / "bag"), "sqlite3", stop_event=stop)))
        t.start()
        end = time.time() + 60  # until the recorder subscribes to every topic (discovery)
        pubs = (img_pub, js_pub, chunk_pub, wrist_pub)
        while time.time() < end and not all(p.get_subscription_count() for p in pubs):
            time.sleep(0.1)
        assert all(p.get_subscription_count() for p in pubs), "the recorder never subscribed"
        for _ in range(20):
            img_pub.publish(make_image(node))
            js_pub.publish(make_joints(node, HOME))
            c = ActionChunk(joint_names=PANDA_JOINTS, horizon=1, action_dim=8, dt=0.1)
            c.data = [float(v) for v in HOME]
            chunk_pub.publish(c)
            wrist_pub.publish(make_image(node, size=32))  # a two-camera video node's strip
            time.sleep(0.05)
        time.sleep(0.5)
        stop.set()
        t.join(10)
        node.destroy_node()
    finally:
        rclpy.shutdown()
    counts, types = _read_back(tmp_path / "bag")
    assert counts["/camera/color/image_raw"] >= 15 and counts["/joint_states"] >= 15
    assert counts["/uva/action_chunk"] >= 15
    assert types["/uva/action_chunk"] == "uva_msgs/msg/ActionChunk"
    assert counts["/uva/predicted_frames/wrist"] >= 15
    assert counts == {k: v for k, v in result.items() if v}


def test_viz_writes_foxglove_mcap_and_one_gif_frame_per_control_step(tmp_path):
    from PIL import Image as PILImage
    from uva.rosbag import BagWriter
    from uva.cli import main as uva_main
    n_cam, n_pred, n_chunk = 12, 3, 4
    with BagWriter(tmp_path / "in", "mcap") as w:
        for topic, typ in (("/camera/color/image_raw", "sensor_msgs/msg/Image"),
                           ("/uva/predicted_frames", "sensor_msgs/msg/Image"),
                           ("/uva/predicted_frames/scene", "sensor_msgs/msg/Image"),
                           ("/uva/predicted_frames/wrist", "sensor_msgs/msg/Image"),
                           ("/joint_states", "sensor_msgs/msg/JointState"),
                           ("/uva/action_chunk", "uva_msgs/msg/ActionChunk"),
                           ("/tf_ignored", "std_msgs/msg/String")):
            w.add_topic(topic, typ)
        T = w.store.types
        for k in range(n_cam):
            ns = (1000 + k) * 10**8
            w.write("/camera/color/image_raw", ns, w.image(ns, np.full((96, 96, 3), k * 10, np.uint8)))
            w.write("/joint_states", ns, w.joint_state(ns, PANDA_JOINTS, np.array(HOME)))
            w.write("/tf_ignored", ns, T["std_msgs/msg/String"](data="x"))
            if k % 3 == 0 and k // 3 < n_pred:
                w.write("/uva/predicted_frames", ns, w.image(ns, np.full((128, 384, 3), 200, np.uint8)))
                for cam in ("scene", "wrist"):  # a two-camera video node's per-camera strips
                    w.write(f"/uva/predicted_frames/{cam}", ns,
                            w.image(ns, np.full((64, 192, 3), 100, np.uint8)))
            if k % 3 == 1 and k // 3 < n_chunk:
                data = np.tile(HOME, (8, 1)) + np.linspace(0, 0.1, 8)[:, None]
                w.write("/uva/action_chunk", ns, T["uva_msgs/msg/ActionChunk"](
                    header=w.header(ns), joint_names=PANDA_JOINTS, dt=0.1, horizon=8, action_dim=8,
                    data=data.astype(np.float32).ravel(), first_step=0))
    assert uva_main(["viz", "--bag", str(tmp_path / "in"), "--out", str(tmp_path / "viz")]) == 0
    counts, types = _read_back(tmp_path / "viz" / "foxglove")
    assert counts == {"/camera/color/image_raw": n_cam, "/uva/predicted_frames": n_pred,
                      "/uva/predicted_frames/scene": n_pred, "/uva/predicted_frames/wrist": n_pred,
                      "/joint_states": n_cam, "/uva/action_chunk": n_chunk, "/uva/action_chunk_plot": n_chunk}
    assert types["/uva/action_chunk_plot"] == "sensor_msgs/msg/JointState"
    gif = PILImage.open(tmp_path / "viz" / "viz.gif")
    assert gif.n_frames == n_cam
    gif.seek(n_cam - 1)
    last = np.asarray(gif.convert("RGB"))
    assert last.shape[0] == 128 + 90  # frames on top, action plot underneath
    assert (last[:128, :128] == 110).all()  # camera frame 11 (value 11*10), left
    assert (last[:128, 128:] == 200).all()  # latest predicted strip, right
    assert (last[128:] != 30).any(axis=-1).sum() > 50  # plotted chunk lines
    # re-running into the same folder is refused; with --overwrite it replaces the output whole
    assert uva_main(["viz", "--bag", str(tmp_path / "in"), "--out", str(tmp_path / "viz")]) == 2
    assert uva_main(["viz", "--bag", str(tmp_path / "in"), "--out", str(tmp_path / "viz"),
                     "--overwrite"]) == 0
    assert _read_back(tmp_path / "viz" / "foxglove")[0] == counts
    assert sorted(p.name for p in (tmp_path / "viz").iterdir()) == ["foxglove", "viz.gif"]
