"""policy_node over real DDS: well-formed trajectories, and every bad-input case holds safely."""
from __future__ import annotations

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from ros_helpers import (HOME, PANDA_JOINTS, PANDA_LOWER, PANDA_UPPER, isolate_dds, make_image,
                         make_joints, matched_publisher, spin, start_node, stop)

isolate_dds()


class Harness:
    def __init__(self, node, executor):
        from trajectory_msgs.msg import JointTrajectory
        from sensor_msgs.msg import Image, JointState
        from uva_msgs.msg import PolicyStatus
        self.node, self.executor = node, executor
        self.img_pub = node.create_publisher(Image, "/camera/color/image_raw", 10)
        self.js_pub = node.create_publisher(JointState, "/joint_states", 10)
        self.trajs, self.statuses = [], []
        self.subs = [node.create_subscription(JointTrajectory, "/uva/joint_trajectory", self.trajs.append, 10),
                     node.create_subscription(PolicyStatus, "/policy_node/status", self.statuses.append, 10)]

    def publish(self, image_kwargs=None, q=HOME, names=PANDA_JOINTS, stamp=None):
        self.img_pub.publish(make_image(self.node, stamp=stamp, **(image_kwargs or {})))
        self.js_pub.publish(make_joints(self.node, q, names, stamp=stamp))

    def run(self, seconds, **publish_kwargs):
        import time
        end = time.time() + seconds
        next_pub = 0.0
        while time.time() < end:
            if time.time() >= next_pub:
                self.publish(**publish_kwargs)
                next_pub = time.time() + 0.05
            self.executor.spin_once(timeout_sec=0.01)

    def wait_for(self, predicate, timeout, **publish_kwargs):
        import time
        end = time.time() + timeout
        while time.time() < end and not predicate():
            self.run(0.1, **publish_kwargs)
        return predicate()

    def close(self):
        for s in self.subs:
            self.node.destroy_subscription(s)
        self.node.destroy_publisher(self.img_pub)
        self.node.destroy_publisher(self.js_pub)


@pytest.fixture
def policy(ros, panda_ckpt, tmp_path):
    node, executor = ros
    proc = start_node("uva_policy.policy_node", "policy_node",
                      {"checkpoint": str(panda_ckpt), "autostart": True,
                       "joint_lower_limits": PANDA_LOWER,
                       "joint_upper_limits": PANDA_UPPER, "max_joint_step": 0.05,
                       "max_obs_age_s": 0.5}, log_path=tmp_path / "policy.log")
    h = Harness(node, executor)
    assert h.wait_for(lambda: len(h.statuses) > 0, 60), (tmp_path / "policy.log").read_text()
    yield h, proc
    h.close()
    stop(proc)


def test_trajectory_is_well_formed_and_safe(policy):
    h, proc = policy
    assert h.wait_for(lambda: len(h.trajs) >= 3, 30)
    for traj in h.trajs:
        assert list(traj.joint_names) == PANDA_JOINTS[:7]  # the arm only: the gripper is split off
        assert len(traj.points) >= 1
        times = [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in traj.points]
        assert all(b > a for a, b in zip(times, times[1:]))
        q = np.array([p.positions for p in traj.points])
        assert np.isfinite(q).all()
        assert (q >= np.array(PANDA_LOWER[:7]) - 1e-9).all() and (q <= np.array(PANDA_UPPER[:7]) + 1e-9).all()
        steps = np.abs(np.diff(np.vstack([HOME[:7], q]), axis=0))
        assert (steps <= 0.05 + 1e-6).all()  # max per-step change from the measured state
    # status is published on the control tick, so it may trail the last trajectory by a tick
    assert h.wait_for(lambda: h.statuses[-1].state == 0 and h.statuses[-1].chunks_published >= 3, 5)


