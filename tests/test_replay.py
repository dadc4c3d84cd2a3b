"""`uva replay-eval` offline on bags written here with rosbags directly (not by our recorder)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from ros_helpers import PANDA_JOINTS
from uva.cli import main as uva_main

STORE = get_typestore(Stores.ROS2_JAZZY)
T = STORE.types
DT = 0.1
N = 50
COMPRESSED_TOPIC = "/camera/color/image_raw/compressed"
BASE_NS = 1_700_000_000 * 10**9


def q_at(t):
    """Known joint motion: each joint ramps linearly at its own rate."""
    rates = np.linspace(-0.3, 0.3, 8)
    rates[7] = 0.002
    return np.array(HOME_Q) + rates * t


HOME_Q = [0.0, -0.3, 0.0, -2.2, 0.0, 2.0, 0.785, 0.02]


def frames(n):
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (n, 64, 64, 3), dtype=np.uint8)


def header(ns):
    return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9), frame_id="")


WRIST_TOPIC = "/wrist/color/image_raw"


def wrist_frames(n):
    return np.random.default_rng(1).integers(0, 255, (n, 64, 64, 3), dtype=np.uint8)


def write_bag(path: Path, joint_names=None, with_camera=True, storage=StoragePlugin.MCAP,
              compressed=False, wrist=False):
    """compressed: the camera as a PNG CompressedImage stream on '<topic>/compressed'; wrist: a
    second camera (rgb8, its own frames) on WRIST_TOPIC, stamped like the first."""
    import cv2
    imgs = frames(N)
    wrist_imgs = wrist_frames(N)
    names = joint_names or (["extra_joint"] + PANDA_JOINTS[::-1])  # extra joint, reversed order
    with Writer(path, version=9, storage_plugin=storage) as w:
        if with_camera:
            cam = (w.add_connection(COMPRESSED_TOPIC, "sensor_msgs/msg/CompressedImage", typestore=STORE)
                   if compressed else
                   w.add_connection("/camera/color/image_raw", "sensor_msgs/msg/Image", typestore=STORE))
        js = w.add_connection("/joint_states", "sensor_msgs/msg/JointState", typestore=STORE)
        if wrist:
            wc = w.add_connection(WRIST_TOPIC, "sensor_msgs/msg/Image", typestore=STORE)
        other = w.add_connection("/rosout_like", "std_msgs/msg/String", typestore=STORE)
        for k in range(N):
            ns = BASE_NS + int(round(k * DT * 1e9))
            q = q_at(k * DT)
            by_name = dict(zip(PANDA_JOINTS, q))
            pos = np.array([by_name.get(n, 9.0) for n in names])
            msg = T["sensor_msgs/msg/JointState"](header=header(ns), name=names, position=pos,
                                                 velocity=np.zeros(0), effort=np.zeros(0))
            w.write(js, ns, STORE.serialize_cdr(msg, js.msgtype))
            if with_camera:
                bgr = imgs[k][..., ::-1]
                if compressed:
                    png = cv2.imencode(".png", np.ascontiguousarray(bgr))[1].ravel()
                    im = T["sensor_msgs/msg/CompressedImage"](header=header(ns), format="png", data=png)
                else:
                    im = T["sensor_msgs/msg/Image"](header=header(ns), height=64, width=64, encoding="bgr8",
                                                   is_bigendian=0, step=192,
                                                   data=np.ascontiguousarray(bgr).ravel())
                w.write(cam, ns, STORE.serialize_cdr(im, cam.msgtype))
            if wrist:
                im = T["sensor_msgs/msg/Image"](header=header(ns), height=64, width=64, encoding="rgb8",
                                               is_bigendian=0, step=192,
                                               data=np.ascontiguousarray(wrist_imgs[k]).ravel())
                w.write(wc, ns, STORE.serialize_cdr(im, wc.msgtype))
            w.write(other, ns, STORE.serialize_cdr(T["std_msgs/msg/String"](data="x"), other.msgtype))
    return imgs


@pytest.fixture
def ckpt(panda_ckpt):
    return panda_ckpt


@pytest.mark.parametrize("storage", [StoragePlugin.MCAP, StoragePlugin.SQLITE3])
def test_offline_metrics_match_hand_computation(tmp_path, ckpt, storage):
    from uva import load_policy
    bag = tmp_path / "bag"
    imgs = write_bag(bag, storage=storage)
    out = tmp_path / "report"
    assert uva_main(["replay-eval", "--bag", str(bag), "--ckpt", str(ckpt), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    # by hand: ticks every n_action_steps from the first full history, frames at stride 4 steps
    policy = load_policy(ckpt)
    cfg = policy.cfg
    stride = cfg.actions_per_frame
    first = (cfg.n_frames - 1) * stride
    last = N - 1 - cfg.horizon
    errs = []
    for k, step in enumerate(range(first, last + 1, cfg.n_action_steps)):
        hist = [step - (cfg.n_frames - 1 - i) * stride for i in range(cfg.n_frames)]
        obs = {"image": imgs[hist], "state": np.stack([q_at(h * DT) for h in hist])}
        pred = policy.predict_action(obs, seed=k)
        actual = np.stack([q_at((step + i + 1) * DT) for i in range(cfg.horizon)])
        errs.append(pred - actual)
    errs = np.stack(errs)
    holds = np.stack([np.stack([q_at(step * DT)] * cfg.horizon)
                      - np.stack([q_at((step + i + 1) * DT) for i in range(cfg.horizon)])
                      for step in range(first, last + 1, cfg.n_action_steps)])
    assert report["evaluated"] == len(errs) and report["skipped_unaligned"] == 0
    assert report["hold_last_mae"] == pytest.approx(float(np.abs(holds).mean()), abs=1e-6)
    assert report["cameras"] == ["scene"]
    assert report["mae"] == pytest.approx(float(np.abs(errs).mean()), abs=1e-6)
    assert report["per_joint_mae"]["fr3_joint3"] == pytest.approx(float(np.abs(errs[..., 2]).mean()), abs=1e-6)
    assert np.allclose(report["mae_vs_horizon_step"], np.abs(errs).mean((0, 2)), atol=1e-6)
    assert report["message_counts"] == {"/camera/color/image_raw": N, "/joint_states": N}
    assert report["complete"] and 0 <= report["gripper_accuracy"] <= 1
    for f in ("error_vs_horizon.png", "joint_traces.png", "report.md"):
        assert (out / f).stat().st_size > 100


@pytest.fixture(scope="module")
def two_camera_ckpt(tmp_path_factory):
    """A tiny random-init checkpoint with two cameras, scene and wrist, and the Panda's ranges."""
    import torch
    from ros_helpers import PANDA_LOWER, PANDA_UPPER
    from conftest import TINY
    from uva import UVAConfig, UVAModel
    from uva.checkpoint import save_checkpoint
    from uva.normalizer import MinMaxNormalizer
    torch.manual_seed(0)
    cfg = UVAConfig(action_dim=8, proprio_dim=8, cameras=["scene", "wrist"], **TINY)
    path = tmp_path_factory.mktemp("two_cams") / "ckpt"
    norms = {k: MinMaxNormalizer(np.array(PANDA_LOWER), np.array(PANDA_UPPER))
             for k in ("action", "proprio")}
    save_checkpoint(path, UVAModel(cfg), cfg, norms)
    return path


