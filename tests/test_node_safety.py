"""Nothing unsafe from bad parameters or inconsistent input, over real DDS: invalid parameters at
start-up stop the node before it publishes; invalid runtime changes are refused and the old
values stay in force; valid ones take effect; repeated joint names and future stamps hold;
cameras are matched to the checkpoint by name."""
from __future__ import annotations

import sys
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from ros_helpers import (HOME, PANDA_JOINTS, PANDA_LOWER, PANDA_UPPER, isolate_dds, make_image,
                         make_joints, start_node, stop)

isolate_dds()

MAX_STEP = 0.05
BASE = {"joint_lower_limits": PANDA_LOWER, "joint_upper_limits": PANDA_UPPER,
        "max_joint_step": MAX_STEP, "max_obs_age_s": 0.5,
        "autostart": True}  # managed nodes go active by themselves


def floats(values) -> str:
    """A double-array override as the command line takes it (NaN as YAML's .nan)."""
    return "[" + ",".join(".nan" if np.isnan(v) else repr(float(v)) for v in values) + "]"


class Harness:
    """Publishes images on `image_topics` and joint states; records trajectories and status."""

    def __init__(self, node, executor, image_topics=("/camera/color/image_raw",)):
        from sensor_msgs.msg import Image, JointState
        from trajectory_msgs.msg import JointTrajectory
        from uva_msgs.msg import PolicyStatus
        self.node, self.executor = node, executor
        self.img_pubs = {t: node.create_publisher(Image, t, 10) for t in image_topics}
        self.js_pub = node.create_publisher(JointState, "/joint_states", 10)
        self.trajs, self.statuses = [], []
        self.subs = [node.create_subscription(JointTrajectory, "/uva/joint_trajectory",
                                              self.trajs.append, 10),
                     node.create_subscription(PolicyStatus, "/policy_node/status",
                                              self.statuses.append, 10)]

    def run(self, seconds, topics=None, names=PANDA_JOINTS, q=HOME, stamp=None):
        end, next_pub = time.time() + seconds, 0.0
        while time.time() < end:
            if time.time() >= next_pub:
                for t in (self.img_pubs if topics is None else topics):
                    self.img_pubs[t].publish(make_image(self.node, stamp=stamp))
                self.js_pub.publish(make_joints(self.node, q, names, stamp=stamp))
                next_pub = time.time() + 0.05
            self.executor.spin_once(timeout_sec=0.01)

    def wait_for(self, predicate, timeout, **kw):
        end = time.time() + timeout
        while time.time() < end and not predicate():
            self.run(0.1, **kw)
        return predicate()

    def held(self, text):
        return [s for s in self.statuses if s.state == 1 and text in s.reason]

    def close(self):
        for s in self.subs:
            self.node.destroy_subscription(s)
        for p in (*self.img_pubs.values(), self.js_pub):
            self.node.destroy_publisher(p)


def call(node, executor, srv_type, name, request, timeout=20.0):
    client = node.create_client(srv_type, name)
    try:
        assert client.wait_for_service(timeout_sec=timeout), f"{name} not available"
        future = client.call_async(request)
        end = time.time() + timeout
        while not future.done() and time.time() < end:
            executor.spin_once(timeout_sec=0.05)
        assert future.done(), f"{name} did not answer"
        return future.result()
    finally:
        node.destroy_client(client)


def set_parameters(h, **values):
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter
    req = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg()
                                            for k, v in values.items()])
    return call(h.node, h.executor, SetParameters, "/policy_node/set_parameters", req).results


def get_parameters(h, *names):
    from rcl_interfaces.srv import GetParameters
    from rclpy.parameter import parameter_value_to_python
    res = call(h.node, h.executor, GetParameters, "/policy_node/get_parameters",
               GetParameters.Request(names=list(names)))
    return [parameter_value_to_python(v) for v in res.values]


def positions(trajs) -> list[np.ndarray]:
    return [np.array([p.positions for p in t.points]) for t in trajs]


def assert_safe(trajs, max_step, lower=PANDA_LOWER, upper=PANDA_UPPER, measured=HOME):
    for q in positions(trajs):
        n = q.shape[1]  # the arm joints (the gripper goes to its own actions)
        lower, upper, measured = np.array(lower)[:n], np.array(upper)[:n], np.array(measured)[:n]
        assert np.isfinite(q).all()
        assert (q >= lower - 1e-9).all() and (q <= upper + 1e-9).all()
        start = np.clip(measured, lower, upper)
        assert (np.abs(np.diff(np.vstack([start, q]), axis=0)) <= max_step + 1e-6).all()


