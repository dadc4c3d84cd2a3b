"""`uva viz --bag PATH`: a headless viewer path for runs recorded from the UVA graph.

Writes (1) `foxglove.mcap`, a ROS 2 mcap Foxglove opens directly, holding the camera, predicted
frames (and each camera's strip, `/uva/predicted_frames/<camera>`, where the bag has them),
joint states, action chunks and `/uva/action_chunk_plot` (the first step of each chunk as a
JointState, which plot panels can chart), and (2) `viz.gif`: one frame per camera frame (control
step), real frame beside the latest predicted frames (every camera's strip, stacked, for a
several-camera checkpoint), with the latest action chunk plotted under.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from .rosbag import BagError, BagWriter, decode_image, typestore

CAMERA, PREDICTED = "/camera/color/image_raw", "/uva/predicted_frames"
JOINTS, CHUNK, PLOT = "/joint_states", "/uva/action_chunk", "/uva/action_chunk_plot"
COPIED = {CAMERA: "sensor_msgs/msg/Image", PREDICTED: "sensor_msgs/msg/Image",
          JOINTS: "sensor_msgs/msg/JointState", CHUNK: "uva_msgs/msg/ActionChunk"}
COLORS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
          (145, 30, 180), (70, 240, 240), (240, 50, 230)]


def chunk_plot(chunk: np.ndarray | None, width: int, height: int = 90) -> np.ndarray:
    """Each action dimension as a polyline over the chunk's steps (normalised per dimension)."""
    img = np.full((height, width, 3), 30, np.uint8)
    if chunk is None or len(chunk) < 2:
        return img
    lo, hi = chunk.min(0), chunk.max(0)
    span = np.where(hi - lo > 1e-6, hi - lo, 1.0)
    xs = np.linspace(4, width - 4, len(chunk))
    for d in range(chunk.shape[1]):
        ys = height - 6 - (chunk[:, d] - lo[d]) / span[d] * (height - 12)
        pts = np.stack([xs, ys], 1).astype(np.int32)
        cv2.polylines(img, [pts], False, COLORS[d % len(COLORS)], 1, cv2.LINE_8)
    return img


def viz(bag: str, out: str, max_frames: int = 2000) -> dict:
    from rosbags.highlevel import AnyReader
    from .images import write_gif
    bag_path, out_dir = Path(bag), Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    copied = dict(COPIED)
    counts = {t: 0 for t in list(COPIED) + [PLOT]}
    frames = []
    strip, chunk = None, None
    final, partial = out_dir / "foxglove", out_dir / "foxglove.partial"
    shutil.rmtree(partial, ignore_errors=True)  # a run killed mid-write left it
    try:
        with AnyReader([bag_path], default_typestore=typestore()) as reader, \
                BagWriter(partial, "mcap") as writer:
            copied.update({c.topic: COPIED[PREDICTED] for c in reader.connections
                           if c.topic.startswith(PREDICTED + "/") and c.msgtype == COPIED[PREDICTED]})
            counts.update({t: 0 for t in copied})
            conns = [c for c in reader.connections if c.topic in copied]
            if not any(c.topic == CAMERA for c in conns):
                raise BagError(f"{bag}: no {CAMERA} topic to visualise")
            for topic, typename in copied.items():
                writer.add_topic(topic, typename)
            writer.add_topic(PLOT, "sensor_msgs/msg/JointState")
            for conn, t_ns, raw in tqdm(reader.messages(connections=conns), desc="viz"):
                writer.write(conn.topic, t_ns, raw)
                counts[conn.topic] += 1
                msg = reader.deserialize(raw, conn.msgtype)
                if conn.topic == PREDICTED:
                    strip = decode_image(msg, conn.msgtype)
                elif conn.topic == CHUNK and msg.action_dim and len(msg.data) == msg.horizon * msg.action_dim:
                    chunk = np.asarray(msg.data, np.float64).reshape(msg.horizon, msg.action_dim)
                    stamp_ns = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
                    writer.write(PLOT, t_ns, writer.joint_state(stamp_ns, list(msg.joint_names), chunk[0]))
                    counts[PLOT] += 1
                elif conn.topic == CAMERA and len(frames) < max_frames:
                    cam = decode_image(msg, conn.msgtype)
                    h = 128
                    cam = cv2.resize(cam, (int(cam.shape[1] * h / cam.shape[0]), h))
                    right = (cv2.resize(strip, (int(strip.shape[1] * h / strip.shape[0]), h))
                             if strip is not None else np.zeros((h, h, 3), np.uint8))
                    top = np.concatenate([cam, right], axis=1)
                    frames.append(np.concatenate([top, chunk_plot(chunk, top.shape[1])], axis=0))
    except Exception as e:
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(e, BagError):
            raise
        raise BagError(f"{bag}: cannot visualise ({type(e).__name__}: {e})") from e
    shutil.rmtree(final, ignore_errors=True)  # a re-run replaces the previous bag whole
    partial.rename(final)
    if not frames:
        raise BagError(f"{bag}: no camera frames to visualise")
    width = max(f.shape[1] for f in frames)  # frames before the first prediction are narrower
    frames = [np.pad(f, ((0, 0), (0, width - f.shape[1]), (0, 0))) for f in frames]
    write_gif(out_dir / "viz.gif", frames, fps=10, upscale=1)
    return {"mcap_dir": str(out_dir / "foxglove"), "gif": str(out_dir / "viz.gif"),
            "gif_frames": len(frames), "messages": counts}
