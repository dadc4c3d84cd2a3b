"""Simulated Franka: publishes /joint_states (fr3_joint1..7 + both fingers) and a camera, runs
an arm controller and a gripper interface shaped like franka_ros2's, and reports task success and
the cube position (ground truth for tests and demos).

Stands in for franka_ros2 + a RealSense on this machine, and refuses what they refuse:
- the arm, like ros2_control's JointTrajectoryController, takes trajectory_msgs/JointTrajectory
  for exactly fr3_joint1..7 on its controller topic (/fr3_arm_controller/joint_trajectory) and
  rejects, with a log line, other joint sets (a finger joint included), points whose
  time_from_start is not strictly increasing, non-finite values, a nonzero final velocity, a
  first point too far from the current state, and a path faster than the joint velocity limits
  (`max_joint_velocity`) or leaving the joint limits (`joint_lower_limits`,
  `joint_upper_limits`; all the Panda's, on the path interpolated from the held command, at
  rest, through the points; the real arm aborts such a motion with a reflex); accepted points
  are followed with cubic Hermite interpolation when they carry velocities (linear otherwise), a
  new trajectory replacing the old;
- the gripper, like franka_gripper, is driven only through its own actions and stop service
  (uva_sim.gripper_server, under /fr3_gripper). Episodes reset on ~/reset (std_srvs-free: a Bool topic) or when
`episode_steps` run out, with seeds from `first_seed` upwards; each reset is announced on
/franka_sim/episode_start (std_msgs/Empty) before the new episode's first observation, so the
policy node can forget the old scene (sim.yaml points its `reset_topic` there).
"""
from __future__ import annotations

import threading

import numpy as np
from rclpy.node import Node
from geometry_msgs.msg import Point, PointStamped
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Bool, Empty, Float64MultiArray, Int32
from trajectory_msgs.msg import JointTrajectory

from uva import franka
from uva.envs.panda import PandaEnv
from uva.trajectory import check_trajectory, continue_from, path_bounds, peak_velocity, sample
from uva_policy import parameters
from uva_policy.runtime import freeze_heap, run_node

from .gripper_server import FingerState, GripperServer

PARAMETERS = parameters.SIM  # every parameter, its descriptor and range: uva_policy.parameters


