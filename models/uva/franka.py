"""Franka FR3 joints as franka_ros2 names them, in the order the Panda env's state and action
vectors use: seven arm joints, then one finger (the gripper is symmetric, the second finger
mirrors it). One definition for the simulator node, the policy node and rosbag replay; importing
it pulls in nothing heavy."""
from __future__ import annotations

ARM_JOINTS = [f"fr3_joint{i}" for i in range(1, 8)]
FINGER_JOINTS = ["fr3_finger_joint1", "fr3_finger_joint2"]
MODEL_JOINTS = ARM_JOINTS + FINGER_JOINTS[:1]
# FR3 position limits (rad; finger: m per finger), the safety filter's defaults
LOWER_LIMITS = [-2.7437, -1.7837, -2.9007, -3.0421, -2.8065, 0.5445, -3.0159, 0.0]
UPPER_LIMITS = [2.7437, 1.7837, 2.9007, -0.1518, 2.8065, 4.5169, 3.0159, 0.04]
# FR3 joint velocity limits (rad/s): a commanded motion faster than these aborts with a reflex
VELOCITY_LIMITS = [2.62, 2.62, 2.62, 2.62, 5.26, 4.18, 5.26]
# the Panda's, for the simulated arm (pybullet's panda.urdf): positions (arm joints) and velocities
PANDA_LOWER_LIMITS = [-2.9671, -1.8326, -2.9671, -3.1416, -2.9671, -0.0873, -2.9671]
PANDA_UPPER_LIMITS = [2.9671, 1.8326, 2.9671, 0.0, 2.9671, 3.8223, 2.9671]
PANDA_VELOCITY_LIMITS = [2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61]
# the policy node's default speed cap: 90 % of the FR3's limits (the controller starts a new
# trajectory from its own command, which trails the measured state the node plans from)
COMMAND_VELOCITY_LIMITS = [round(0.9 * v, 3) for v in VELOCITY_LIMITS]
# what the arm checks on every command it samples (libfranka's kMaxJointAcceleration and
# kMaxJointJerk, the same for the Panda and the FR3): each 1 ms control cycle the commanded
# acceleration may change by at most the jerk limit times one cycle, or the motion aborts with a
# "joint_motion_generator_acceleration_discontinuity" reflex
ACCELERATION_LIMITS = [15.0, 7.5, 10.0, 12.5, 15.0, 20.0, 20.0]
JERK_LIMITS = [7500.0, 3750.0, 5000.0, 6250.0, 7500.0, 10000.0, 10000.0]
CONTROL_CYCLE_S = 1e-3
