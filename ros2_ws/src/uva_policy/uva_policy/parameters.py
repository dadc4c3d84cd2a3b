"""Every parameter of the UVA nodes (policy_node, video_node, franka_sim): one spec each, with
its type, range and meaning, declared with a ParameterDescriptor and validated as a whole.

- Start-up: `declare(node, specs)` declares everything and validates the values together (joint
  limits against joint_names, cameras against topics, ...). An invalid value raises
  ParameterError; `runtime.run_node` then logs one line naming the parameter and exits with
  status 2 before any publisher exists, so a misconfigured node never commands the arm.
- Runtime: `watch(node, specs, values, apply)` refuses read-only parameters (rclpy does, from
  the descriptor), out-of-range or wrongly typed values (rclpy, from the descriptor) and values
  that are inconsistent with the others (here), with a reason; the old values stay in force. A
  valid change is handed to the node's `apply`, which builds its new settings (a new safety
  filter, say) and swaps them in, so they hold from the next control tick; if `apply` refuses,
  the change is refused too.
- Cameras: parallel `camera_names` / `image_topics` lists, or in a params YAML the mapping
  `cameras: {scene: /topic, wrist: /topic/compressed}`, which ROS turns into parameters
  `cameras.scene`, `cameras.wrist`. Those names are only known from the node's overrides, so they
  are read from them (rclpy keeps them in `Node._parameter_overrides`; there is no public
  accessor) and declared read-only one by one; `camera_names` / `image_topics` then report the
  resolved lists. Giving both forms is an error.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                ParameterType, SetParametersResult)
from rclpy.exceptions import (InvalidParameterTypeException, InvalidParameterValueException,
                              ParameterException)

from uva import franka
from uva.control import SafetyFilter

CAMERAS_PREFIX = "cameras."


class ParameterError(ValueError):
    """A parameter value the node must not run with."""


@dataclass(frozen=True)
class Spec:
    default: object
    description: str
    read_only: bool = False
    range: tuple | None = None  # inclusive (low, high), int or float like the default


_TYPES = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
          float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}
_ARRAY_TYPES = {int: ParameterType.PARAMETER_INTEGER_ARRAY,
                float: ParameterType.PARAMETER_DOUBLE_ARRAY,
                str: ParameterType.PARAMETER_STRING_ARRAY}

SHARED = {  # declared by both the policy and the video node
    "checkpoint": Spec("", "checkpoint directory (model.safetensors + config.json)", True),
    "device": Spec("cpu", "torch device for the model (cpu, cuda, cuda:1)", True),
    "camera_names": Spec(["scene"], "camera names, parallel to image_topics; must be the "
                         "checkpoint's cameras (or give cameras.<name>: <topic>)", True),
    "image_topics": Spec(["/camera/color/image_raw"], "one image topic per camera: raw "
                         "sensor_msgs/Image, or '<base>/compressed' for CompressedImage", True),
    "joint_states_topic": Spec("/joint_states", "sensor_msgs/JointState input", True),
    "joint_names": Spec(franka.MODEL_JOINTS, "joints in the model's action/state order", True),
    "control_rate_hz": Spec(10.0, "control tick rate; the checkpoint's action period", True,
                            (0.1, 1000.0)),
    "sync_slop_s": Spec(0.05, "max stamp difference between cameras and joint states in one "
                        "aligned observation [s]", False, (0.0, 5.0)),
    "max_future_skew_s": Spec(0.1, "an observation stamped further ahead of this node's clock "
                              "is refused (clock jump, wrong time base) [s]", False, (0.0, 10.0)),
    "torch_threads": Spec(1, "torch CPU threads", True, (1, 256)),
    "inference_precision": Spec("auto", "VAE encoder + policy transformer precision: auto (bf16 "
                                "where the CPU/GPU computes it natively, else fp32), fp32, bf16; "
                                "the action head is always fp32", True),
    # std_msgs/Empty here forgets the observation history (a new episode, a re-homed arm): nothing
    # is planned or predicted from frames of the scene before it
    "reset_topic": Spec("~/reset", "std_msgs/Empty: forget the observation history", True),
    # lifecycle and health of the managed nodes
    "autostart": Spec(False, "configure and activate by itself (sim graph, tests); else wait "
                      "for the lifecycle transitions", True),
    "diagnostics_rate_hz": Spec(2.0, "rate of the node's /diagnostics status", True,
                                (0.01, 100.0)),
}
GRIPPER = {  # the action dimension split off to franka_gripper-like actions (policy node)
    "gripper_joint": Spec(franka.FINGER_JOINTS[0], "action dimension that is the gripper "
                          "(\"\" = none: every joint goes to the trajectory)", True),
    "gripper_namespace": Spec("/fr3_gripper", "namespace of the gripper's move/grasp actions",
                              True),
    "gripper_open_position": Spec(0.04, "finger joint position of a fully open hand [m]", True,
                                  (1e-4, 1.0)),
    "gripper_close_below": Spec(0.3, "grasp when target / open position falls below this",
                                True, (0.0, 1.0)),
    "gripper_open_above": Spec(0.7, "open when target / open position rises above this", True,
                               (0.0, 1.0)),
    "gripper_open_width": Spec(0.08, "Move goal width between the fingers [m]", True,
                               (0.0, 1.0)),
    "gripper_grasp_width": Spec(0.0, "Grasp goal width [m]", True, (0.0, 1.0)),
    "gripper_epsilon_inner": Spec(0.005, "Grasp epsilon, inner [m]", True, (0.0, 1.0)),
    "gripper_epsilon_outer": Spec(0.08, "Grasp epsilon, outer [m]", True, (0.0, 1.0)),
    "gripper_speed": Spec(0.1, "gripper speed [m/s]", True, (1e-4, 1.0)),
    "gripper_force": Spec(20.0, "Grasp force [N]", True, (0.0, 200.0)),
}
POLICY = {
    **SHARED,
    **GRIPPER,
    "stop_on_deactivate": Spec(True, "on deactivate, command a stop at the measured state", True),
    "joint_lower_limits": Spec(franka.LOWER_LIMITS, "lower position limit per joint [rad or m]"),
    "joint_upper_limits": Spec(franka.UPPER_LIMITS, "upper position limit per joint [rad or m]"),
    "max_joint_step": Spec(0.15, "max change of any joint target per control step [rad or m]",
                           False, (1e-6, 10.0)),
    "max_joint_velocity": Spec(franka.COMMAND_VELOCITY_LIMITS, "speed cap per arm joint "
                               "(one value or one per joint_names entry but the gripper): a "
                               "trajectory faster along its path is slowed down; keep it below "
                               "the robot's limits [rad/s or m/s]"),
    "max_obs_age_s": Spec(0.5, "hold when the newest aligned observation is older [s]", False,
                          (0.001, 60.0)),
    "n_action_steps": Spec(0, "steps executed per chunk before re-planning; 0 = checkpoint "
                           "default (at most its horizon)", False, (0, 1024)),
    "blend_steps": Spec(2, "steps blended from the previous chunk into a new one", False,
                        (0, 64)),
}
VIDEO = {
    **SHARED,
    "publish_rate_hz": Spec(2.0, "rate of predicted-frame strips", True, (0.01, 100.0)),
    "max_obs_age_s": Spec(1.0, "skip prediction when the observation is older [s]", False,
                          (0.001, 60.0)),
    "tile_scale": Spec(2, "upscale factor of each tile in the strip", False, (1, 16)),
    # the control loop has priority (.scheduling)
    "background_nice": Spec(10, "OS niceness of the video process (higher = lower priority)",
                            True, (0, 19)),
    "background_max_duty": Spec(0.5, "largest share of recent wall time spent predicting video",
                                True, (0.01, 1.0)),
    "policy_status_topic": Spec("/policy_node/status", "the policy node's status: when it infers",
                                True),
}
SIM = {
    "controller_rate_hz": Spec(10.0, "simulation and controller step rate", True, (0.1, 1000.0)),
    "camera_size": Spec(96, "rendered camera image side [px]", True, (16, 1024)),
    "first_seed": Spec(100000, "seed of the first episode (then +1 per episode)", True,
                       (0, 2**31 - 1)),
    "episode_steps": Spec(120, "steps before an episode is reset", False, (1, 10**6)),
    "trajectory_topic": Spec("/fr3_arm_controller/joint_trajectory",
                             "trajectory_msgs/JointTrajectory command input", True),
    "gripper_namespace": Spec("/fr3_gripper", "namespace of the simulated gripper's actions",
                              True),
    "gripper_max_speed": Spec(0.2, "finger opening speed limit [m/s]", True, (1e-4, 10.0)),
    "max_start_deviation": Spec(0.5, "a trajectory whose first point is further from the "
                                "measured joints is refused [rad]", True, (1e-4, 10.0)),
    "joint_lower_limits": Spec(franka.PANDA_LOWER_LIMITS, "lower position limit per arm joint "
                               "(fr3_joint1..7): a trajectory whose path passes it is refused "
                               "[rad]", True),
    "joint_upper_limits": Spec(franka.PANDA_UPPER_LIMITS, "upper position limit per arm joint "
                               "(fr3_joint1..7): a trajectory whose path passes it is refused "
                               "[rad]", True),
    "max_joint_velocity": Spec(franka.PANDA_VELOCITY_LIMITS, "joint velocity limit per arm "
                               "joint: a trajectory whose interpolated path (from the held "
                               "command, at rest) is faster is refused [rad/s]", True),
    # ground truth for tests: the scripted expert's action each step on /franka_sim/expert_action
    "publish_expert": Spec(False, "publish the scripted expert's action each step", True),
}


def descriptor(name: str, spec: Spec) -> ParameterDescriptor:
    d = spec.default
    if isinstance(d, (list, tuple)):
        ptype, kind = _ARRAY_TYPES[type(d[0])], "list"
    else:
        ptype, kind = _TYPES[type(d)], type(d).__name__
    desc = ParameterDescriptor(name=name, type=ptype, read_only=spec.read_only,
                               description=spec.description,
                               additional_constraints=("read-only: set at start-up"
                                                       if spec.read_only else ""))
    if spec.range is not None:
        lo, hi = spec.range
        if kind == "int":
            desc.integer_range = [IntegerRange(from_value=lo, to_value=hi, step=1)]
        else:
            desc.floating_point_range = [FloatingPointRange(from_value=float(lo),
                                                            to_value=float(hi), step=0.0)]
    return desc


def check(values: dict, specs: dict) -> str:
    """"" if `values` (name -> value, the node's whole set) can be run with, else the reason."""
    for name, spec in specs.items():
        v = values.get(name)
        if spec.range is not None:
            lo, hi = spec.range
            if not (isinstance(v, (int, float)) and math.isfinite(v) and lo <= v <= hi):
                return f"{name}={v!r} must be a finite number in [{lo}, {hi}]"
        if name.endswith("_topic") and not v:
            return f"{name} must not be empty"
    if "inference_precision" in values:
        from uva.fastpath import PRECISIONS
        if values["inference_precision"] not in PRECISIONS:
            return (f"inference_precision={values['inference_precision']!r} must be one of "
                    f"{', '.join(PRECISIONS)}")
    if "joint_names" in values:
        names = list(values["joint_names"])
        if not names or any(not n for n in names):
            return f"joint_names {names} must be non-empty names"
        if len(set(names)) != len(names):
            return f"joint_names {names} name a joint twice"
    if "camera_names" in values:
        cams, topics = list(values["camera_names"]), list(values["image_topics"])
        if not cams or any(not c or "/" in c for c in cams) or len(set(cams)) != len(cams):
            return f"camera_names {cams} must be distinct non-empty names without '/'"
        if len(topics) != len(cams) or any(not t for t in topics):
            return (f"{len(topics)} image_topics for {len(cams)} camera_names {cams}: give one "
                    f"topic per camera (or cameras.<name>: <topic>)")
    if "gripper_close_below" in values and \
            not values["gripper_close_below"] < values["gripper_open_above"]:
        return (f"gripper_close_below {values['gripper_close_below']} must be below "
                f"gripper_open_above {values['gripper_open_above']} (hysteresis)")
    if "max_joint_velocity" in values:
        limits = values["max_joint_velocity"]
        arm = [n for n in values.get("joint_names", franka.ARM_JOINTS)
               if n != values.get("gripper_joint")]
        if len(limits) not in (1, len(arm)) or \
                not all(isinstance(x, (int, float)) and math.isfinite(x) and x > 0 for x in limits):
            return (f"max_joint_velocity {limits} must be one positive finite limit, or one per "
                    f"arm joint ({len(arm)}: {arm})")
    if "max_start_deviation" in values:  # the simulated arm's own limits, arm joints only
        lo, hi = values["joint_lower_limits"], values["joint_upper_limits"]
        n = len(franka.ARM_JOINTS)
        if len(lo) != n or len(hi) != n or not all(
                isinstance(x, (int, float)) and math.isfinite(x) for x in (*lo, *hi)) or \
                any(a > b for a, b in zip(lo, hi)):
            return (f"joint limits {lo} / {hi} must be {n} finite values each, lower <= upper "
                    f"(the arm joints {franka.ARM_JOINTS})")
    if "max_joint_step" in values:
        try:
            SafetyFilter(values["joint_lower_limits"], values["joint_upper_limits"],
                         values["max_joint_step"], n_joints=len(values["joint_names"]))
        except ValueError as e:
            return f"safety settings refused: {e}"
    return ""


def _camera_overrides(node, specs: dict) -> dict:
    """{name: topic} from `cameras.<name>` overrides (the YAML mapping form), else {}."""
    overrides = getattr(node, "_parameter_overrides", {})
    cams = {k[len(CAMERAS_PREFIX):]: v.value for k, v in overrides.items()
            if k.startswith(CAMERAS_PREFIX)}
    if cams and "camera_names" not in specs:
        raise ParameterError("this node takes no cameras")
    if cams and ({"camera_names", "image_topics"} & set(overrides)):
        raise ParameterError("cameras given twice: use either cameras.<name>: <topic> or "
                             "camera_names + image_topics")
    bad = [k for k, v in cams.items() if not isinstance(v, str) or not v]
    if bad:
        raise ParameterError(f"cameras.{bad[0]} must be a topic name")
    return cams


def declare(node, specs: dict) -> dict:
    """Declare every parameter of `specs` on `node` with its descriptor and return the
    validated values. Raises ParameterError (with the parameter's name) for anything invalid."""
    cams = _camera_overrides(node, specs)
    defaults = {name: spec.default for name, spec in specs.items()}
    if cams:
        defaults["camera_names"], defaults["image_topics"] = list(cams), list(cams.values())
        for name, topic in cams.items():
            node.declare_parameter(CAMERAS_PREFIX + name, topic, ParameterDescriptor(
                name=CAMERAS_PREFIX + name, type=ParameterType.PARAMETER_STRING, read_only=True,
                description=f"image topic of camera '{name}'"))
    values = {}
    for name, spec in specs.items():
        try:
            default = list(defaults[name]) if isinstance(defaults[name], tuple) else defaults[name]
            values[name] = node.declare_parameter(name, default, descriptor(name, spec)).value
        except (InvalidParameterTypeException, InvalidParameterValueException,
                ParameterException, TypeError) as e:
            raise ParameterError(f"parameter '{name}': {e}") from e
        if isinstance(values[name], (list, tuple)) or type(values[name]).__name__ == "array":
            values[name] = list(values[name])
    reason = check(values, specs)
    if reason:
        raise ParameterError(reason)
    unknown = sorted(k for k in getattr(node, "_parameter_overrides", {})
                     if k not in specs and not k.startswith(CAMERAS_PREFIX)
                     and k != "use_sim_time" and not k.startswith("qos_overrides."))
    if unknown:
        node.get_logger().error(f"unknown parameters ignored (misspelt?): {unknown}")
    return values


def watch(node, specs: dict, values: dict, apply) -> None:
    """Validate every runtime change of `specs` parameters against the whole set; hand a valid
    set to `apply(values)` (which may raise ValueError to refuse) and keep `values` current."""
    def on_set(params) -> SetParametersResult:
        candidate = dict(values)
        for p in params:
            if p.name in specs:
                v = p.value
                candidate[p.name] = list(v) if not isinstance(v, (str, int, float, bool)) else v
        reason = check(candidate, specs)
        if not reason:
            try:
                apply(candidate)
            except ValueError as e:
                reason = str(e)
        if reason:
            node.get_logger().warning(f"parameter change refused: {reason}")
            return SetParametersResult(successful=False, reason=reason)
        values.update(candidate)
        node.get_logger().info("parameters changed: " + ", ".join(
            f"{p.name}={p.value!r}" for p in params))
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)
