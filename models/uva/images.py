"""Image operations, ROS-free: pixel conversion of camera messages (sensor_msgs/Image in the
encodings the policy node accepts, and sensor_msgs/CompressedImage (JPEG/PNG) -> (H, W, 3) uint8
RGB; only the message fields are read, so rosbags' deserialized messages and rclpy's both work),
resizing frames to the model's input, and writing frames as an animated GIF."""
from __future__ import annotations

import numpy as np

SUPPORTED_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")
_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}


class ImageDecodeError(ValueError):
    """An image message that cannot be turned into RGB pixels."""


def is_compressed(msgtype: str) -> bool:
    return msgtype.endswith("CompressedImage")


def image_size(msg, msgtype: str) -> tuple[int, int] | None:
    """(height, width) from a raw Image's header fields; None for a compressed one (its size is
    known only after decoding)."""
    return None if is_compressed(msgtype) else (int(msg.height), int(msg.width))


def raw_to_rgb(msg) -> np.ndarray:
    ch = _CHANNELS.get(msg.encoding)
    if ch is None:
        raise ImageDecodeError(f"unsupported encoding '{msg.encoding}' "
                               f"(supported: {SUPPORTED_ENCODINGS})")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.frombuffer(memoryview(msg.data), np.uint8) if not isinstance(msg.data, np.ndarray) \
        else msg.data.astype(np.uint8, copy=False).ravel()
    if h <= 0 or w <= 0:
        raise ImageDecodeError(f"zero-size image {w}x{h}")
    if step < w * ch or data.size < step * h:
        raise ImageDecodeError(f"malformed image {w}x{h} '{msg.encoding}' step {step} with "
                               f"{data.size} bytes")
    img = data[:step * h].reshape(h, step)[:, :w * ch].reshape(h, w, ch)
    if ch == 1:
        return np.repeat(img, 3, axis=2)
    if msg.encoding.startswith("bgr"):
        img = img[..., [2, 1, 0]]
    return np.ascontiguousarray(img[..., :3])


def compressed_to_rgb(msg) -> np.ndarray:
    import cv2
    buf = np.frombuffer(memoryview(msg.data), np.uint8) if not isinstance(msg.data, np.ndarray) \
        else msg.data.astype(np.uint8, copy=False).ravel()
    arr = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
    if arr is None or arr.size == 0:
        raise ImageDecodeError(f"could not decode a '{msg.format}' compressed image "
                               f"({buf.size} bytes)")
    if arr.dtype != np.uint8:
        raise ImageDecodeError(f"compressed image decodes to {arr.dtype}, not 8-bit")
    if arr.ndim == 2:
        return np.ascontiguousarray(cv2.cvtColor(arr, cv2.COLOR_GRAY2RGB))
    code = {3: cv2.COLOR_BGR2RGB, 4: cv2.COLOR_BGRA2RGB}.get(arr.shape[2])
    if code is None:
        raise ImageDecodeError(f"compressed image with {arr.shape[2]} channels")
    return np.ascontiguousarray(cv2.cvtColor(arr, code))


def message_to_rgb(msg, msgtype: str) -> np.ndarray:
    """Image or CompressedImage message -> (H, W, 3) uint8 RGB."""
    return compressed_to_rgb(msg) if is_compressed(msgtype) else raw_to_rgb(msg)


def to_training_size(rgb: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop to a square (the shorter side), then area-resize to size x size: the same
    pixels at every scale, no stretching of a 4:3 camera."""
    import cv2
    h, w = rgb.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    square = rgb[top:top + s, left:left + s]
    if s == size:
        return np.ascontiguousarray(square)
    return cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA)


def resize(image, size: int):
    """Area-resize an RGB uint8 frame to size x size (the model's input)."""
    if image.shape[:2] == (size, size):
        return image
    import cv2
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def write_gif(path, frames: list[np.ndarray], fps: float = 10.0, upscale: int = 3) -> None:
    """Animated GIF, one image per frame (pixel-exact upscaling so small frames stay readable)."""
    import imageio.v2 as imageio
    from PIL import Image
    if upscale > 1:
        frames = [np.asarray(Image.fromarray(f).resize((f.shape[1] * upscale, f.shape[0] * upscale),
                                                       Image.NEAREST)) for f in frames]
    imageio.mimsave(path, frames, duration=1000 / fps, loop=0)
