"""UVA with the simulated Franka (uva_sim) instead of the real arm; same nodes and remapping."""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    share = get_package_share_directory("uva_bringup")
    params = os.path.join(share, "config", "sim.yaml")
    overrides = {"checkpoint": LaunchConfiguration("checkpoint"),
                 "device": LaunchConfiguration("device"),
                 "image_topics": [LaunchConfiguration("camera_topic")]}
    return LaunchDescription([
        DeclareLaunchArgument("checkpoint", default_value="models/checkpoints/panda"),
        DeclareLaunchArgument("device", default_value="cpu"),
        DeclareLaunchArgument("use_video_node", default_value="true"),
        DeclareLaunchArgument("rviz", default_value="false"),
        DeclareLaunchArgument("camera_topic", default_value="/camera/color/image_raw"),
        Node(package="uva_sim", executable="sim_node", name="franka_sim", parameters=[params]),
        Node(
            package="uva_policy", executable="policy_node", name="policy_node",
            parameters=[params, overrides],
            remappings=[("/uva/joint_trajectory", "/fr3_arm_controller/joint_trajectory")],
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
