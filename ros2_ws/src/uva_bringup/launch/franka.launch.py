"""UVA on a real Franka FR3: franka_ros2 bringup + the managed policy node (+ video node, rviz2).

The policy's /uva/joint_trajectory (the seven arm joints) is remapped to the arm's joint
trajectory controller; its gripper goals go to franka_gripper's actions (/fr3_gripper/move,
/fr3_gripper/grasp). The UVA nodes are lifecycle nodes: this file configures them (checkpoint
loaded and checked, inference warmed up) and leaves them `inactive`, so nothing moves until an
operator engages:
    ros2 lifecycle set /policy_node activate        (or: ros2 service call /policy_node/engage
                                                      std_srvs/srv/SetBool "{data: true}")
`autostart:=true` makes them activate by themselves instead.

Cameras: franka.yaml has one (scene, `camera_topic:=` replaces its topic). A camera layout file
layered over it names several, e.g. the scene + wrist example:
    ros2 launch uva_bringup franka.launch.py robot_ip:=... camera_params:=franka_2cam.yaml \
        checkpoint:=/path/to/two_camera_ckpt
(the video node then also publishes /uva/predicted_frames/<camera> per camera).

Written against the real launch / launch_ros API (not installable on the dev machine; the same
graph runs there via `python -m uva_bringup.run` from the same YAML).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, EmitEvent, IncludeLaunchDescription,
                            OpaqueFunction)
from launch.conditions import IfCondition, UnlessCondition
from launch.events import matches_action
from launch.launch_description_sources import PythonLaunchDescriptionSource
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


def uva_nodes(context, share, params):
    """The managed UVA nodes from franka.yaml, the `camera_params` layout layered over it (a
    bare file name is one of share/uva_bringup/config), then the launch arguments."""
    autostart = LaunchConfiguration("autostart")
    camera_params = LaunchConfiguration("camera_params").perform(context)
    layout = [camera_params if os.path.isabs(camera_params)
              else os.path.join(share, "config", camera_params)] if camera_params else []
    overrides = {"checkpoint": ParameterValue(LaunchConfiguration("checkpoint"), value_type=str),
                 "device": LaunchConfiguration("device"),
                 "autostart": ParameterValue(autostart, value_type=bool)}
    camera_topic = LaunchConfiguration("camera_topic").perform(context)
    if camera_topic:  # the one camera's topic; a layout file names its cameras' own
        overrides["image_topics"] = [camera_topic]
    policy = LifecycleNode(
        package="uva_policy", executable="policy_node", name="policy_node", namespace="",
        parameters=[params, *layout, overrides],
        remappings=[("/uva/joint_trajectory", LaunchConfiguration("trajectory_controller"))],
        output="screen",
    )
    video = LifecycleNode(
        package="uva_policy", executable="video_node", name="video_node", namespace="",
        parameters=[params, *layout, overrides],
        condition=IfCondition(LaunchConfiguration("use_video_node")),
        output="screen",
    )
    return [policy, video,
            configure(policy, UnlessCondition(autostart)),
            configure(video, UnlessCondition(autostart))]


def generate_launch_description():
    share = get_package_share_directory("uva_bringup")
    params = os.path.join(share, "config", "franka.yaml")
    robot_ip = LaunchConfiguration("robot_ip")
    return LaunchDescription([
        DeclareLaunchArgument("robot_ip", description="FR3 control box address"),
        DeclareLaunchArgument("checkpoint", default_value="",
                              description="checkpoint directory; empty = the one installed "
                                          "with uva_bringup (share/uva_bringup/checkpoints/panda)"),
        DeclareLaunchArgument("device", default_value="cuda"),
        DeclareLaunchArgument("autostart", default_value="false",
                              description="activate the UVA nodes at once (no explicit engage)"),
        DeclareLaunchArgument("use_video_node", default_value="true"),
        DeclareLaunchArgument("rviz", default_value="true"),
        DeclareLaunchArgument("camera_topic", default_value="",
                              description="the one camera's image topic; empty = the YAML's "
                                          "(/camera/color/image_raw)"),
        DeclareLaunchArgument("camera_params", default_value="",
                              description="camera layout YAML layered over franka.yaml, e.g. "
                                          "franka_2cam.yaml (scene + wrist); empty = one camera"),
        DeclareLaunchArgument("trajectory_controller",
                              default_value="/fr3_arm_controller/joint_trajectory"),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(os.path.join(
                get_package_share_directory("franka_bringup"), "launch", "franka.launch.py")),
            launch_arguments={"robot_ip": robot_ip, "load_gripper": "true"}.items(),
        ),
        OpaqueFunction(function=uva_nodes, args=[share, params]),
        Node(
            package="rviz2", executable="rviz2", name="rviz2",
            arguments=["-d", os.path.join(share, "rviz", "uva.rviz")],
            condition=IfCondition(LaunchConfiguration("rviz")),
        ),
    ])
