"""The README's commands are real: every command it shows names a make target, a CLI verb and
flags, a module, a launch file and its arguments, or a service that exist; the cheap ones run as
written; and the "Teach it your task" chain (import -> info -> train -> replay-eval) runs as
written on tiny bags with only the training budget shrunk. Running them is slow (a PushT
episode, a benchmark, a training run): `make test-all`; the checks run in CI.

A command the README gains that no rule here checks fails `test_every_readme_command_is_checked`,
so the README cannot drift from the product unnoticed."""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from uva.cli import build_parser
from uva.cli import main as uva_main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TOOLS = ("make", "uva", "python", "ros2", "source")
LIFECYCLE_TRANSITIONS = {"configure", "cleanup", "activate", "deactivate", "shutdown"}


def readme_commands() -> list[list[str]]:
    """Every command of the README's bash blocks (continuations joined, comments dropped) and
    every inline `code` span that starts with a known tool."""
    text = README.read_text()
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        lines += re.sub(r"\\\n\s*", " ", block).splitlines()
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    lines += [s for s in re.findall(r"`([^`\n]+)`", prose) if s.split(" ", 1)[0] in TOOLS
              and " " in s]
    commands = []
    for line in lines:
        argv = shlex.split(line, comments=True)
        if argv:
            commands.append(argv)
    return commands


def _check_make(argv):
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    missing = [t for t in argv[1:] if t not in targets]
    assert not missing, f"make targets {missing} not in the Makefile"


def _check_uva(argv):
    """A whole command must parse; a bare mention of a verb (`uva collect`, `uva dataset
    import`: no flags) must name one (its --help exits 0)."""
    args = argv[1:]
    mention = not any(a.startswith("-") for a in args) and len(args) <= 2
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(args + (["--help"] if mention else []))
    except SystemExit as e:
        if not (mention and e.code == 0):
            raise AssertionError(f"`{shlex.join(argv)}` does not parse (exit {e.code})") from None


def _check_python(argv):
    if argv[1] == "-m":
        module, args = argv[2], argv[3:]
        assert importlib.util.find_spec(module) is not None, f"no module {module}"
        cmd = [sys.executable, "-m", module, "--help"]
    else:
        assert (ROOT / argv[1]).is_file(), f"no script {argv[1]}"
        args = argv[2:]
        cmd = [sys.executable, str(ROOT / argv[1]), "--help"]
    help_text = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120).stdout
    unknown = [a.split("=")[0] for a in args if a.startswith("--")
               and a.split("=")[0] not in help_text]
    assert not unknown, f"`{shlex.join(argv)}`: {unknown} not in its --help"


def _node_sources() -> str:
    pkg = ROOT / "ros2_ws" / "src"
    return "\n".join(p.read_text() for p in pkg.glob("*/*/*.py"))


def _check_ros2(argv):
    verb = argv[1]
    if verb == "launch":
        launch = ROOT / "ros2_ws" / "src" / argv[2] / "launch" / argv[3]
        assert launch.is_file(), f"no launch file {launch}"
        declared = set(re.findall(r'DeclareLaunchArgument\(\s*"(\w+)"', launch.read_text()))
        used = [a.split(":=")[0] for a in argv[4:] if ":=" in a]
        assert set(used) <= declared, f"{argv[3]}: {set(used) - declared} not declared ({declared})"
    elif verb == "service":
        assert argv[2] == "call"
        node, service = argv[3].strip("/").split("/")
        srv_type = argv[4].split("/")[-1]
        src = _node_sources()
        assert re.search(rf'create_service\(\s*{srv_type}\s*,\s*"(~/)?{service}"', src), \
            f"no node creates a {srv_type} service '{service}'"
        assert re.search(rf'\b{node}\b', src), f"no node named {node}"
    elif verb == "lifecycle":
        assert argv[2] == "set" and argv[4] in LIFECYCLE_TRANSITIONS, argv
        assert re.search(r"LifecycleNode|lifecycle", _node_sources())
    else:
        raise AssertionError(f"README uses `ros2 {verb}`, which no rule here checks")


def _check_source(argv):
    assert (ROOT / argv[1]).is_file(), f"no file {argv[1]}"


CHECKS = {"make": _check_make, "uva": _check_uva, "python": _check_python,
          "ros2": _check_ros2, "source": _check_source}


def test_readme_has_commands():
    commands = readme_commands()
    tools = {c[0] for c in commands}
    assert {"make", "uva", "ros2", "python"} <= tools, tools
    assert ["make", "demo"] in commands and ["make", "test"] in commands


@pytest.mark.parametrize("argv", readme_commands(), ids=shlex.join)
def test_every_readme_command_is_checked(argv):
    assert argv[0] in CHECKS, f"README command `{shlex.join(argv)}`: no rule checks `{argv[0]}`"
    CHECKS[argv[0]](argv)


