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
