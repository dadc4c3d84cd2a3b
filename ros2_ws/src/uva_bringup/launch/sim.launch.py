"""UVA with the simulated Franka (uva_sim) instead of the real arm: the same managed nodes and
wiring (arm trajectory remapped to /fr3_arm_controller/joint_trajectory, gripper goals to the
sim's /fr3_gripper actions). `autostart` defaults to true here (sim.yaml too); with
`autostart:=false` the nodes are configured and wait `inactive` for an engage, as on the robot.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent
from launch.conditions import IfCondition, UnlessCondition
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.events.lifecycle import ChangeState
from launch_ros.parameter_descriptions import ParameterValue
from lifecycle_msgs.msg import Transition


def configure(node, condition):
    """Bring a lifecycle node to `inactive` (unless it autostarts by itself)."""
    return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                       transition_id=Transition.TRANSITION_CONFIGURE),
                     condition=condition)


def generate_launch_description():
    share = get_package_share_directory("uva_bringup")
    params = os.path.join(share, "config", "sim.yaml")
    autostart = LaunchConfiguration("autostart")
    overrides = {"checkpoint": ParameterValue(LaunchConfiguration("checkpoint"), value_type=str),
                 "device": LaunchConfiguration("device"),
                 "image_topics": [LaunchConfiguration("camera_topic")],
                 "autostart": ParameterValue(autostart, value_type=bool)}
    policy = LifecycleNode(
        package="uva_policy", executable="policy_node", name="policy_node", namespace="",
        parameters=[params, overrides],
        remappings=[("/uva/joint_trajectory", "/fr3_arm_controller/joint_trajectory")],
        output="screen",
    )
    video = LifecycleNode(
        package="uva_policy", executable="video_node", name="video_node", namespace="",
        parameters=[params, overrides],
        condition=IfCondition(LaunchConfiguration("use_video_node")),
        output="screen",
    )
    return LaunchDescription([
        DeclareLaunchArgument("checkpoint", default_value="",
                              description="checkpoint directory; empty = the installed panda one"),
        DeclareLaunchArgument("device", default_value="cpu"),
        DeclareLaunchArgument("autostart", default_value="true"),
        DeclareLaunchArgument("use_video_node", default_value="true"),
        DeclareLaunchArgument("rviz", default_value="false"),
        DeclareLaunchArgument("camera_topic", default_value="/camera/color/image_raw"),
        Node(package="uva_sim", executable="sim_node", name="franka_sim", parameters=[params]),
        policy,
        video,
        configure(policy, UnlessCondition(autostart)),
        configure(video, UnlessCondition(autostart)),
        Node(
            package="rviz2", executable="rviz2", name="rviz2",
            arguments=["-d", os.path.join(share, "rviz", "uva.rviz")],
            condition=IfCondition(LaunchConfiguration("rviz")),
        ),
    ])
