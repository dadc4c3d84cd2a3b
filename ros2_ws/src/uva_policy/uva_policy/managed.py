"""What the managed (lifecycle) UVA nodes share: where the checkpoint comes from, `autostart`,
and a plain engage/disengage service for operators without lifecycle tooling.

Lifecycle as the nodes use it (rclpy.lifecycle, the standard ~/change_state, ~/get_state):
  unconfigured --configure--> inactive   load + check the checkpoint, warm up inference
  inactive     --activate-->  active     the explicit engage: commands are published only here
  active       --deactivate-> inactive   commanding stops at once
`autostart:=true` runs configure + activate by itself once the node spins (sim graph, tests);
`~/engage` (std_srvs/SetBool) does the same on `true` and deactivates on `false`.
"""
from __future__ import annotations

from pathlib import Path

from lifecycle_msgs.msg import State as StateMsg
from rclpy.lifecycle import TransitionCallbackReturn
from std_srvs.srv import SetBool

DEFAULT_CHECKPOINT = "panda"  # under <share of uva_bringup>/checkpoints/


class CheckpointParameterError(ValueError):
    """The `checkpoint` parameter names nothing usable; the message says what was tried."""


def _share_dirs() -> list[Path]:
    dirs = []
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
        try:
            dirs.append(Path(get_package_share_directory("uva_bringup")))
        except PackageNotFoundError:
            pass
    except ImportError:
        pass
    try:  # a source or editable install: the package's folder holds the same layout
        import uva_bringup
        dirs.append(Path(uva_bringup.__file__).resolve().parent.parent)
    except ImportError:
        pass
    return dirs


def resolve_checkpoint(value: str) -> Path:
    """The checkpoint directory for the `checkpoint` parameter: an existing path (absolute or
    relative to the working directory), else `checkpoints/<value>` in uva_bringup's installed
    share; empty means the shipped default (`checkpoints/panda` there)."""
    if value:
        path = Path(value).expanduser()
        if path.is_dir():
            return path.resolve()
        tried = [str(path.resolve())]
        if not path.is_absolute():
            for share in _share_dirs():
                for candidate in (share / value, share / "checkpoints" / value):
                    if candidate.is_dir():
                        return candidate.resolve()
                    tried.append(str(candidate))
        raise CheckpointParameterError(
            f"parameter 'checkpoint': no checkpoint directory at {value!r} (tried {tried})")
    tried = []
    for share in _share_dirs():
        candidate = share / "checkpoints" / DEFAULT_CHECKPOINT
        if (candidate / "config.json").is_file():
            return candidate.resolve()
        tried.append(str(candidate))
    raise CheckpointParameterError(
        "parameter 'checkpoint' is not set and no installed default checkpoint was found "
        f"(tried {tried}); pass checkpoint:=/path/to/checkpoint")


def lifecycle_state(node) -> str:
    """'unconfigured', 'inactive', 'active', 'finalized' (or the transition's label)."""
    return node._state_machine.current_state[1]


def add_engage_service(node) -> None:
    """`~/engage` (std_srvs/SetBool): true = configure if needed, then activate; false =
    deactivate. The same transitions as the lifecycle services, for a plain `ros2 service call`."""

    def engage(request, response):
        state = lifecycle_state(node)
        if request.data:
            if state == "unconfigured" and node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                response.success, response.message = False, f"configure failed: {node.configure_error}"
                return response
            if lifecycle_state(node) == "inactive":
                node.trigger_activate()
        elif state == "active":
            node.trigger_deactivate()
        state = lifecycle_state(node)
        wanted = ("active",) if request.data else ("inactive", "unconfigured")
        response.success = state in wanted
        response.message = f"state: {state}"
        return response

    node.create_service(SetBool, "~/engage", engage)


def schedule_autostart(node) -> None:
    """With `autostart` true: configure and activate once the executor runs the node."""
    if not node.get_parameter("autostart").value:
        return
    holder = {}

    def start():
        holder["timer"].cancel()
        if node._state_machine.current_state[0] != StateMsg.PRIMARY_STATE_UNCONFIGURED:
            return
        if node.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            node.trigger_activate()
        else:
            node.get_logger().error(f"autostart: configure failed: {node.configure_error}")

    holder["timer"] = node.create_timer(0.01, start)
