"""The scripted Panda expert as a teleoperator of the simulated arm: it sees only what an operator
sees over DDS (the joint states and the episode's seed) and sends JointTrajectory commands for
the seven arm joints to the arm's controller topic, one per joint-state message, as a teleop
device would; the hand, which the arm controller does not drive (franka_ros2 splits it off),
gets franka_gripper move/grasp goals through the policy node's own hysteresis
(uva_policy.gripper, the policy node's default thresholds and widths). Like a leader arm, it
also publishes its whole command, the arm joints and the finger target, as a sensor_msgs/JointState
on `joint_command_topic`: the gripper goals are action calls that a bag does not hold, so that
topic is what a recording needs for commanded gripper labels (config/record_demos.yaml records it).

The expert's plan needs the scene (cube and pad), which the seed fixes; it keeps its own copy of
the Panda env, puts that arm in the measured joint positions before each command, and asks
`PandaEnv.expert_action` (the same code `uva collect` runs) for the next target. Building a scene
takes about as long as the simulator's own reset (~0.35 s here), so the teleop builds the next
seed's scene ahead: when it first hears a seed, and when the simulator reports success (it
resets right after); a seed it did not expect is built when it arrives.

    python -m uva_bringup.sim_teleop --ros-args --params-file config/record_demos.yaml
"""
from __future__ import annotations

import numpy as np
import pybullet as pb
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Int32
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from uva import franka
from uva.envs.panda import ARM_JOINTS, FINGER_JOINTS, PandaEnv
from uva_policy.gripper import GripperClient, GripperSwitch
from uva_policy.runtime import freeze_heap

PARAMETERS = {
    "command_topic": "/fr3_arm_controller/joint_trajectory",
    "joint_states_topic": "/joint_states",
    "episode_seed_topic": "/franka_sim/episode",
    "success_topic": "/franka_sim/task_success",
    "gripper_namespace": "/fr3_gripper",
    "joint_command_topic": "/sim_teleop/joint_command",
}
GRIPPER = {"open_width": 0.08, "grasp_width": 0.0, "epsilon_inner": 0.005, "epsilon_outer": 0.08,
           "speed": 0.2, "force": 20.0}  # = config/sim.yaml's policy node
OPEN_POSITION, CLOSE_BELOW, OPEN_ABOVE = 0.04, 0.3, 0.7


class SimTeleop(Node):
    def __init__(self):
        super().__init__("sim_teleop")
        for name, default in PARAMETERS.items():
            self.declare_parameter(name, default)
        p = lambda n: self.get_parameter(n).value
        self.env = PandaEnv()
        self.env_seed: int | None = None
        self.seed: int | None = None
        self.pub = self.create_publisher(JointTrajectory, p("command_topic"), 10)
        self.command_pub = self.create_publisher(JointState, p("joint_command_topic"), 10)
        # the seed first: a reset announces it before the new episode's first joint state
        self.create_subscription(Int32, p("episode_seed_topic"), self._on_seed, 10)
        self.create_subscription(Bool, p("success_topic"), self._on_success, 10)
        self.create_subscription(JointState, p("joint_states_topic"), self._on_joints, 10)
        self.switch = GripperSwitch(OPEN_POSITION, CLOSE_BELOW, OPEN_ABOVE)
        self.gripper = GripperClient(self, p("gripper_namespace"), **GRIPPER)
        self.commands = 0
        freeze_heap()  # as the simulator: a late command is a late step

    def _prepare(self, seed: int) -> None:
        if self.env_seed != seed:
            self.env.reset(seed)
            self.env_seed = seed

    def _on_seed(self, msg: Int32) -> None:
        first = self.seed is None
        if self.seed != int(msg.data):
            self.switch.reset()  # a reset opens the hand; the switch re-reads the fingers
        self.seed = int(msg.data)
        if first:  # the scene running now started before us: be ready for the next one
            self._prepare(self.seed + 1)

    def _on_success(self, msg: Bool) -> None:
        if msg.data and self.seed is not None:
            self._prepare(self.seed + 1)

    def _on_joints(self, msg: JointState) -> None:
        if self.seed is None:
            return  # the scene is unknown until the simulator names its seed
        try:
            index = {n: i for i, n in enumerate(msg.name)}
            q = np.array([msg.position[index[n]] for n in franka.MODEL_JOINTS])
        except (KeyError, IndexError):
            self.get_logger().warning(f"joint states {list(msg.name)} lack {franka.MODEL_JOINTS}")
            return
        if self.seed != self.env_seed:
            if self.env_seed == self.seed + 1:
                return  # still the scene from before we started, which we do not drive
            self._prepare(self.seed)
        env = self.env
        for j, v in zip(ARM_JOINTS, q[:7]):
            pb.resetJointState(env.robot, j, float(v), physicsClientId=env.client)
        for j in FINGER_JOINTS:
            pb.resetJointState(env.robot, j, float(q[7]), physicsClientId=env.client)
        target = env.expert_action()
        cmd = JointTrajectory()  # stamped now, first point due at once: execute now
        cmd.header.stamp = self.get_clock().now().to_msg()
        cmd.joint_names = list(franka.ARM_JOINTS)
        cmd.points = [JointTrajectoryPoint(positions=[float(v) for v in target[:7]])]
        self.pub.publish(cmd)
        self.command_pub.publish(JointState(header=cmd.header, name=list(franka.MODEL_JOINTS),
                                            position=[float(v) for v in target]))
        self.commands += 1
        command = self.switch.update(float(target[7]), float(q[7]))
        if command is not None:
            problem = self.gripper.send(command)
            if problem:  # retried on the next joint state, from the measured fingers
                self.switch.reset()
                self.get_logger().warning(f"gripper: {problem}", throttle_duration_sec=1.0)


def main(args=None):
    from uva_policy.runtime import run_node
    run_node(SimTeleop, args, on_shutdown=lambda node: (node.gripper.destroy(), node.env.close()))


if __name__ == "__main__":
    main()
