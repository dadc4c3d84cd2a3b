"""The pinned stack: one OpenCV distribution (gym-pusht would pull a second), cv_bridge works."""
from __future__ import annotations

import importlib.metadata as md

import numpy as np


def test_single_opencv_distribution_below_5():
    import cv2
    installed = {d.metadata["Name"].lower() for d in md.distributions()}
    assert len(installed & {"opencv-python", "opencv-python-headless", "opencv-contrib-python"}) == 1
    assert int(cv2.__version__.split(".")[0]) == 4
    assert int(np.__version__.split(".")[1]) < 3 or int(np.__version__.split(".")[0]) < 2


def test_cv_bridge_roundtrip_and_encodings():
    import pytest
    pytest.importorskip("rclpy")
    from uva_policy.conversions import ImageError, image_to_rgb, rgb_to_image
    rgb = np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    msg = rgb_to_image(rgb)
    assert np.array_equal(image_to_rgb(msg), rgb)
    msg.encoding, msg.data = "bgr8", rgb[..., ::-1].tobytes()
    assert np.array_equal(image_to_rgb(msg), rgb)
    msg.encoding = "32FC1"
    with pytest.raises(ImageError, match="unsupported encoding"):
        image_to_rgb(msg)


def test_compressed_images_decode_and_garbage_is_a_clear_error():
    import cv2
    import pytest
    pytest.importorskip("rclpy")
    from sensor_msgs.msg import CompressedImage, Image
    from uva_policy.conversions import ImageError, image_msg_type, image_to_rgb
    rgb = np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    png = CompressedImage(format="png", data=cv2.imencode(".png", rgb[..., ::-1])[1].tobytes())
    assert np.array_equal(image_to_rgb(png), rgb)  # PNG is lossless: exact colours, RGB order
    grey = CompressedImage(format="png", data=cv2.imencode(".png", rgb[..., 0])[1].tobytes())
    assert np.array_equal(image_to_rgb(grey), np.repeat(rgb[..., :1], 3, axis=2))
    yy, xx = np.mgrid[0:30, 0:40]
    smooth = np.stack([xx * 6, yy * 8, 255 - xx * 6], axis=2).astype(np.uint8)
    jpeg = CompressedImage(format="jpeg", data=cv2.imencode(".jpg", smooth[..., ::-1])[1].tobytes())
    assert np.abs(image_to_rgb(jpeg).astype(int) - smooth).mean() < 4  # lossy, same picture
    for junk in (b"not an image at all", b""):
        with pytest.raises(ImageError, match="could not decode"):
            image_to_rgb(CompressedImage(format="jpeg", data=junk))
    assert image_msg_type("/camera/color/image_raw/compressed") is CompressedImage
    assert image_msg_type("/camera/color/image_raw") is Image
