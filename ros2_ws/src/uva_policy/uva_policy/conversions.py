"""Message <-> array conversions (cv_bridge for images), with clear errors for bad input."""
from __future__ import annotations

import cv2
import numpy as np
from cv_bridge import CvBridge, CvBridgeError
from sensor_msgs.msg import CompressedImage, Image

SUPPORTED_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")
_bridge = CvBridge()


class ImageError(ValueError):
    """An image message the policy cannot use (encoding, size, layout)."""


def stamp_to_sec(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def image_msg_type(topic: str):
    """image_transport's naming: '<base>/compressed' carries CompressedImage (JPEG/PNG), so a
    camera's compressed stream is used by naming it in `image_topics`."""
    return CompressedImage if topic.rstrip("/").endswith("/compressed") else Image


def _decode_compressed(msg) -> np.ndarray:
    try:
        bgr = _bridge.compressed_imgmsg_to_cv2(msg, desired_encoding="passthrough")
    except (CvBridgeError, cv2.error, ValueError, TypeError) as e:
        raise ImageError(f"could not decode the '{msg.format}' compressed image: {e}") from e
    if bgr is None or bgr.ndim not in (2, 3) or min(bgr.shape[:2]) < 8:
        raise ImageError(f"could not decode the '{msg.format}' compressed image "
                         f"({len(msg.data)} bytes)")
    code = {2: cv2.COLOR_GRAY2RGB, 3: cv2.COLOR_BGR2RGB, 4: cv2.COLOR_BGRA2RGB}
    channels = 2 if bgr.ndim == 2 else bgr.shape[2]
    if channels not in code:
        raise ImageError(f"compressed image with {channels} channels")
    return np.ascontiguousarray(cv2.cvtColor(bgr, code[channels]))


def image_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8, any size) or CompressedImage
    (JPEG/PNG, colour or grey) -> (H, W, 3) uint8 RGB."""
    if isinstance(msg, CompressedImage):
        return _decode_compressed(msg)
    if msg.encoding not in SUPPORTED_ENCODINGS:
        raise ImageError(f"unsupported encoding '{msg.encoding}' (supported: {SUPPORTED_ENCODINGS})")
    channels = {"mono8": 1, "rgba8": 4, "bgra8": 4}.get(msg.encoding, 3)
    if msg.height < 8 or msg.width < 8 or msg.step < msg.width * channels \
            or len(msg.data) < msg.step * msg.height:
        raise ImageError(f"malformed image {msg.width}x{msg.height} step {msg.step} "
                         f"with {len(msg.data)} bytes")
    try:
        return np.ascontiguousarray(_bridge.imgmsg_to_cv2(msg, desired_encoding="rgb8"))
    except CvBridgeError as e:
        raise ImageError(f"cv_bridge could not convert the image: {e}") from e


def rgb_to_image(rgb: np.ndarray, stamp=None, frame_id: str = ""):
    msg = _bridge.cv2_to_imgmsg(np.ascontiguousarray(rgb, dtype=np.uint8), encoding="rgb8")
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    return msg


def joint_positions(msg, names: list[str]) -> np.ndarray:
    """Positions of `names` from a JointState (any order, extra joints ignored); ValueError for
    an inconsistent reading (uva.control.select_joints: lengths, repeated or missing names,
    non-finite values)."""
    from uva.control import select_joints
    return select_joints(msg.name, msg.position, names)


def checkpoint_cameras(cfg) -> list[str]:
    """The checkpoint's camera names; a config from before cameras were named is one "scene"."""
    return list(getattr(cfg, "cameras", None) or ["scene"])


def model_inputs(aligned, cfg) -> dict:
    """Aligned history -> predict_action/predict_video input. A one-camera checkpoint gets
    {"image": (F, S, S, 3), "state"}; several cameras get {"images": {name: (F, S, S, 3)},
    "state"}, each camera resized to cfg.image_size on its own and matched by name."""
    from uva.images import resize
    names = checkpoint_cameras(cfg)
    index = {name: k for k, name in enumerate(aligned.cameras)}
    missing = [n for n in names if n not in index]
    if missing:
        raise ValueError(f"no stream for the checkpoint's cameras {missing}")
    frames = {n: np.stack([resize(cams[index[n]], cfg.image_size) for cams in aligned.images])
              for n in names}
    if len(names) == 1:
        return {"image": frames[names[0]], "state": aligned.states}
    return {"images": frames, "state": aligned.states}


def trajectory_message(arm: np.ndarray, joint_names: list[str], start: float, now: float,
                       dt: float, current: np.ndarray, max_velocity) -> tuple[object, float]:
    """Arm steps (T, n) -> (trajectory_msgs/JointTrajectory, slow-down factor): step j due at
    start + j*dt, the first at least one period after `now` (a chunk planned too long ago is
    shifted later), velocities consistent with the positions and zero at the end
    (uva.trajectory.chunk_velocities), strictly increasing times as JointTrajectoryController
    requires. A path from the measured `current` (where the controller starts it, at rest)
    faster than `max_velocity` is stretched in time until it is not (factor > 1).

    The header stamp is zero: the controller starts the trajectory when it receives it. Stamped
    `now`, a trajectory delivered late (a loaded machine, a busy network) would have its first
    points in the past, and the controller would jump to where it is by then."""
    from builtin_interfaces.msg import Duration
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
    from uva.trajectory import chunk_velocities, slow_to_limit
    traj = JointTrajectory()  # header.stamp 0: time_from_start counts from its receipt
    traj.joint_names = list(joint_names)
    times = start - now + dt * np.arange(len(arm))
    times += max(dt - times[0], 0.0)
    times, velocities, factor = slow_to_limit(times, arm, chunk_velocities(times, arm), current,
                                              max_velocity)
    for q, v, offset in zip(arm, velocities, times):
        pt = JointTrajectoryPoint()
        pt.positions = [float(x) for x in q]
        pt.velocities = [float(x) for x in v]
        pt.time_from_start = Duration(sec=int(offset), nanosec=int((offset % 1) * 1e9))
        traj.points.append(pt)
    return traj, factor


def chunk_message(steps: np.ndarray, first: int, obs_stamp: float, joint_names: list[str],
                  dt: float, action_dim: int):
    """The whole chunk (arm + gripper, after the safety filter) -> uva_msgs/ActionChunk stamped
    with its observation, for monitoring, the video node and replay evaluation."""
    from rclpy.time import Time
    from uva_msgs.msg import ActionChunk
    msg = ActionChunk()
    msg.header.stamp = Time(seconds=obs_stamp).to_msg()
    msg.joint_names = list(joint_names)
    msg.dt = float(dt)
    msg.horizon = int(len(steps))
    msg.action_dim = int(action_dim)
    msg.data = steps.astype(np.float32).ravel().tolist()
    msg.first_step = int(first)
    return msg