@pytest.fixture
def policy(ros, panda_ckpt, tmp_path):
    node, executor = ros
    log = tmp_path / "policy.log"
    proc = start_node("uva_policy.policy_node", "policy_node",
                      {"checkpoint": str(panda_ckpt), **BASE}, log_path=log)
    h = Harness(node, executor)
    assert h.wait_for(lambda: len(h.trajs) >= 2, 40), log.read_text()
    yield h, proc
    h.close()
    stop(proc)


# ---------------------------------------------------------------- the parameter specs

def test_every_parameter_is_described_and_numbers_have_ranges():
    from uva_policy import parameters as P
    for specs in (P.POLICY, P.VIDEO, P.SIM):
        assert P.check({k: s.default for k, s in specs.items()}, specs) == ""
        for name, spec in specs.items():
            d = P.descriptor(name, spec)
            assert d.description and d.read_only == spec.read_only
            if isinstance(spec.default, (int, float)) and not isinstance(spec.default, bool):
                assert d.floating_point_range or d.integer_range, name
    for name in ("checkpoint", "device", "image_topics", "camera_names", "joint_names",
                 "joint_states_topic", "control_rate_hz"):
        assert P.POLICY[name].read_only and P.VIDEO[name].read_only
    for name in ("max_joint_step", "joint_lower_limits", "joint_upper_limits", "max_obs_age_s",
                 "sync_slop_s", "n_action_steps", "blend_steps", "max_future_skew_s"):
        assert not P.POLICY[name].read_only  # changeable at runtime, in force from the next tick


@pytest.mark.parametrize("change, reason", [
    (dict(max_obs_age_s=float("nan")), "max_obs_age_s"),
    (dict(sync_slop_s=-0.1), "sync_slop_s"),
    (dict(blend_steps=-1), "blend_steps"),
    (dict(camera_names=["scene", "scene"], image_topics=["/a", "/b"]), "distinct"),
    (dict(camera_names=["a/b"]), "without '/'"),
    (dict(image_topics=[""]), "one topic per camera"),
    (dict(joint_states_topic=""), "joint_states_topic must not be empty"),
    (dict(joint_names=[]), "non-empty"),
    (dict(joint_upper_limits=PANDA_UPPER + [1.0]), "9 upper limits"),
    (dict(joint_lower_limits=PANDA_LOWER[:7]), "7 lower limits but 8 upper limits"),
    (dict(joint_upper_limits=PANDA_UPPER[:7] + [float("nan")]), "must be finite"),
    (dict(joint_lower_limits=PANDA_UPPER, joint_upper_limits=PANDA_LOWER), "exceed upper"),
    (dict(max_joint_step=0.0), "max_joint_step"),
    (dict(control_rate_hz=0.0), "control_rate_hz"),
    (dict(joint_names=PANDA_JOINTS[:7] + PANDA_JOINTS[:1]), "name a joint twice"),
    (dict(image_topics=["/a", "/b"]), "2 image_topics for 1 camera_names"),
    (dict(gripper_close_below=0.8), "hysteresis"),
])
def test_parameter_check_names_what_is_wrong(change, reason):
    from uva_policy import parameters as P
    values = {k: s.default for k, s in P.POLICY.items()}
    values.update(change)
    assert reason in P.check(values, P.POLICY)


# ---------------------------------------------------------------- parameters at start-up

LOWER_NAN = list(PANDA_LOWER)
LOWER_NAN[2] = float("nan")
START_UP = [  # (module, parameters, what the one-line error must say); the rest of the
    # checks are the same code path, covered without processes above
    ("uva_policy.policy_node", {"max_joint_step": -1.0}, "max_joint_step"),
    ("uva_policy.policy_node", {"max_joint_step": ".nan"}, "max_joint_step"),
    ("uva_policy.policy_node", {"joint_lower_limits": floats(LOWER_NAN)}, "must be finite"),
    ("uva_policy.policy_node", {"joint_lower_limits": PANDA_UPPER,
                                "joint_upper_limits": PANDA_LOWER}, "exceed upper limits"),
    ("uva_policy.policy_node", {"control_rate_hz": 0.0}, "control_rate_hz"),
    ("uva_policy.video_node", {"sync_slop_s": -1.0}, "sync_slop_s"),
    ("uva_policy.video_node", {"inference_precision": "fp16"}, "inference_precision"),
    ("uva_sim.sim_node", {"controller_rate_hz": 0.0}, "controller_rate_hz"),
]