def _readme(prefix: str) -> list[str]:
    hits = [c for c in readme_commands() if shlex.join(c).startswith(prefix)]
    assert hits, f"the README no longer shows `{prefix} ...`"
    return hits[0]


def _with(argv: list[str], **values) -> list[str]:
    """argv with the values of the given --flags replaced (flag names with _ for -)."""
    out = list(argv)
    for key, value in values.items():
        flag = "--" + key.replace("_", "-")
        out[out.index(flag) + 1] = str(value)
    return out


@pytest.mark.slow
def test_readme_cheap_commands_run_as_written(tmp_path, monkeypatch):
    """`uva train --recipe ... --plan`, `uva eval` (one episode) and `uva bench --cameras 2`
    (two repeats), outputs under a temporary directory."""
    monkeypatch.chdir(ROOT)
    plan = _readme("uva train --recipe configs/pusht.yaml --plan")
    assert uva_main(plan[1:]) == 0
    ev = _with(_readme("uva eval"), episodes=1, out=tmp_path / "eval") + ["--gifs", "0"]
    assert uva_main(["--threads", "2", *ev[1:]]) == 0
    assert json.loads((tmp_path / "eval" / "eval.json").read_text())["episodes"] == 1
    bench = _with(_readme("uva bench"), out=tmp_path / "bench.json") + ["--repeats", "2"]
    assert uva_main(bench[1:]) == 0
    assert (tmp_path / "bench.json").is_file()


def write_panda_bag(path: Path, topics: dict, steps: int, t0: int) -> None:
    """A short FR3 demonstration on the shipped record_demos topics: a 64x64 scene camera, the
    arm + finger joint states and the teleoperator's whole command, at 10 Hz."""
    import numpy as np
    from ros_helpers import HOME
    from uva.rosbag import BagWriter
    rng = np.random.default_rng(t0 % 1000)
    names = list(topics["joint_names"])
    with BagWriter(path, "mcap") as bag:
        cam = topics["cameras"]["scene"]
        for topic, kind in ((cam, "Image"), (topics["joint_states_topic"], "JointState"),
                            (topics["action_topic"], "JointState")):
            bag.add_topic(topic, f"sensor_msgs/msg/{kind}")
        q = np.array(HOME, float)
        for k in range(steps):
            t = t0 + k * 10**8
            bag.write(cam, t, bag.image(t, rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)))
            bag.write(topics["joint_states_topic"], t, bag.joint_state(t, names, q))
            q = q + rng.normal(0, 0.01, len(q)) * np.r_[np.ones(7), 0.0]  # the arm moves
            bag.write(topics["action_topic"], t + 4 * 10**7, bag.joint_state(t + 4 * 10**7, names, q))


@pytest.mark.slow
def test_readme_teach_your_task_chain_runs_as_written(tmp_path, monkeypatch):
    """The README's import -> info -> train -> replay-eval commands, in their order and with
    their paths, on three tiny FR3 bags (two demos, one held out) recorded on the shipped
    record_demos topics; only the training budget is shrunk."""
    import yaml
    (tmp_path / "models").symlink_to(ROOT / "models")  # the README's paths are repo-relative
    monkeypatch.chdir(tmp_path)
    topics_file = ROOT / "ros2_ws/src/uva_bringup/config/record_demos.topics.yaml"
    topics = yaml.safe_load(topics_file.read_text())
    imp = _readme("uva dataset import --bag")
    bags = [imp[i + 1] for i, a in enumerate(imp) if a == "--bag"]
    replay = _readme("uva replay-eval")
    held_out = replay[replay.index("--bag") + 1]
    for i, bag in enumerate([*bags, held_out]):
        Path(bag).parent.mkdir(parents=True, exist_ok=True)
        write_panda_bag(Path(bag), topics, steps=40, t0=1_700_000_000 * 10**9 + i * 10**11)
    Path(imp[imp.index("--topics") + 1]).write_text(topics_file.read_text())
    assert uva_main(imp[1:]) == 0
    assert uva_main(_readme("uva dataset info")[1:]) == 0
    train = [c for c in readme_commands() if c[0] == "uva" and "train" in c and "--data" in c
             and "--recipe" not in c]
    assert train, "the README no longer shows the training command of its chain"
    train = _with(train[0], head_steps=2, batch_size=4) + ["--ckpt-every", "2",
                                                          "--eval-every", "1000"]
    assert uva_main(train[1:]) == 0
    assert uva_main(replay[1:]) == 0
    out = Path(replay[replay.index("--out") + 1])
    assert any(out.glob("*.json")), list(out.iterdir())
