"""UVA on a real Franka FR3: franka_ros2 bringup + policy node (+ video node, rviz2).

The policy's /uva/joint_trajectory is remapped to the arm's joint trajectory controller.
Written against the real launch / launch_ros API (not installable on the dev machine; the same
graph runs there via `python -m uva_bringup.run` from the same YAML).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    share = get_package_share_directory("uva_bringup")
    params = os.path.join(share, "config", "franka.yaml")
    robot_ip = LaunchConfiguration("robot_ip")
    checkpoint = LaunchConfiguration("checkpoint")
    device = LaunchConfiguration("device")
    camera_topic = LaunchConfiguration("camera_topic")
    overrides = {"checkpoint": checkpoint, "device": device, "image_topics": [camera_topic]}
    return LaunchDescription([
        DeclareLaunchArgument("robot_ip", description="FR3 control box address"),
        DeclareLaunchArgument("checkpoint", default_value="models/checkpoints/panda"),
        DeclareLaunchArgument("device", default_value="cuda"),
        DeclareLaunchArgument("use_video_node", default_value="true"),
        DeclareLaunchArgument("rviz", default_value="true"),
        DeclareLaunchArgument("camera_topic", default_value="/camera/color/image_raw"),
        DeclareLaunchArgument("trajectory_controller",
                              default_value="/fr3_arm_controller/joint_trajectory"),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(os.path.join(
                get_package_share_directory("franka_bringup"), "launch", "franka.launch.py")),
            launch_arguments={"robot_ip": robot_ip, "load_gripper": "true"}.items(),
        ),
        Node(
            package="uva_policy", executable="policy_node", name="policy_node",
            parameters=[params, overrides],
            remappings=[("/uva/joint_trajectory", LaunchConfiguration("trajectory_controller"))],
            output="screen",
        ),
        Node(
            package="uva_policy", executable="video_node", name="video_node",
            parameters=[params, overrides],
            condition=IfCondition(LaunchConfiguration("use_video_node")),
            output="screen",
        ),
        Node(
            package="rviz2", executable="rviz2", name="rviz2",
            arguments=["-d", os.path.join(share, "rviz", "uva.rviz")],
            condition=IfCondition(LaunchConfiguration("rviz")),
        ),
    ])