def test_invalid_start_up_parameters_stop_the_node_before_it_publishes(tmp_path):
    """Started all at once (each exits within its imports): status 2, the reason in one line."""
    procs = []
    for k, (module, params, _) in enumerate(START_UP):
        name = module.rsplit(".", 1)[1].replace("sim_node", "franka_sim")
        procs.append(start_node(module, name, {**BASE, **params} if "policy" in module else params,
                                log_path=tmp_path / f"{k}.log"))
    for k, ((module, params, reason), proc) in enumerate(zip(START_UP, procs)):
        try:
            rc = proc.wait(120)
        finally:
            stop(proc)
        log = (tmp_path / f"{k}.log").read_text()
        assert rc == 2, (module, params, rc, log)
        assert "invalid parameters, not starting" in log and reason in log, (params, log)
        assert "Traceback" not in log, log


# ---------------------------------------------------------------- parameters at runtime

def test_runtime_parameter_changes_are_validated_and_take_effect(policy):
    h, proc = policy
    assert h.wait_for(lambda: len(h.trajs) >= 4, 30)
    assert_safe(h.trajs, MAX_STEP)
    steps = [np.abs(np.diff(np.vstack([HOME[:q.shape[1]], q]), axis=0)).max() for q in positions(h.trajs)]
    assert max(steps) > 0.02  # the random policy uses its step budget: a tighter cap must show

    above = [u + 0.1 for u in PANDA_UPPER]  # every lower limit above its upper limit
    below = [v - 0.1 for v in PANDA_LOWER]  # every upper limit below its lower limit
    swapped = {"joint_lower_limits": above, "joint_upper_limits": below}
    refused = [dict(max_joint_step=-1.0), dict(max_joint_step=float("nan")),
               dict(max_joint_step=0.0), dict(joint_lower_limits=above),
               dict(joint_upper_limits=PANDA_UPPER[:7]), dict(n_action_steps=1000),
               dict(n_action_steps=100),  # more than the checkpoint's 16-step horizon
               dict(checkpoint="/elsewhere"), dict(control_rate_hz=50.0),
               dict(joint_names=list("abcdefgh"))]
    for change in refused:
        results = set_parameters(h, **change)
        assert not results[0].successful and results[0].reason, change
    results = set_parameters(h, **swapped)  # one at a time, each leaves lower > upper
    assert not any(r.successful for r in results)
    assert get_parameters(h, "max_joint_step", "n_action_steps") == [MAX_STEP, 0]
    assert list(get_parameters(h, "joint_lower_limits")[0]) == PANDA_LOWER
    h.trajs.clear()
    assert h.wait_for(lambda: len(h.trajs) >= 2, 20)
    assert_safe(h.trajs, MAX_STEP)  # the old values are still in force

    tight_upper = list(PANDA_UPPER)
    tight_upper[0] = 0.005  # joint 1 may now move 5 mrad above HOME at most
    results = set_parameters(h, max_joint_step=0.01, joint_upper_limits=tight_upper)
    assert all(r.successful for r in results), [r.reason for r in results]
    assert get_parameters(h, "max_joint_step") == [0.01]
    h.run(0.6)  # a chunk planned before the change may still arrive
    h.trajs.clear()
    assert h.wait_for(lambda: len(h.trajs) >= 3, 30)
    assert_safe(h.trajs, 0.01, upper=tight_upper)
    assert proc.poll() is None


# ---------------------------------------------------------------- inconsistent input

def test_repeated_joint_names_hold(policy):
    h, proc = policy
    h.run(0.5, names=PANDA_JOINTS + PANDA_JOINTS[:1], q=HOME + [1.0])
    n = len(h.trajs)
    h.statuses.clear()
    h.run(1.5, names=PANDA_JOINTS + PANDA_JOINTS[:1], q=HOME + [1.0])
    assert h.held("joint names repeated ['fr3_joint1']"), [s.reason for s in h.statuses[-3:]]
    assert len(h.trajs) <= n + 1
    assert h.wait_for(lambda: len(h.trajs) > n + 2, 20)  # consistent readings again: runs
    assert proc.poll() is None


def test_future_stamps_hold_and_never_reach_a_trajectory(policy):
    from builtin_interfaces.msg import Time
    h, proc = policy
    future = Time(sec=int(h.node.get_clock().now().nanoseconds * 1e-9) + 3600 * 24 * 365)
    h.run(0.5, stamp=future)
    n = len(h.trajs)
    h.statuses.clear()
    h.run(1.5, stamp=future)
    assert h.held("in the future"), [s.reason for s in h.statuses[-3:]]
    assert len(h.trajs) <= n + 1
    assert h.wait_for(lambda: len(h.trajs) > n + 2, 20)  # stamps from this clock again: runs
    for t in h.trajs:
        last = t.points[-1].time_from_start
        assert last.sec + last.nanosec * 1e-9 < 10.0  # never a point years ahead
    assert proc.poll() is None


# ---------------------------------------------------------------- cameras by name

