"""Record demonstrations, one rosbag2 per episode, for `uva dataset import`.

sim:=true  the simulated arm, teleoperated by the scripted Panda expert over DDS
sim:=false only the recorder, beside a running franka_ros2 + camera + teleop (config/record_franka.yaml)
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    share = get_package_share_directory("uva_bringup")
    sim_params = os.path.join(share, "config", "record_demos.yaml")
    franka_params = os.path.join(share, "config", "record_franka.yaml")
    sim = LaunchConfiguration("sim")
    overrides = {"out_dir": LaunchConfiguration("out_dir"),
                 "max_episodes": LaunchConfiguration("max_episodes")}
    return LaunchDescription([
        DeclareLaunchArgument("sim", default_value="true"),
        DeclareLaunchArgument("out_dir", default_value="outputs/demos"),
        DeclareLaunchArgument("max_episodes", default_value="0"),
        Node(package="uva_sim", executable="sim_node", name="franka_sim",
             parameters=[sim_params], condition=IfCondition(sim)),
        Node(package="uva_bringup", executable="sim_teleop", name="sim_teleop",
             parameters=[sim_params], condition=IfCondition(sim)),
        Node(package="uva_bringup", executable="demo_recorder", name="demo_recorder",
             parameters=[sim_params, overrides], condition=IfCondition(sim), output="screen"),
        Node(package="uva_bringup", executable="demo_recorder", name="demo_recorder",
             parameters=[franka_params, overrides], condition=UnlessCondition(sim), output="screen"),
    ])