BAD_INPUTS = {
    "nan_joints": (dict(q=[np.nan] + HOME[1:]), "non-finite"),
    "missing_joints": (dict(q=HOME[:7], names=PANDA_JOINTS[:7]), "missing joints"),
    "wrong_joint_names": (dict(names=[f"panda_joint{i}" for i in range(8)]), "missing joints"),
    "unsupported_encoding": (dict(image_kwargs=dict(encoding="16UC1")), "unsupported encoding"),
    "tiny_image": (dict(image_kwargs=dict(size=4)), "malformed image"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_holds_and_recovers(policy, case):
    h, proc = policy
    kwargs, reason = BAD_INPUTS[case]
    assert h.wait_for(lambda: len(h.trajs) >= 1, 30)  # running on good input first
    h.run(0.5, **kwargs)
    n_before = len(h.trajs)
    h.statuses.clear()
    h.run(1.5, **kwargs)
    assert len(h.trajs) <= n_before + 1  # at most one in-flight chunk from before the fault
    held = [s for s in h.statuses if s.state == 1]
    assert held and reason in held[-1].reason, [s.reason for s in h.statuses[-3:]]
    assert proc.poll() is None  # stayed alive
    n = len(h.trajs)
    assert h.wait_for(lambda: len(h.trajs) > n + 1, 20)  # resumes on good input
    assert h.wait_for(lambda: h.statuses[-1].state == 0, 5)


def test_stale_camera_holds(policy):
    h, proc = policy
    assert h.wait_for(lambda: len(h.trajs) >= 1, 30)
    from builtin_interfaces.msg import Time
    old = h.node.get_clock().now().nanoseconds * 1e-9 - 2.0
    h.statuses.clear()
    n = len(h.trajs)
    import time
    end = time.time() + 1.5
    while time.time() < end:
        h.img_pub.publish(make_image(h.node, stamp=Time(sec=int(old), nanosec=0)))
        h.js_pub.publish(make_joints(h.node, HOME))
        h.executor.spin_once(timeout_sec=0.05)
    held = [s for s in h.statuses if s.state == 1]
    assert held and ("stale" in held[-1].reason or "backwards" in held[-1].reason)
    assert len(h.trajs) <= n + 1
    assert proc.poll() is None


def test_timestamps_going_backwards_hold(policy):
    h, proc = policy
    assert h.wait_for(lambda: len(h.trajs) >= 1, 30)
    from builtin_interfaces.msg import Time
    h.statuses.clear()
    now = h.node.get_clock().now().nanoseconds * 1e-9
    import time
    for k in range(10):
        t = now - 0.1 * k  # each message older than the previous
        stamp = Time(sec=int(t), nanosec=int((t % 1) * 1e9))
        h.img_pub.publish(make_image(h.node, stamp=stamp))
        h.js_pub.publish(make_joints(h.node, HOME, stamp=stamp))
        end = time.time() + 0.1
        while time.time() < end:
            h.executor.spin_once(timeout_sec=0.02)
    assert any(s.state == 1 and "backwards" in s.reason for s in h.statuses), [s.reason for s in h.statuses]
    assert proc.poll() is None


def test_chunks_start_from_where_the_arm_is_now_not_where_the_camera_saw_it(ros, panda_ckpt,
                                                                            tmp_path):
    """A camera whose frames arrive 0.6 s after they were taken, while the arm moves at 0.4 rad/s:
    each trajectory's first point is within max_joint_step of the newest measured state, not of
    the state stamped with its frame (0.24 rad behind), which a controller would refuse and
    which would step the arm back."""
    from rclpy.time import Time
    from trajectory_msgs.msg import JointTrajectory
    from uva_policy.conversions import stamp_to_sec
    node, executor = ros
    proc = start_node("uva_policy.policy_node", "policy_node",
                      {"checkpoint": str(panda_ckpt), "autostart": True,
                       "joint_lower_limits": PANDA_LOWER, "joint_upper_limits": PANDA_UPPER,
                       "max_joint_step": 0.05, "max_obs_age_s": 1.5},
                      log_path=tmp_path / "policy.log")
    h = Harness(node, executor)
    speed, latency = 0.4, 0.6
    clock = lambda: node.get_clock().now().nanoseconds * 1e-9
    received = []  # (receipt time, trajectory): its header stamp is 0, "start on receipt"
    sub = node.create_subscription(JointTrajectory, "/uva/joint_trajectory",
                                   lambda m: received.append((clock(), m)), 10)
    try:
        assert h.wait_for(lambda: len(h.trajs) >= 1, 60), (tmp_path / "policy.log").read_text()
        t0 = clock()
        arm = lambda t: [HOME[0] + speed * max(t - t0, 0.0)] + HOME[1:]
        received.clear()
        end = t0 + 6.0
        while clock() < end:
            t = clock()
            h.js_pub.publish(make_joints(node, arm(t), stamp=Time(seconds=t).to_msg()))
            h.img_pub.publish(make_image(node, stamp=Time(seconds=t - latency).to_msg()))
            spin(executor, 0.05)
        late = [(t, tr) for t, tr in received if t > t0 + latency + 0.5]
        assert len(late) >= 3, (len(received), (tmp_path / "policy.log").read_text()[-2000:])
        for now, tr in late:
            assert stamp_to_sec(tr.header.stamp) == 0.0  # started on receipt
            first = np.array(tr.points[0].positions)
            # the newest joint state is at most one publish period (+ delivery) older than `now`
            gap = np.abs(first - np.array(arm(now)[:7]))
            assert gap.max() <= 0.05 + speed * 0.15, (gap, now - t0)
    finally:
        node.destroy_subscription(sub)
        h.close()
        stop(proc)


def test_trajectories_stay_within_the_joint_velocity_limit(ros, panda_ckpt, tmp_path):
    """A speed cap far below what max_joint_step allows (0.05 rad/s against 0.5): every
    trajectory, along the path the controller interpolates from the measured state at rest, stays
    under it, and its first point is at least one control period ahead."""
    from uva.trajectory import peak_velocity
    node, executor = ros
    proc = start_node("uva_policy.policy_node", "policy_node",
                      {"checkpoint": str(panda_ckpt), "autostart": True,
                       "joint_lower_limits": PANDA_LOWER, "joint_upper_limits": PANDA_UPPER,
                       "max_joint_step": 0.05, "max_joint_velocity": [0.05]},
                      log_path=tmp_path / "policy.log")
    h = Harness(node, executor)
    try:
        assert h.wait_for(lambda: len(h.trajs) >= 4, 60), (tmp_path / "policy.log").read_text()
        stretched = 0
        for tr in h.trajs:
            t = np.array([p.time_from_start.sec + p.time_from_start.nanosec * 1e-9
                          for p in tr.points])
            q = np.array([p.positions for p in tr.points])
            v = np.array([p.velocities for p in tr.points])
            assert t[0] >= 0.1 - 1e-6
            path = (np.concatenate([[0.0], t]), np.vstack([HOME[:7], q]),
                    np.vstack([np.zeros(7), v]))
            assert peak_velocity(*path).max() <= 0.05 * (1 + 1e-6)
            stretched += bool(t[-1] - t[0] > 0.1 * (len(t) - 1) + 1e-3)
        assert stretched > 0  # the cap bit: the chunks were slowed, not only within it already
    finally:
        h.close()
        stop(proc)


def test_missing_checkpoint_fails_configure_but_stays_alive(ros, tmp_path):
    """A checkpoint that is not there fails `configure` with an error naming the parameter (on
    /diagnostics and from ~/engage); the node stays alive, unconfigured, commanding nothing."""
    from diagnostic_msgs.msg import DiagnosticArray
    from std_srvs.srv import SetBool
    from uva_policy.diagnostics import parse
    node, executor = ros
    proc = start_node("uva_policy.policy_node", "policy_node",
                      {"checkpoint": str(tmp_path / "nowhere"), "autostart": True},
                      log_path=tmp_path / "p.log")
    h = Harness(node, executor)
    diags = []
    sub = node.create_subscription(DiagnosticArray, "/diagnostics",
                                   lambda m: diags.append(parse(m, "policy_node")), 10)
    client = node.create_client(SetBool, "/policy_node/engage")
    try:
        failed = lambda: [d for d in diags if d and d["state"] == "unconfigured"
                          and "configure failed" in d["hold_reason"]]
        assert h.wait_for(failed, 60), (tmp_path / "p.log").read_text()
        last = failed()[-1]
        assert "parameter 'checkpoint'" in last["hold_reason"] and "nowhere" in last["hold_reason"]
        assert client.wait_for_service(timeout_sec=10)
        fut = client.call_async(SetBool.Request(data=True))
        h.wait_for(fut.done, 20)
        assert not fut.result().success and "parameter 'checkpoint'" in fut.result().message
        assert not h.trajs and proc.poll() is None
    finally:
        node.destroy_subscription(sub)
        node.destroy_client(client)
        h.close()
        stop(proc)


def test_compressed_camera_topic_drives_the_policy_and_junk_holds(ros, panda_ckpt, tmp_path):
    import time

    import cv2
    from sensor_msgs.msg import CompressedImage
    node, executor = ros
    topic = "/camera/color/image_raw/compressed"  # image_transport's name for the JPEG/PNG stream
    proc = start_node("uva_policy.policy_node", "policy_node",
                      {"checkpoint": str(panda_ckpt), "image_topics": [topic], "autostart": True,
                       "joint_lower_limits": PANDA_LOWER, "joint_upper_limits": PANDA_UPPER},
                      log_path=tmp_path / "policy.log")
    h = Harness(node, executor)
    pub = node.create_publisher(CompressedImage, topic, 10)
    rgb = np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)
    png = cv2.imencode(".png", rgb)[1].tobytes()

    def run_until(predicate, timeout, data):
        end = time.time() + timeout
        while time.time() < end and not predicate():
            msg = CompressedImage(format="png", data=data)
            msg.header.stamp = node.get_clock().now().to_msg()
            pub.publish(msg)
            h.js_pub.publish(make_joints(node, HOME))
            t_next = time.time() + 0.05
            while time.time() < t_next:
                executor.spin_once(timeout_sec=0.01)
        return predicate()

    try:
        assert run_until(lambda: len(h.trajs) >= 2, 30, png), (tmp_path / "policy.log").read_text()
        run_until(lambda: False, 0.5, b"\x00junk")
        h.statuses.clear()
        n = len(h.trajs)
        run_until(lambda: False, 1.5, b"\x00junk")
        held = [s for s in h.statuses if s.state == 1]
        assert held and "could not decode" in held[-1].reason, [s.reason for s in h.statuses[-3:]]
        assert len(h.trajs) <= n + 1 and proc.poll() is None
        assert run_until(lambda: len(h.trajs) > n + 2, 20, png)  # resumes on good frames
    finally:
        node.destroy_publisher(pub)
        h.close()
        stop(proc)


def test_reset_forgets_the_observation_history(policy):
    """After ~/reset (a new episode) the node must not plan from frames of the old scene: it holds
    with empty buffers until fresh observations arrive, then runs again."""
    import time
    h, proc = policy
    assert h.wait_for(lambda: len(h.trajs) >= 2, 30)
    from std_msgs.msg import Empty
    reset_pub = matched_publisher(h.node, h.executor, Empty, "/policy_node/reset")
    h.statuses.clear()
    reset_pub.publish(Empty())
    # no new observations (nothing is published while waiting for the node's status)
    end = time.time() + 10
    while time.time() < end and not any(s.state == 1 and "no image received yet" in s.reason
                                        for s in h.statuses):
        h.executor.spin_once(timeout_sec=0.05)
    n = len(h.trajs)
    held = [s for s in h.statuses if s.state == 1]
    # without the reset the buffers would still hold fresh frames and the node would keep running
    assert held and "no image received yet" in held[-1].reason, [s.reason for s in h.statuses]
    spin(h.executor, 0.5)
    assert len(h.trajs) == n  # nothing planned from the forgotten history
    assert h.wait_for(lambda: len(h.trajs) > n + 1, 20)  # fresh observations: running again
    assert proc.poll() is None
    h.node.destroy_publisher(reset_pub)


def test_a_chunk_is_planned_when_its_frame_arrives_not_on_the_next_tick(policy):
    """A 7 Hz camera against the 10 Hz control timer walks through every phase of the tick: a
    policy that plans on the tick waits 0-100 ms (about 50 ms at the median) before inference;
    one that plans on the due frame's arrival waits for nothing. Measured inside the node: the
    trajectory's stamp (taken at publish) minus the stamp of the frame it was planned from,
    minus the inference time the node reports."""
    import time
    from uva_msgs.msg import ActionChunk
    from uva_policy.conversions import stamp_to_sec
    h, proc = policy
    chunks = []
    sub = h.node.create_subscription(ActionChunk, "/uva/action_chunk", chunks.append, 10)
    n0 = len(h.trajs)
    next_image = next_joints = time.time()
    end = time.time() + 12.0
    while time.time() < end and len(chunks) < 14:
        t = time.time()
        if t >= next_joints:
            h.js_pub.publish(make_joints(h.node, HOME))
            next_joints = t + 0.02
        if t >= next_image:
            stamp = h.node.get_clock().now().to_msg()
            h.js_pub.publish(make_joints(h.node, HOME, stamp=stamp))  # the frame's joint state
            h.img_pub.publish(make_image(h.node, stamp=stamp, seed=len(chunks)))
            next_image = t + 1 / 7
        h.executor.spin_once(timeout_sec=0.002)
    h.node.destroy_subscription(sub)
    by_obs = {stamp_to_sec(c.header.stamp): c for c in chunks}
    trajs = h.trajs[n0:]
    assert len(chunks) >= 8 and len(trajs) >= 8, (len(chunks), len(trajs))
    # trajectory i and chunk i come from the same inference (published back to back)
    delays = [stamp_to_sec(tr.header.stamp) - stamp_to_sec(c.header.stamp)
              for tr, c in zip(trajs[-len(chunks):], chunks)][2:]  # the first after a hold aside
    inference = [s.inference_latency_s for s in h.statuses[-40:] if s.inference_latency_s > 0]
    wait = np.median(delays) - np.median(inference)
    assert len(by_obs) == len(chunks)  # one chunk per planned frame
    assert wait < 0.025, (wait, np.round(delays, 3).tolist(), np.median(inference))


def test_history_frames_are_encoded_between_chunks(ros, panda_ckpt, tmp_path):
    """8 executed steps over 4 actions per frame: each chunk's older history frame arrived
    between chunks. The node encodes it then (reported on /diagnostics), so its inference
    encodes one frame, not two."""
    import time
    from diagnostic_msgs.msg import DiagnosticArray
    from uva_policy.diagnostics import parse
    node, executor = ros
    proc = start_node("uva_policy.policy_node", "policy_node",
                      {"checkpoint": str(panda_ckpt), "autostart": True, "n_action_steps": 8,
                       "joint_lower_limits": PANDA_LOWER, "joint_upper_limits": PANDA_UPPER,
                       "max_joint_step": 0.05, "max_obs_age_s": 0.5}, log_path=tmp_path / "p.log")
    h = Harness(node, executor)
    diags = []
    sub = node.create_subscription(DiagnosticArray, "/diagnostics",
                                   lambda m: diags.append(parse(m, "policy_node")), 10)
    try:
        assert h.wait_for(lambda: len(h.statuses) > 0, 60), (tmp_path / "p.log").read_text()
        end, frame, next_image, seen = time.time() + 12.0, 0, time.time(), []
        while time.time() < end:
            t = time.time()
            if t >= next_image:  # a 10 Hz camera, every frame different, its joint state first
                stamp = node.get_clock().now().to_msg()
                h.js_pub.publish(make_joints(node, HOME, stamp=stamp))
                h.img_pub.publish(make_image(node, stamp=stamp, seed=frame))
                frame, next_image = frame + 1, t + 0.1
            executor.spin_once(timeout_sec=0.005)
        seen = [d["frames_encoded_in_last_inference"] for d in diags
                if d and "frames_encoded_in_last_inference" in d]
        ahead = [int(d["frames_encoded_ahead"]) for d in diags if d and "frames_encoded_ahead" in d]
        precision = {d["inference_precision"] for d in diags if d and "inference_precision" in d}
    finally:
        node.destroy_subscription(sub)
        h.close()
        stop(proc)
    assert len(h.trajs) >= 8, (tmp_path / "p.log").read_text()[-2000:]
    assert ahead and ahead[-1] >= 5, ahead
    from uva.fastpath import native_bf16  # parameter default auto: what this CPU computes natively
    assert precision == {"bf16" if native_bf16("cpu") else "fp32"}, precision
    later = seen[len(seen) // 3:]  # after the first chunks (a fresh history encodes its frames)
    assert later and later.count("1") >= 0.8 * len(later), seen