@pytest.mark.parametrize("order", [("scene", "wrist"), ("wrist", "scene")])
def test_two_cameras_are_aligned_and_fed_by_name(tmp_path, two_camera_ckpt, order):
    """Every mapped camera goes through the same alignment; the checkpoint gets them by name,
    whatever order the topic map lists them in."""
    from uva import load_policy
    bag = tmp_path / "bag"
    imgs = write_bag(bag, wrist=True)
    wrist = wrist_frames(N)
    topics = {"scene": "/camera/color/image_raw", "wrist": WRIST_TOPIC}
    (tmp_path / "map.json").write_text(json.dumps({"cameras": {c: topics[c] for c in order}}))
    out = tmp_path / "report"
    assert uva_main(["replay-eval", "--bag", str(bag), "--ckpt", str(two_camera_ckpt),
                     "--topics", str(tmp_path / "map.json"), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    policy = load_policy(two_camera_ckpt)
    cfg = policy.cfg
    stride = cfg.actions_per_frame
    first = (cfg.n_frames - 1) * stride
    errs = []
    for k, step in enumerate(range(first, N - 1 - cfg.horizon + 1, cfg.n_action_steps)):
        hist = [step - (cfg.n_frames - 1 - i) * stride for i in range(cfg.n_frames)]
        obs = {"images": {"scene": imgs[hist], "wrist": wrist[hist]},
               "state": np.stack([q_at(h * DT) for h in hist])}
        actual = np.stack([q_at((step + i + 1) * DT) for i in range(cfg.horizon)])
        errs.append(policy.predict_action(obs, seed=k) - actual)
    errs = np.stack(errs)
    assert report["cameras"] == list(order)
    assert report["evaluated"] == len(errs) and report["skipped_unaligned"] == 0
    assert report["mae"] == pytest.approx(float(np.abs(errs).mean()), abs=1e-6)
    assert report["message_counts"] == {"/camera/color/image_raw": N, WRIST_TOPIC: N,
                                        "/joint_states": N}
    assert report["video_windows"] > 0 and np.isfinite(report["forward_dynamics_psnr_db"])
    assert np.isfinite(report["inverse_dynamics_mae"])


def test_camera_names_must_match_the_checkpoint(tmp_path, two_camera_ckpt, ckpt, capsys):
    bag = tmp_path / "bag"
    write_bag(bag, wrist=True)
    out = tmp_path / "report"

    def refused(checkpoint, cameras, *expected):
        (tmp_path / "map.json").write_text(json.dumps({"cameras": cameras}))
        assert uva_main(["replay-eval", "--bag", str(bag), "--ckpt", str(checkpoint), "--topics",
                         str(tmp_path / "map.json"), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        for e in expected:
            assert e in err, err
        assert not out.exists()

    # one camera for a two-camera checkpoint, a wrongly named one, and two for a one-camera file
    refused(two_camera_ckpt, {"scene": "/camera/color/image_raw"}, "missing ['wrist']",
            str(two_camera_ckpt))
    refused(two_camera_ckpt, {"scene": "/camera/color/image_raw", "hand": WRIST_TOPIC},
            "missing ['wrist']", "unknown ['hand']")
    refused(ckpt, {"scene": "/camera/color/image_raw", "wrist": WRIST_TOPIC}, "unknown ['wrist']")
    refused(ckpt, {"front": "/camera/color/image_raw"}, "missing ['scene']", "unknown ['front']")
    # a mapped topic that is not in the bag is named
    (tmp_path / "map.json").write_text(json.dumps({"cameras": {"scene": "/camera/color/image_raw",
                                                               "wrist": "/nope"}}))
    assert uva_main(["replay-eval", "--bag", str(bag), "--ckpt", str(two_camera_ckpt), "--topics",
                     str(tmp_path / "map.json"), "--out", str(out)]) == 2
    assert "required topic '/nope'" in capsys.readouterr().err


def test_joints_must_be_the_ones_the_checkpoint_was_trained_on(tmp_path, ckpt, capsys):
    """A checkpoint trained on imported data records its joint names (config.json `dataset`)."""
    import shutil
    trained = tmp_path / "trained"
    shutil.copytree(ckpt, trained)
    meta = json.loads((trained / "config.json").read_text())
    meta["dataset"] = {"joint_names": [f"panda_joint{i}" for i in range(1, 9)]}
    (trained / "config.json").write_text(json.dumps(meta))
    bag = tmp_path / "bag"
    write_bag(bag)
    assert uva_main(["replay-eval", "--bag", str(bag), "--ckpt", str(trained), "--out",
                     str(tmp_path / "report")]) == 2
    err = capsys.readouterr().err
    assert "was trained on joints ['panda_joint1'" in err and "fr3_joint1" in err, err
    assert not (tmp_path / "report").exists()


def test_bad_bags_fail_clearly_without_a_report(tmp_path, ckpt, capsys):
    out = tmp_path / "report"
    args = lambda bag: ["replay-eval", "--bag", str(bag), "--ckpt", str(ckpt), "--out", str(out)]
    write_bag(tmp_path / "nocam", with_camera=False)
    assert uva_main(args(tmp_path / "nocam")) == 2
    assert "required topic '/camera/color/image_raw'" in capsys.readouterr().err
    write_bag(tmp_path / "names", joint_names=[f"panda_joint{i}" for i in range(1, 9)])
    assert uva_main(args(tmp_path / "names")) == 2
    assert "lacks joints" in capsys.readouterr().err
    write_bag(tmp_path / "trunc")
    mcap = next((tmp_path / "trunc").glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 3])
    assert uva_main(args(tmp_path / "trunc")) == 2
    assert "cannot read bag" in capsys.readouterr().err
    assert not out.exists() and not Path(str(out) + ".partial").exists()


# CI keeps the raw stream (compressed images into the node: test_ros_policy_node)
@pytest.mark.parametrize("compressed", [False, pytest.param(True, marks=pytest.mark.slow)],
                         ids=["raw", "compressed"])
def test_realtime_replay_loses_nothing_and_agrees_with_offline(tmp_path, ckpt, compressed):
    pytest.importorskip("rclpy")
    from ros_helpers import isolate_dds
    isolate_dds()
    bag = tmp_path / "bag"
    write_bag(bag, compressed=compressed)
    topic_map = tmp_path / "topics.json"
    topic_map.write_text(json.dumps({"image_topic": COMPRESSED_TOPIC if compressed
                                     else "/camera/color/image_raw"}))
    out = tmp_path / "rt"
    assert uva_main(["replay-eval", "--bag", str(bag), "--ckpt", str(ckpt), "--out", str(out),
                     "--mode", "realtime", "--topics", str(topic_map)]) == 0
    report = json.loads((out / "report.json").read_text())
    rt = report["realtime"]
    assert rt["messages_sent"] == {"image": N, "joints": N}
    assert rt["lost_messages"] == 0 and rt["messages_received"] == rt["messages_sent"]
    assert rt["scored_chunks"] >= 3
    # same policy, same bag: the node's chunks score like the offline rebuild (sampling noise
    # and the node's latency compensation make them differ a little)
    assert rt["mae"] == pytest.approx(report["mae"], rel=0.3)
    assert rt["predict_action_ms"]["p50"] > 0
