"""Launch files and parameter YAML are consistent with the nodes they start (launch_ros itself
cannot be installed here, so the files are checked statically against the real packages)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "ros2_ws" / "src"
LAUNCH = SRC / "uva_bringup" / "launch"
EXTERNAL = {"rviz2": {"rviz2"}}  # packages outside this repo and their executables


def entry_points(package: str) -> set[str]:
    text = (SRC / package / "setup.py").read_text()
    return set(re.findall(r'"(\w+) = ', text))


def declared_parameters(node_name: str) -> set[str]:
    from uva_policy import policy_node, video_node
    from uva_sim import sim_node
    return set({"policy_node": policy_node.PARAMETERS, "video_node": video_node.PARAMETERS,
                "franka_sim": sim_node.PARAMETERS}[node_name])


def launch_nodes(path: Path) -> list[dict]:
    """Every launch_ros Node(...) / LifecycleNode(...) call: package, executable, name,
    override keys, remaps, and whether it is managed."""
    tree = ast.parse(path.read_text())
    overrides = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            overrides[node.targets[0].id] = [k.value for k in node.value.keys]
    nodes = []
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and getattr(call.func, "id", None) in ("Node", "LifecycleNode"):
            kw = {k.arg: k.value for k in call.keywords}
            info = {k: kw[k].value for k in ("package", "executable", "name") if k in kw}
            info["lifecycle"] = call.func.id == "LifecycleNode"
            info["has_namespace"] = "namespace" in kw  # launch_ros' LifecycleNode requires it
            info["override_keys"] = []
            if "parameters" in kw:
                for el in kw["parameters"].elts:
                    if isinstance(el, ast.Name) and el.id in overrides:
                        info["override_keys"] += overrides[el.id]
                    elif isinstance(el, ast.Dict):
                        info["override_keys"] += [k.value for k in el.keys]
            info["remaps"] = []
            if "remappings" in kw:
                info["remaps"] = [e.elts[0].value for e in kw["remappings"].elts
                                  if isinstance(e.elts[0], ast.Constant)]
            nodes.append(info)
    return nodes


def launch_arguments(path: Path) -> tuple[set[str], set[str]]:
    tree = ast.parse(path.read_text())
    declared, used = set(), set()
    for call in ast.walk(tree):
        if isinstance(call, ast.Call):
            name = getattr(call.func, "id", None)
            if name in ("DeclareLaunchArgument", "LaunchConfiguration") and call.args:
                (declared if name == "DeclareLaunchArgument" else used).add(call.args[0].value)
    return declared, used


@pytest.mark.parametrize("launch_file", ["franka.launch.py", "sim.launch.py"])
def test_launch_file_is_consistent(launch_file):
    path = LAUNCH / launch_file
    nodes = launch_nodes(path)
    assert {n["executable"] for n in nodes} >= {"policy_node", "video_node"}
    for n in nodes:
        if n["package"] in EXTERNAL:
            assert n["executable"] in EXTERNAL[n["package"]]
            continue
        assert n["executable"] in entry_points(n["package"]), n
        for key in n["override_keys"]:
            assert key in declared_parameters(n["name"]), (n["name"], key)
        for topic in n["remaps"]:
            assert topic == "/uva/joint_trajectory"  # the only topic we remap: policy -> controller
    declared, used = launch_arguments(path)
    assert used <= declared, used - declared
    assert {"checkpoint", "device", "use_video_node", "rviz", "camera_topic", "autostart"} <= declared
    if launch_file == "franka.launch.py":
        assert "robot_ip" in declared
    # the UVA nodes are managed: launched as LifecycleNodes, configured by an emitted event
    # unless they autostart, never activated by the launch file itself
    managed = [n for n in nodes if n["executable"] in ("policy_node", "video_node")]
    assert all(n["lifecycle"] and n["has_namespace"] for n in managed)
    text = path.read_text()
    assert "TRANSITION_CONFIGURE" in text and "UnlessCondition(autostart)" in text
    assert "TRANSITION_ACTIVATE" not in text
    default = {"franka.launch.py": "false", "sim.launch.py": "true"}[launch_file]
    assert re.search(r'DeclareLaunchArgument\("autostart", default_value="%s"' % default, text)
    assert re.search(r'DeclareLaunchArgument\("checkpoint", default_value=""', text)


@pytest.mark.parametrize("yaml_file", ["sim.yaml", "franka.yaml"])
def test_every_yaml_parameter_is_declared(yaml_file):
    data = yaml.safe_load((SRC / "uva_bringup" / "config" / yaml_file).read_text())
    assert {"policy_node", "video_node"} <= set(data)
    for node_name, section in data.items():
        params = section["ros__parameters"]
        unknown = set(params) - declared_parameters(node_name)
        assert not unknown, (yaml_file, node_name, unknown)
        if node_name == "policy_node":
            n = len(params["joint_names"])
            assert len(params["joint_lower_limits"]) == len(params["joint_upper_limits"]) == n
            assert params["gripper_joint"] in params["joint_names"]
            assert params["gripper_namespace"] == "/fr3_gripper"
            assert params["autostart"] is (yaml_file == "sim.yaml")  # the robot waits for engage
            assert params["checkpoint"] == ""  # the installed default, not a cwd-relative path
        if node_name == "franka_sim":
            assert params["gripper_namespace"] == "/fr3_gripper"


def test_runner_builds_the_same_graph_as_the_sim_launch_file():
    from uva_bringup.run import CONFIG, TRAJECTORY_CONTROLLER, node_commands
    cmds = dict(node_commands("sim", "ckpt", True, None))
    launched = {n["name"] for n in launch_nodes(LAUNCH / "sim.launch.py") if n["package"] != "rviz2"}
    assert set(cmds) == launched
    for name, argv in cmds.items():
        assert argv[argv.index("--params-file") + 1] == str(CONFIG["sim"])
        assert f"__node:={name}" in argv
    assert f"/uva/joint_trajectory:={TRAJECTORY_CONTROLLER}" in cmds["policy_node"]
    sim_yaml = yaml.safe_load(CONFIG["sim"].read_text())
    assert sim_yaml["franka_sim"]["ros__parameters"]["trajectory_topic"] == TRAJECTORY_CONTROLLER


def image_displays(displays: list) -> dict[str, bool]:
    """{topic: shown by default} of every Image display, inside groups too."""
    out = {}
    for d in displays:
        if d["Class"] == "rviz_common/Group":
            out.update({t: on and d["Enabled"] for t, on in image_displays(d["Displays"]).items()})
        elif d["Class"] == "rviz_default_plugins/Image":
            out[d["Topic"]["Value"]] = d["Enabled"]
    return out


def test_rviz_config_displays_topics_our_nodes_publish():
    from uva_policy.video_node import PREDICTED_TOPIC, camera_topics
    rviz = yaml.safe_load((SRC / "uva_bringup" / "rviz" / "uva.rviz").read_text())
    images = image_displays(rviz["Visualization Manager"]["Displays"])
    # one camera, shown by default: the camera and its strip (all strips stacked for several)
    assert {t for t, on in images.items() if on} == {"/camera/color/image_raw", PREDICTED_TOPIC}
    # the two-camera layout of franka_2cam.yaml, one group: each camera and each camera's strip
    layout = yaml.safe_load((SRC / "uva_bringup" / "config" / "franka_2cam.yaml").read_text())
    video = layout["video_node"]["ros__parameters"]
    assert set(images) == {PREDICTED_TOPIC, *video["image_topics"],
                           *camera_topics(video["camera_names"]).values()}
    assert set(camera_topics(["scene", "wrist"]).values()) == \
        {"/uva/predicted_frames/scene", "/uva/predicted_frames/wrist"}
    video_src = (SRC / "uva_policy" / "uva_policy" / "video_node.py").read_text()
    assert PREDICTED_TOPIC == "/uva/predicted_frames"
    assert "create_lifecycle_publisher(Image, PREDICTED_TOPIC" in video_src
    assert "create_lifecycle_publisher(Image, t," in video_src  # one per camera
    sim_src = (SRC / "uva_sim" / "uva_sim" / "sim_node.py").read_text()
    assert 'create_publisher(Image, "/camera/color/image_raw"' in sim_src


def test_two_camera_layout_yaml_over_franka_yaml_gives_both_nodes_scene_and_wrist():
    """franka_2cam.yaml layered over franka.yaml (as franka.launch.py camera_params:= does):
    valid parameter sets for both nodes naming the same two cameras on the same topics."""
    from uva_policy import parameters as P
    config = SRC / "uva_bringup" / "config"
    base = yaml.safe_load((config / "franka.yaml").read_text())
    layout = yaml.safe_load((config / "franka_2cam.yaml").read_text())
    assert set(layout) == {"policy_node", "video_node"}
    topics = set()
    for name, specs in (("policy_node", P.POLICY), ("video_node", P.VIDEO)):
        extra = layout[name]["ros__parameters"]
        assert set(extra) <= declared_parameters(name), (name, set(extra))
        merged = {**{k: s.default for k, s in specs.items()},
                  **base[name]["ros__parameters"], **extra}
        assert P.check(merged, specs) == "", name
        assert merged["camera_names"] == ["scene", "wrist"]
        assert merged["image_topics"][0] == base[name]["ros__parameters"]["image_topics"][0]
        topics.add(tuple(merged["image_topics"]))
    assert len(topics) == 1  # both nodes read the same streams
    text = (LAUNCH / "franka.launch.py").read_text()
    assert 'DeclareLaunchArgument("camera_params"' in text and "franka_2cam.yaml" in text
