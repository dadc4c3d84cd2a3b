"""The replay-buffer format on disk: one camera (`img`) or several (`img_<name>`), round trips,
old one-camera buffers, and what read/write refuse."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import zarr

from uva.data import DatasetError, ReplayBuffer, read_replay_buffer, write_replay_buffer


def _episode(t: int, seed: int, cameras: dict[str, tuple[int, int]] | None = None, one=None):
    rng = np.random.default_rng(seed)
    ep = {"state": rng.normal(size=(t, 8)).astype(np.float32),
          "action": rng.normal(size=(t, 8)).astype(np.float32)}
    if one is not None:
        ep["img"] = rng.integers(0, 256, (t, *one, 3), dtype=np.uint8)
    else:
        ep["images"] = {name: rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8)
                        for name, (h, w) in cameras.items()}
    return ep


def test_multi_camera_round_trip_keeps_order_sizes_and_frames(tmp_path):
    cams = {"wrist": (48, 64), "front": (30, 40)}  # non-square, different per camera, not sorted
    eps = [_episode(7, 0, cams), _episode(5, 1, cams)]
    write_replay_buffer(tmp_path / "b.zarr", eps, {"env": "x"})
    buf = read_replay_buffer(tmp_path / "b.zarr")
    assert buf.cameras == ["wrist", "front"] and buf.attrs["cameras"] == ["wrist", "front"]
    root = zarr.open_group(str(tmp_path / "b.zarr"), mode="r")
    assert "img_wrist" in root and "img_front" in root and "img" not in root
    assert list(buf.episode_ends) == [7, 12]
    for name in cams:
        assert np.array_equal(buf.images[name], np.concatenate([e["images"][name] for e in eps]))
    assert buf.img is buf.images["wrist"]  # the first camera
    assert np.array_equal(buf.state, np.concatenate([e["state"] for e in eps]))
    assert np.array_equal(buf.action, np.concatenate([e["action"] for e in eps]))


def test_one_camera_stays_the_img_array_and_old_buffers_read_as_scene(tmp_path):
    write_replay_buffer(tmp_path / "one.zarr", [_episode(6, 0, {"wrist": (16, 20)})], {})
    root = zarr.open_group(str(tmp_path / "one.zarr"), mode="r")
    assert "img" in root and "img_wrist" not in root
    buf = read_replay_buffer(tmp_path / "one.zarr")
    assert buf.cameras == ["wrist"] and buf.img.shape == (6, 16, 20, 3)
    # the plain `img` form, as `collect` writes it, with no camera name given
    ep = _episode(4, 2, one=(12, 12))
    write_replay_buffer(tmp_path / "plain.zarr", [ep], {"env": "pusht"})
    buf = read_replay_buffer(tmp_path / "plain.zarr")
    assert buf.cameras == ["scene"] and np.array_equal(buf.img, ep["img"])
    # a buffer written before cameras existed: no attrs "cameras" at all
    root = zarr.open_group(str(tmp_path / "plain.zarr"), mode="a")
    del root.attrs["cameras"]
    assert read_replay_buffer(tmp_path / "plain.zarr").cameras == ["scene"]
    # old code that builds or replaces `img` keeps working
    old = ReplayBuffer(ep["img"], ep["state"], ep["action"], np.array([4]), {})
    assert old.cameras == ["scene"]
    more = dataclasses.replace(old, img=np.concatenate([ep["img"], ep["img"]]))
    assert len(more.img) == 8 and more.cameras == ["scene"]


def test_write_refuses_inconsistent_cameras_and_frames(tmp_path):
    a = _episode(5, 0, {"front": (16, 16), "wrist": (8, 8)})
    with pytest.raises(DatasetError, match="episode 1: cameras"):
        write_replay_buffer(tmp_path / "x.zarr", [a, _episode(5, 1, {"front": (16, 16)})], {})
    with pytest.raises(DatasetError, match="episode 1: camera 'wrist' frames are"):
        write_replay_buffer(tmp_path / "x.zarr", [a, _episode(5, 1, {"front": (16, 16),
                                                                      "wrist": (9, 8)})], {})
    short = _episode(5, 2, {"front": (16, 16), "wrist": (8, 8)})
    short["images"]["wrist"] = short["images"]["wrist"][:4]
    with pytest.raises(DatasetError, match="camera 'wrist' has 4 frames for 5 steps"):
        write_replay_buffer(tmp_path / "x.zarr", [short], {})
    floats = _episode(5, 3, {"front": (16, 16)})
    floats["images"]["front"] = floats["images"]["front"].astype(np.float32)
    with pytest.raises(DatasetError, match="uint8"):
        write_replay_buffer(tmp_path / "x.zarr", [floats], {})
    with pytest.raises(DatasetError, match="zero-size"):
        write_replay_buffer(tmp_path / "x.zarr", [_episode(5, 4, {"front": (0, 16)})], {})
    with pytest.raises(DatasetError, match="camera name"):
        write_replay_buffer(tmp_path / "x.zarr", [_episode(5, 5, {"a/b": (4, 4)})], {})
    assert not (tmp_path / "x.zarr").exists() and not (tmp_path / "x.zarr.partial").exists()


def test_read_validates_every_camera(tmp_path):
    cams = {"front": (16, 16), "wrist": (8, 8)}
    write_replay_buffer(tmp_path / "b.zarr", [_episode(6, 0, cams)], {})
    root = zarr.open_group(str(tmp_path / "b.zarr"), mode="a")
    root.create_array("img_wrist", shape=(5, 8, 8, 3), dtype=np.uint8, overwrite=True)
    with pytest.raises(DatasetError, match="camera 'wrist' has 5 frames for 6 steps"):
        read_replay_buffer(tmp_path / "b.zarr")
    root.create_array("img_wrist", shape=(6, 8, 8), dtype=np.uint8, overwrite=True)
    with pytest.raises(DatasetError, match="camera 'wrist' frames must be"):
        read_replay_buffer(tmp_path / "b.zarr")
    del root["img_wrist"]
    with pytest.raises(DatasetError, match=r"arrays \['img_wrist'\] are missing"):
        read_replay_buffer(tmp_path / "b.zarr")
