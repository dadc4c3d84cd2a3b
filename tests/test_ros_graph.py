"""video_node, the what-if service and the simulated arm in closed loop, over real DDS."""
from __future__ import annotations

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from ros_helpers import (HOME, PANDA_JOINTS, PANDA_LOWER, PANDA_UPPER, answer_on_current_inputs,
                         isolate_dds, make_image, make_joints, matched_publisher,
                         refused_trajectories, spin, start_node, stop)

isolate_dds()


def test_label_strip_tiles_and_labels():
    from uva_policy.video_node import label_strip
    cur = np.full((16, 16, 3), 10, np.uint8)
    preds = np.stack([np.full((16, 16, 3), 100, np.uint8), np.full((16, 16, 3), 200, np.uint8)])
    strip = label_strip(cur, preds, [0.4, 0.8], scale=4)
    assert strip.shape == (64, 3 * 64, 3)
    # below the label band each tile keeps its own content, in order: now, +0.4s, +0.8s
    for k, value in enumerate([10, 100, 200]):
        assert (strip[20:, k * 64:(k + 1) * 64] == value).all()
    band = strip[:14]
    assert (band[:, :64] == [255, 255, 0]).all(-1).any()  # yellow "now" label on the real frame
    assert (band[:, 64:] == [255, 255, 255]).all(-1).any()  # white labels on predictions
    assert (band[:, 64:128] == [255, 255, 255]).all(-1).sum() > 5


def test_video_node_publishes_strip_and_answers_what_if(ros, panda_ckpt, tmp_path):
    from sensor_msgs.msg import Image, JointState
    from uva_msgs.msg import ActionChunk
    from uva_msgs.srv import PredictFuture
    node, executor = ros
    proc = start_node("uva_policy.video_node", "video_node",
                      {"checkpoint": str(panda_ckpt), "publish_rate_hz": 4.0, "autostart": True,
                       "max_obs_age_s": 5.0},
                      log_path=tmp_path / "video.log")
    img_pub = node.create_publisher(Image, "/camera/color/image_raw", 10)
    js_pub = node.create_publisher(JointState, "/joint_states", 10)
    chunk_pub = node.create_publisher(ActionChunk, "/uva/action_chunk", 10)
    strips = []
    sub = node.create_subscription(Image, "/uva/predicted_frames", strips.append, 10)
    client = node.create_client(PredictFuture, "/video_node/predict_future")
    try:
        chunk = ActionChunk()
        chunk.joint_names = PANDA_JOINTS
        chunk.horizon, chunk.action_dim, chunk.dt = 8, 8, 0.1
        chunk.data = np.tile(HOME, 8).astype(np.float32).tolist()
        end = time.time() + 60
        while time.time() < end and not strips:
            img_pub.publish(make_image(node, size=120))
            js_pub.publish(make_joints(node, HOME))
            chunk_pub.publish(chunk)
            executor.spin_once(timeout_sec=0.05)
        assert strips, (tmp_path / "video.log").read_text()[-2000:]
        s = strips[-1]
        assert s.encoding == "rgb8" and s.height == 128 and s.width == 3 * 128  # now + 2 frames
        assert client.wait_for_service(timeout_sec=10)

        def call(actions, horizon):
            req = PredictFuture.Request()
            req.actions, req.horizon, req.action_dim = actions, horizon, 8
            fut = client.call_async(req)
            end = time.time() + 30
            while time.time() < end and not fut.done():
                img_pub.publish(make_image(node, size=120))
                js_pub.publish(make_joints(node, HOME))
                executor.spin_once(timeout_sec=0.05)
            return fut.result()

        good = answer_on_current_inputs(lambda: call(np.tile(HOME, 8).astype(np.float32).tolist(), 8))
        assert good.success, good.message
        assert good.frames.width == 3 * 128 and len(good.seconds_ahead) == 2
        assert good.seconds_ahead[1] > good.seconds_ahead[0] > 0
        bad = call([0.0] * 5, 8)
        assert not bad.success and "actions must be" in bad.message
        # ~/reset: no strip from the old scene, though its frames are still fresh (max_obs_age_s 5)
        from std_msgs.msg import Empty
        matched_publisher(node, executor, Empty, "/video_node/reset").publish(Empty())
        log = tmp_path / "video.log"
        end = time.time() + 10  # the node has taken the reset (it says so), then what was in flight
        while time.time() < end and "observation history cleared" not in log.read_text():
            executor.spin_once(timeout_sec=0.05)
        spin(executor, 0.3)
        n = len(strips)
        spin(executor, 1.5)  # six ticks at 4 Hz
        assert len(strips) <= n + 1  # at most the one being predicted when the reset came
        assert proc.poll() is None
    finally:
        node.destroy_subscription(sub)
        stop(proc)


def test_closed_loop_sim_executes_policy_trajectories(ros, panda_ckpt, tmp_path):
    """Simulated arm + policy node: the arm follows the policy's trajectories over DDS, and the
    driver (which refuses what franka_ros2's controller refuses) accepts every one of them."""
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory
    node, executor = ros
    sim = start_node("uva_sim.sim_node", "franka_sim", {"first_seed": 7},
                     log_path=tmp_path / "sim.log")
    policy = start_node("uva_policy.policy_node", "policy_node",
                        {"checkpoint": str(panda_ckpt), "autostart": True,
                         "joint_lower_limits": PANDA_LOWER,
                         "joint_upper_limits": PANDA_UPPER, "max_joint_step": 0.1},
                        {"/uva/joint_trajectory": "/fr3_arm_controller/joint_trajectory"},
                        log_path=tmp_path / "policy.log")
    states, trajs = [], []
    subs = [node.create_subscription(JointState, "/joint_states", states.append, 50),
            node.create_subscription(JointTrajectory, "/fr3_arm_controller/joint_trajectory", trajs.append, 10)]
    try:
        start = time.time()
        end = start + 60
        # this process discovers the simulator on its own, which on a loaded machine can come
        # later than the policy node's discovery of it: wait for both streams
        while time.time() < end and (len(trajs) < 6 or len(states) < 20):
            executor.spin_once(timeout_sec=0.05)
        assert len(trajs) >= 6, (tmp_path / "policy.log").read_text()[-2000:]
        assert len(states) >= 20, (len(states), (tmp_path / "sim.log").read_text()[-2000:])
        first = np.array(states[0].position[:7])
        last = np.array(states[-1].position[:7])
        assert np.abs(last - first).max() > 0.05  # the arm moved under policy control
        commanded = np.array(trajs[-3].points[-1].positions)
        assert len(commanded) == 7 and np.all(np.isfinite(commanded))
        assert all(list(t.joint_names) == PANDA_JOINTS[:7] for t in trajs)
        malformed, deviation = refused_trajectories((tmp_path / "sim.log").read_text())
        assert not malformed, malformed
        assert len(deviation) <= 3 * int(time.time() - start > 12), deviation  # a reset at most
        assert sim.poll() is None and policy.poll() is None
    finally:
        for s in subs:
            node.destroy_subscription(s)
        stop(policy)
        stop(sim)