class SimNode(Node):
    def __init__(self):
        super().__init__("franka_sim")
        values = parameters.declare(self, PARAMETERS)  # ParameterError: run_node exits
        p = values.__getitem__
        self.env = PandaEnv(render_size=int(p("camera_size")))
        self.seed = int(p("first_seed"))
        self.episode_steps = int(p("episode_steps"))
        self.joint_pub = self.create_publisher(JointState, "/joint_states", 10)
        self.image_pub = self.create_publisher(Image, "/camera/color/image_raw", 10)
        self.info_pub = self.create_publisher(CameraInfo, "/camera/color/camera_info", 10)
        self.success_pub = self.create_publisher(Bool, "/franka_sim/task_success", 10)
        self.episode_pub = self.create_publisher(Int32, "/franka_sim/episode", 10)
        self.cube_pub = self.create_publisher(PointStamped, "/franka_sim/cube_position", 10)
        self.episode_start_pub = self.create_publisher(Empty, "/franka_sim/episode_start", 10)
        self.gripper_state_pub = self.create_publisher(
            JointState, p("gripper_namespace").rstrip("/") + "/joint_states", 10)
        self.expert_pub = (self.create_publisher(Float64MultiArray, "/franka_sim/expert_action", 10)
                           if p("publish_expert") else None)
        self.max_start_deviation = float(p("max_start_deviation"))
        self.max_velocity = np.broadcast_to(np.asarray(p("max_joint_velocity"), float), (7,))
        self.lower = np.broadcast_to(np.asarray(p("joint_lower_limits"), float), (7,))
        self.upper = np.broadcast_to(np.asarray(p("joint_upper_limits"), float), (7,))
        self.dt = 1.0 / float(p("controller_rate_hz"))
        self.lock = threading.Lock()  # the trajectory, between the subscription and the timer
        self.trajectory = None  # (absolute times, positions, velocities or None)
        self.fingers = FingerState(0.08, float(p("gripper_max_speed")))
        self.gripper = GripperServer(self, self.fingers, p("gripper_namespace"), self.dt)
        self.create_subscription(JointTrajectory, p("trajectory_topic"), self._on_trajectory, 10)
        self.create_subscription(Bool, "/franka_sim/reset", lambda m: self._reset(), 10)
        self._prev_q = None
        self._reset()
        self.create_timer(self.dt, self._step)
        parameters.watch(self, PARAMETERS, values, self._configure)
        freeze_heap()  # torch and pybullet loaded: no 180 ms full collection stalls a step later

    def _configure(self, p: dict) -> None:
        self.episode_steps = int(p["episode_steps"])  # from the next step on

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _reset(self):
        obs = self.env.reset(self.seed)
        self.episode_seed = self.seed
        self.seed += 1
        self.steps = 0
        with self.lock:
            self.trajectory = None
            self.hold = obs.state[:7].copy()
            self.measured = obs.state[:7].copy()
        self.fingers.set_goal(2 * float(obs.state[7]), self.fingers.max_speed)
        self.fingers.step(0.0, 2 * float(obs.state[7]))
        self._prev_q = None
        # the marker first: a recorder files by publish time what comes after it in the new episode
        self.episode_start_pub.publish(Empty())
        self.episode_pub.publish(Int32(data=self.episode_seed))
        self._publish(obs)

    def _refuse(self, reason: str) -> None:
        self.get_logger().error(f"trajectory refused: {reason}")

    def _on_trajectory(self, msg: JointTrajectory):
        names = list(msg.joint_names)
        want = franka.ARM_JOINTS
        if not msg.points:  # the controller's convention: an empty trajectory stops and holds
            with self.lock:
                self.trajectory = None
            self.get_logger().info("empty trajectory: stopping, holding the current position")
            return
        try:
            q = np.array([list(pt.positions) for pt in msg.points], dtype=np.float64)
            has_v = bool(msg.points) and all(len(pt.velocities) > 0 for pt in msg.points)
            v = np.array([list(pt.velocities) for pt in msg.points], dtype=np.float64) \
                if has_v else None
        except ValueError:  # ragged: points with different numbers of values
            return self._refuse("points carry different numbers of values")
        q = q.reshape(len(msg.points), -1)
        if not has_v and any(len(pt.velocities) for pt in msg.points):
            return self._refuse("velocities must be given on every point or on none")
        times = np.array([pt.time_from_start.sec + pt.time_from_start.nanosec * 1e-9
                          for pt in msg.points])
        with self.lock:
            current, measured = self.hold.copy(), self.measured.copy()
        # the jump check compares with the measured joints (what the robot's reflex watches);
        # interpolation starts from the held command, so the command itself never jumps
        reason = check_trajectory(names, want, times, q, v, measured, self.max_start_deviation)
        if reason:
            return self._refuse(reason)
        order = [names.index(n) for n in want]  # controller order, whatever the message's
        q, v = q[:, order], (v[:, order] if v is not None else None)
        now = self._now()
        t0 = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9 or now
        start = max(t0, now)
        abs_times = t0 + times
        # like the controller: from the state held now (at rest) to the first point, then
        # through them
        abs_times, q, v = continue_from(abs_times, q, v, start, current, np.zeros(7))
        # like the robot: the path the controller interpolates, from the held command at rest,
        # must stay within the joint velocity limits (a real arm aborts with a reflex)
        fast = peak_velocity(abs_times, q, v) / self.max_velocity
        if abs_times[0] <= start:  # no time to get there: the target jumps
            jump = np.abs(sample(abs_times, q, v, start) - current)
            fast = np.where(jump > 1e-6, np.inf, fast)
        if fast.max() > 1.0 + 1e-9:
            j = int(np.argmax(fast))
            return self._refuse(f"joint {want[j]} would move at {fast[j] * self.max_velocity[j]:.2f} "
                                f"rad/s (velocity limit {self.max_velocity[j]})")
        # and inside the joint limits all along it (a cubic can swing past its points); where
        # the held command already is outside, no further
        low, high = path_bounds(abs_times, q, v)
        beyond = np.maximum(low < np.minimum(self.lower, current) - 1e-9,
                            high > np.maximum(self.upper, current) + 1e-9)
        if beyond.any():
            j = int(np.argmax(beyond))
            return self._refuse(f"joint {want[j]} would leave its limits [{self.lower[j]}, "
                                f"{self.upper[j]}] (path from {low[j]:.3f} to {high[j]:.3f})")
        with self.lock:
            self.trajectory = (abs_times, q, v)  # a new trajectory replaces the old one

    def _arm_target(self, now: float) -> np.ndarray:
        with self.lock:
            if self.trajectory is not None:
                self.hold = sample(*self.trajectory, now)
            return self.hold.copy()

    def _step(self):
        state = self.env.joint_state()
        with self.lock:
            self.measured = state[:7].copy()
        fingers = self.fingers.step(self.dt, 2 * float(state[7]))
        target = np.concatenate([self._arm_target(self._now() + self.dt), [fingers]])
        if self.expert_pub is not None:
            self.expert_pub.publish(Float64MultiArray(data=[float(x) for x in self.env.expert_action()]))
        res = self.env.step(target)
        self.steps += 1
        self._publish(res.obs)
        self.success_pub.publish(Bool(data=bool(res.success)))
        self.episode_pub.publish(Int32(data=self.episode_seed))  # every step: late joiners learn it
        x, y, z = (float(v) for v in self.env.cube_position())
        cube = PointStamped(point=Point(x=x, y=y, z=z))
        cube.header.stamp, cube.header.frame_id = self.get_clock().now().to_msg(), "world"
        self.cube_pub.publish(cube)
        if res.done or self.steps >= self.episode_steps:
            self._reset()

    def _publish(self, obs):
        stamp = self.get_clock().now().to_msg()
        js = JointState()
        js.header.stamp = stamp
        js.name = franka.ARM_JOINTS + franka.FINGER_JOINTS
        q = np.concatenate([obs.state[:7], [obs.state[7]] * 2]).astype(np.float64)
        # velocities: backward differences over the controller step (zero after a reset)
        v = np.zeros_like(q) if self._prev_q is None else (q - self._prev_q) / self.dt
        self._prev_q = q
        js.position, js.velocity = q.tolist(), v.tolist()
        self.joint_pub.publish(js)
        hand = JointState(name=list(franka.FINGER_JOINTS), position=q[7:].tolist(),
                          velocity=v[7:].tolist())
        hand.header.stamp = stamp
        self.gripper_state_pub.publish(hand)
        img = Image()
        img.header.stamp = stamp
        img.header.frame_id = "camera_color_optical_frame"
        img.height, img.width = obs.image.shape[:2]
        img.encoding = "rgb8"
        img.step = img.width * 3
        img.data = obs.image.tobytes()
        self.image_pub.publish(img)
        info = CameraInfo()
        info.header = img.header
        info.height, info.width = img.height, img.width
        self.info_pub.publish(info)


def main(args=None):
    # gripper goals run on their own threads while the physics timer keeps stepping
    run_node(SimNode, args, threads=4, on_shutdown=lambda node: node.env.close())


if __name__ == "__main__":
    main()
