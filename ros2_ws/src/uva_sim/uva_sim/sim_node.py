"""Simulated Franka: publishes /joint_states (fr3_joint1..7 + fingers) and a camera, executes
JointTrajectory commands at the controller rate, and reports task success and the cube position
(ground truth for tests and demos).

Stands in for franka_ros2 + a RealSense on this machine; the policy node cannot tell the
difference from the topics. Episodes reset on ~/reset (std_srvs-free: a Bool topic) or when
`episode_steps` run out, with seeds from `first_seed` upwards; each reset is announced on
/franka_sim/episode_start (std_msgs/Empty) before the new episode's first observation, so the
policy node can forget the old scene (sim.yaml points its `reset_topic` there).
"""
from __future__ import annotations

import numpy as np
from rclpy.node import Node
from geometry_msgs.msg import Point, PointStamped
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Bool, Empty, Int32
from trajectory_msgs.msg import JointTrajectory

from uva import franka
from uva.envs.panda import PandaEnv
from uva_policy import parameters
from uva_policy.runtime import run_node

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
        self.create_subscription(JointTrajectory, p("trajectory_topic"), self._on_trajectory, 10)
        self.create_subscription(Bool, "/franka_sim/reset", lambda m: self._reset(), 10)
        self.points: list[tuple[float, np.ndarray]] = []
        self._reset()
        self.create_timer(1.0 / float(p("controller_rate_hz")), self._step)
        parameters.watch(self, PARAMETERS, values, self._configure)

    def _configure(self, p: dict) -> None:
        self.episode_steps = int(p["episode_steps"])  # from the next step on

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _reset(self):
        obs = self.env.reset(self.seed)
        self.episode_seed = self.seed
        self.seed += 1
        self.steps = 0
        self.points = []
        self.hold = obs.state.copy()
        self.episode_pub.publish(Int32(data=self.episode_seed))
        self.episode_start_pub.publish(Empty())
        self._publish(obs)

    def _on_trajectory(self, msg: JointTrajectory):
        names = list(msg.joint_names)
        want = franka.MODEL_JOINTS
        if any(n not in names for n in want):
            self.get_logger().warning(f"trajectory joints {names} do not cover {want}; ignored")
            return
        order = [names.index(n) for n in want]
        t0 = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9 or self._now()
        points = []
        for pt in msg.points:
            q = np.array([pt.positions[i] for i in order])
            if not np.isfinite(q).all():
                self.get_logger().error("non-finite trajectory point; trajectory ignored")
                return
            points.append((t0 + pt.time_from_start.sec + pt.time_from_start.nanosec * 1e-9, q))
        self.points = points  # a new trajectory replaces the old one (as ros2_control does)

    def _target(self, now: float) -> np.ndarray:
        """Latest point whose time has come (the controller holds the last one)."""
        due = [q for t, q in self.points if t <= now + 1e-3]
        if due:
            self.hold = due[-1]
        return self.hold

    def _step(self):
        res = self.env.step(self._target(self._now()))
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
        js.position = [float(v) for v in obs.state[:7]] + [float(obs.state[7])] * 2
        self.joint_pub.publish(js)
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
    run_node(SimNode, args, on_shutdown=lambda node: node.env.close())


if __name__ == "__main__":
    main()