def start_with_yaml(tmp_path, params: dict, name="policy_node"):
    import yaml
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({name: {"ros__parameters": params}}))
    import subprocess
    argv = [sys.executable, "-m", f"uva_policy.{name}", "--ros-args", "-r", f"__node:={name}",
            "--params-file", str(path)]
    return subprocess.Popen(argv, stdout=open(tmp_path / "node.log", "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def test_cameras_mapping_in_yaml_drives_the_policy(ros, panda_ckpt, tmp_path):
    node, executor = ros
    proc = start_with_yaml(tmp_path, {"checkpoint": str(panda_ckpt), **BASE,
                                      "cameras": {"scene": "/cam/scene"}})
    h = Harness(node, executor, ["/cam/scene"])
    try:
        assert h.wait_for(lambda: len(h.trajs) >= 2, 40), (tmp_path / "node.log").read_text()
        assert get_parameters(h, "camera_names", "image_topics", "cameras.scene") == \
            [["scene"], ["/cam/scene"], "/cam/scene"]
        assert not set_parameters(h, **{"cameras.scene": "/other"})[0].successful
    finally:
        h.close()
        stop(proc)


def test_camera_set_not_matching_the_checkpoint_holds(ros, panda_ckpt, tmp_path):
    node, executor = ros
    proc = start_with_yaml(tmp_path, {"checkpoint": str(panda_ckpt), **BASE,
                                      "cameras": {"scene": "/cam/scene", "wrist": "/cam/wrist"}})
    h = Harness(node, executor, ["/cam/scene", "/cam/wrist"])
    try:
        log = tmp_path / "node.log"
        assert h.wait_for(lambda: "configure failed: camera set refused" in log.read_text(), 60), \
            log.read_text()
        assert "unknown ['wrist']" in log.read_text()
        h.run(1.0)
        assert not h.trajs and proc.poll() is None  # stays unconfigured: nothing commanded
    finally:
        h.close()
        stop(proc)


def test_two_cameras_hold_on_a_missing_wrist_stream_and_run_when_it_returns(
        ros, two_camera_ckpt, tmp_path):
    node, executor = ros
    topics = ["/cam/scene", "/cam/wrist"]
    proc = start_node("uva_policy.policy_node", "policy_node",
                      {"checkpoint": str(two_camera_ckpt), **BASE,
                       "camera_names": ["wrist", "scene"], "image_topics": topics[::-1]},
                      log_path=tmp_path / "p.log")
    h = Harness(node, executor, topics)
    try:
        assert h.wait_for(lambda: bool(h.held("camera wrist: no image received yet")), 40,
                          topics=["/cam/scene"]), (tmp_path / "p.log").read_text()
        assert not h.trajs
        assert h.wait_for(lambda: len(h.trajs) >= 2, 40), (tmp_path / "p.log").read_text()
        h.statuses.clear()
        h.run(1.5, topics=["/cam/scene"])  # the wrist camera drops out
        assert h.held("camera wrist is stale"), [s.reason for s in h.statuses[-3:]]
        n = len(h.trajs)
        h.run(1.0, topics=["/cam/scene"])
        assert len(h.trajs) <= n + 1
        assert h.wait_for(lambda: len(h.trajs) > n + 2, 30)  # back: running again
        assert_safe(h.trajs, MAX_STEP, measured=HOME)
    finally:
        h.close()
        stop(proc)


def test_model_inputs_feed_each_camera_by_name():
    from types import SimpleNamespace

    from uva.control import AlignedObservation
    from uva_policy.conversions import model_inputs
    scene = np.full((48, 64, 3), 10, np.uint8)  # cameras of different sizes, each resized alone
    wrist = np.full((120, 160, 3), 200, np.uint8)
    obs = AlignedObservation([[wrist, scene], [wrist, scene]], np.zeros((2, 8)), 1.0, 0.0,
                             ["wrist", "scene"])
    two = model_inputs(obs, SimpleNamespace(image_size=32, cameras=["scene", "wrist"]))
    assert set(two) == {"images", "state"} and list(two["images"]) == ["scene", "wrist"]
    assert two["images"]["scene"].shape == (2, 32, 32, 3) and (two["images"]["scene"] == 10).all()
    assert (two["images"]["wrist"] == 200).all()
    one = AlignedObservation([[scene]], np.zeros((1, 8)), 1.0, 0.0, ["scene"])
    single = model_inputs(one, SimpleNamespace(image_size=32))  # a config without cameras
    assert set(single) == {"image", "state"} and (single["image"] == 10).all()
    with pytest.raises(ValueError, match=r"cameras \['wrist'\]"):
        model_inputs(one, SimpleNamespace(image_size=32, cameras=["scene", "wrist"]))
