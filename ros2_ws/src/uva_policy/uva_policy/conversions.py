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
    """Positions of `names` from a JointState (any order, extra joints ignored)."""
    if len(msg.position) != len(msg.name):
        raise ValueError(f"{len(msg.name)} names but {len(msg.position)} positions")
    index = {n: i for i, n in enumerate(msg.name)}
    missing = [n for n in names if n not in index]
    if missing:
        raise ValueError(f"missing joints {missing} (got {list(msg.name)})")
    q = np.array([msg.position[index[n]] for n in names], dtype=np.float64)
    if not np.isfinite(q).all():
        bad = [n for n, v in zip(names, q) if not np.isfinite(v)]
        raise ValueError(f"non-finite positions for {bad}")
    return q


def model_frames(aligned, image_size: int) -> np.ndarray:
    """Aligned history (per frame: per-camera images) -> (F, S, S, 3) model input."""
    from uva.vae import resize
    return np.stack([resize(tile_cameras(cams), image_size) for cams in aligned.images])


def tile_cameras(frames: list[np.ndarray]) -> np.ndarray:
    """Several cameras -> one frame side by side (heights matched), the model's single input."""
    if len(frames) == 1:
        return frames[0]
    import cv2
    h = min(f.shape[0] for f in frames)
    resized = [f if f.shape[0] == h else cv2.resize(f, (int(f.shape[1] * h / f.shape[0]), h))
               for f in frames]
    return np.concatenate(resized, axis=1)
