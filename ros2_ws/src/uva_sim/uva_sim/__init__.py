"""Simulated Franka driver (pybullet Panda from uva.envs) speaking franka_ros2's topics."""
