"""`uva dataset import --bag`: rosbag2 -> replay buffer, sampled with the policy node's alignment
code, and every kind of bad input refused with a clear error and nothing left at --out."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from uva.cli import main as uva_main
from uva.data import DatasetError, read_replay_buffer
from uva.dataset.bag_import import import_bags
from uva.rosbag import BagWriter
from uva.topic_map import TopicMapError, load_topic_map, topic_map_from_dict

T0 = 1_700_000_000 * 10**9
DT = 10**8  # 10 Hz
JOINTS = ["j1", "j2", "j3"]


def q_of(k: int) -> np.ndarray:
    return np.array([0.01 * k, -0.02 * k, 0.5 + 0.001 * k])


def frame_of(k: int, h: int = 16, w: int = 20) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = k % 256
    img[..., 1] = np.arange(w)[None] * 7 % 256
    img[..., 2] = (np.arange(h)[:, None] * 11 + k) % 256
    return img


def write_bag(path: Path, steps: int = 30, storage: str = "mcap", wrist: bool = False,
              command: str | None = "trajectory", jitter_ns: int = 0, t0: int = T0,
              frame=frame_of, stamps=None, gap_at: int | None = None, marker_at=()):
    """A demonstration as a lab records it: camera(s), joint states with an extra joint in
    another order, and the teleoperator's command after each observation."""
    rng = np.random.default_rng(0)
    with BagWriter(path, storage) as bag:
        T = bag.store.types
        bag.add_topic("/cam/image_raw", "sensor_msgs/msg/Image")
        bag.add_topic("/joint_states", "sensor_msgs/msg/JointState")
        if wrist:
            bag.add_topic("/wrist/image_raw", "sensor_msgs/msg/Image")
        if command == "trajectory":
            bag.add_topic("/cmd", "trajectory_msgs/msg/JointTrajectory")
        elif command == "joint_state":
            bag.add_topic("/cmd", "sensor_msgs/msg/JointState")
        if marker_at:
            bag.add_topic("/reset", "std_msgs/msg/Empty")
        t = t0
        for k in range(steps):
            if gap_at is not None and k == gap_at:
                t += 5 * 10**9
            if k in marker_at:
                bag.write("/reset", t - DT // 2, T["std_msgs/msg/Empty"](structure_needs_at_least_one_member=0))
            stamp = stamps[k] if stamps is not None else t + int(rng.integers(0, jitter_ns + 1))
            # receive (log) times advance steadily; header stamps are the driver's
            bag.write("/cam/image_raw", t, bag.image(stamp, frame(k)))
            if wrist:
                bag.write("/wrist/image_raw", t, bag.image(stamp, frame(k + 100, 8, 8), "bgr8"))
            names = ["extra", "j3", "j1", "j2"]
            q = q_of(k)
            bag.write("/joint_states", t, bag.joint_state(stamp, names, [9.0, q[2], q[0], q[1]]))
            cmd = q_of(k + 1) + 0.001  # where the teleoperator sends the arm next
            if command == "trajectory":
                msg = T["trajectory_msgs/msg/JointTrajectory"](
                    header=bag.header(0), joint_names=JOINTS,
                    points=[T["trajectory_msgs/msg/JointTrajectoryPoint"](
                        positions=cmd, velocities=np.zeros(0), accelerations=np.zeros(0),
                        effort=np.zeros(0), time_from_start=T["builtin_interfaces/msg/Duration"](sec=0, nanosec=0))])
                bag.write("/cmd", t + 4 * 10**7, msg)  # stamped 0 ("now"): its receive time counts
            elif command == "joint_state":
                bag.write("/cmd", t + 4 * 10**7, bag.joint_state(t + 4 * 10**7, JOINTS, cmd))
            t += DT
    return path


def tmap(**kw) -> dict:
    m = {"cameras": {"front": "/cam/image_raw"}, "joint_states_topic": "/joint_states",
         "joint_names": JOINTS, "action_topic": "/cmd", "control_rate_hz": 10.0}
    m.update(kw)
    return m


def test_import_samples_states_frames_and_commanded_labels(tmp_path):
    bag = write_bag(tmp_path / "ep0", jitter_ns=3 * 10**7, wrist=True)  # 30 ms of camera jitter
    tm = topic_map_from_dict(tmap(cameras={"front": "/cam/image_raw", "wrist": "/wrist/image_raw"}))
    summary = import_bags([bag], tm, tmp_path / "d.zarr")
    buf = read_replay_buffer(tmp_path / "d.zarr")
    assert buf.cameras == ["front", "wrist"] and buf.n_episodes == 1
    n = len(buf.action)
    assert n == 29 == summary["steps"]  # the last step has no next frame, so no label
    k = np.arange(n)
    assert np.allclose(buf.state, np.stack([q_of(i) for i in k]), atol=1e-6)  # matched by name
    assert np.allclose(buf.action, np.stack([q_of(i + 1) + 0.001 for i in k]), atol=1e-6)
    assert np.array_equal(buf.images["front"], np.stack([frame_of(i) for i in k]))
    assert np.array_equal(buf.images["wrist"], np.stack([frame_of(i + 100, 8, 8) for i in k]))
    assert buf.attrs["joint_names"] == JOINTS and buf.attrs["source"] == "rosbag2"
    assert buf.attrs["control_hz"] == 10.0 and buf.attrs["action_labels"] == "commanded"


def test_import_sqlite_joint_state_commands_and_next_state_labels(tmp_path):
    bag = write_bag(tmp_path / "ep0", storage="sqlite3", command="joint_state")
    import_bags([bag], topic_map_from_dict(tmap()), tmp_path / "a.zarr")
    a = read_replay_buffer(tmp_path / "a.zarr")
    assert np.allclose(a.action, np.stack([q_of(i + 1) + 0.001 for i in range(29)]), atol=1e-6)
    import_bags([bag], topic_map_from_dict(tmap(action_topic=None)), tmp_path / "b.zarr")
    b = read_replay_buffer(tmp_path / "b.zarr")
    assert np.allclose(b.action, b.state[1:].tolist() + [q_of(29)], atol=1e-6)
    assert b.attrs["action_labels"] == "next_measured_position"


def test_image_size_centre_crops_then_resizes(tmp_path):
    bag = write_bag(tmp_path / "ep0", steps=20)
    import_bags([bag], topic_map_from_dict(tmap()), tmp_path / "d.zarr", image_size_px=8)
    buf = read_replay_buffer(tmp_path / "d.zarr")
    import cv2
    want = cv2.resize(frame_of(3)[:, 2:18], (8, 8), interpolation=cv2.INTER_AREA)
    assert buf.img.shape[1:] == (8, 8, 3) and np.array_equal(buf.img[3], want)


def test_episodes_cut_by_bag_marker_and_gap_and_short_ones_skipped(tmp_path, caplog):
    bags = [write_bag(tmp_path / "a", steps=40, marker_at=(20,)),
            write_bag(tmp_path / "b", steps=45, gap_at=25, t0=T0 + 100 * 10**9),
            write_bag(tmp_path / "c", steps=10, t0=T0 + 200 * 10**9)]
    tm = topic_map_from_dict(tmap(episode_topic="/reset", episode_gap_s=1.0))
    summary = import_bags(bags, tm, tmp_path / "d.zarr")
    buf = read_replay_buffer(tmp_path / "d.zarr")
    # a: cut at the marker (19 + 19 labelled steps); b: cut at the 5 s gap (24 + 19); c: 9 < 16
    assert np.diff(np.concatenate([[0], buf.episode_ends])).tolist() == [19, 19, 24, 19]
    assert summary["skipped_short_episodes"] == [{"bag": str(bags[2]), "episode": 0, "steps": 9}]
    assert "skipped" in caplog.text
    with pytest.raises(DatasetError, match="no episode of at least 16 steps"):
        import_bags(bags[2:], tm, tmp_path / "none.zarr")
    assert not (tmp_path / "none.zarr").exists()


def test_a_stamp_near_zero_among_ros_time_costs_nothing(tmp_path):
    stamps = [T0 + k * DT for k in range(30)]
    stamps[0] = 10**6  # one frame stamped 1 ms after the epoch, as a driver that lost its clock
    bag = write_bag(tmp_path / "ep0", stamps=stamps)
    import_bags([bag], topic_map_from_dict(tmap()), tmp_path / "d.zarr")
    buf = read_replay_buffer(tmp_path / "d.zarr")
    assert buf.n_episodes == 1 and len(buf.action) == 28  # the odd first step cannot align


def _refused(tmp_path, capsys, bag_args, topics: dict | str, match: str):
    out = tmp_path / "out.zarr"
    if isinstance(topics, dict):
        (tmp_path / "map.yaml").write_text(json.dumps(topics))
        topics = str(tmp_path / "map.yaml")
    rc = uva_main(["dataset", "import", *sum((["--bag", str(b)] for b in bag_args), []),
                   "--topics", topics, "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and match in err, err
    assert not out.exists() and not Path(str(out) + ".partial").exists()
    return err


def test_bad_bags_are_refused_by_name(tmp_path, capsys):
    good = write_bag(tmp_path / "good", steps=20)
    err = _refused(tmp_path, capsys, [good], tmap(cameras={"front": "/other/image"}),
                   "mapped topics ['/other/image'] are not in the bag")
    assert str(good) in err
    empty = tmp_path / "empty"
    with BagWriter(empty) as bag:
        bag.add_topic("/cam/image_raw", "sensor_msgs/msg/Image")
        bag.add_topic("/joint_states", "sensor_msgs/msg/JointState")
        bag.add_topic("/cmd", "trajectory_msgs/msg/JointTrajectory")
    _refused(tmp_path, capsys, [empty], tmap(), "mapped topic /cam/image_raw has no messages")
    trunc = write_bag(tmp_path / "trunc", steps=20)
    mcap = next(trunc.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])
    _refused(tmp_path, capsys, [trunc], tmap(), "cannot read bag")
    stamps = [T0 + k * DT for k in range(20)]
    stamps[12] = stamps[10]
    back = write_bag(tmp_path / "back", steps=20, stamps=stamps)
    _refused(tmp_path, capsys, [back], tmap(), "/cam/image_raw message 12: timestamp goes backwards")
    sizes = write_bag(tmp_path / "sizes", steps=20,
                      frame=lambda k: frame_of(k, 16, 20 if k < 7 else 24))
    _refused(tmp_path, capsys, [sizes], tmap(),
             "/cam/image_raw message 7: image is 24x16 but the camera's earlier frames are 20x16")
    zero = write_bag(tmp_path / "zero", steps=20, frame=lambda k: np.zeros((0, 0, 3), np.uint8))
    _refused(tmp_path, capsys, [zero], tmap(), "zero-size image")
    _refused(tmp_path, capsys, [good], tmap(joint_names=["j1", "nope"]), "lacks joints ['nope']")
    # a good bag followed by a bad one: nothing is written at all
    _refused(tmp_path, capsys, [good, back], tmap(), "timestamp goes backwards")


def test_bad_topic_maps_are_refused(tmp_path, capsys):
    good = write_bag(tmp_path / "good", steps=20)
    _refused(tmp_path, capsys, [good], {**tmap(), "camera": "/x"}, "unknown keys ['camera']")
    _refused(tmp_path, capsys, [good], tmap(control_rate_hz=0), "control_rate_hz must be a positive")
    _refused(tmp_path, capsys, [good], {**tmap(), "image_topic": "/cam/image_raw"}, "not both")
    _refused(tmp_path, capsys, [good], str(tmp_path / "missing.yaml"), "topic map not found")
    (tmp_path / "broken.yaml").write_text("cameras: [unclosed")
    _refused(tmp_path, capsys, [good], str(tmp_path / "broken.yaml"), "cannot parse topic map")
    with pytest.raises(TopicMapError, match="joint_names must be"):
        topic_map_from_dict({"joint_names": "j1"})
    # the old one-camera key still works, for dataset import and replay-eval alike
    (tmp_path / "old.yaml").write_text("image_topic: /cam/image_raw\njoint_names: [j1, j2, j3]\n"
                                       "action_topic: /cmd\n")
    tm = load_topic_map(tmp_path / "old.yaml")
    assert tm.cameras == {"scene": "/cam/image_raw"} and tm.image_topic == "/cam/image_raw"
    assert uva_main(["dataset", "import", "--bag", str(good), "--topics", str(tmp_path / "old.yaml"),
                     "--out", str(tmp_path / "old.zarr")]) == 0
    assert read_replay_buffer(tmp_path / "old.zarr").cameras == ["scene"]
    # an existing --out is kept unless --overwrite
    assert uva_main(["dataset", "import", "--bag", str(good), "--topics", str(tmp_path / "old.yaml"),
                     "--out", str(tmp_path / "old.zarr")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert uva_main(["dataset", "import", "--bag", str(good), "--topics", str(tmp_path / "old.yaml"),
                     "--out", str(tmp_path / "old.zarr"), "--overwrite"]) == 0


def test_sample_on_camera_takes_every_frame_of_an_unsteady_camera(tmp_path):
    """A simulator that slows under load: frames 60 / 160 ms apart. The control clock sees what a
    10 Hz node would (some frames twice); sample_on: camera makes one step per frame."""
    periods = np.tile([6 * 10**7, 16 * 10**7], 15)[:29]
    stamps = (T0 + np.concatenate([[0], np.cumsum(periods)])).astype(np.int64).tolist()
    bag = write_bag(tmp_path / "ep0", stamps=stamps, command=None)
    tm = topic_map_from_dict(tmap(action_topic=None, sample_on="camera"))
    import_bags([bag], tm, tmp_path / "cam.zarr")
    cam = read_replay_buffer(tmp_path / "cam.zarr")
    assert np.allclose(cam.state, np.stack([q_of(k) for k in range(29)]), atol=1e-6)
    import_bags([bag], topic_map_from_dict(tmap(action_topic=None)), tmp_path / "clock.zarr")
    clock = read_replay_buffer(tmp_path / "clock.zarr")
    repeats = np.all(np.diff(clock.state, axis=0) == 0, axis=1).sum()
    assert len(clock.state) > 29 and repeats > 0  # 3.2 s at 10 Hz: frames seen twice
    with pytest.raises(TopicMapError, match="sample_on"):
        topic_map_from_dict(tmap(sample_on="frames"))
