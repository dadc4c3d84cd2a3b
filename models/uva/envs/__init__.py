"""Simulated environments with scripted experts (all offline)."""
from __future__ import annotations

ENV_NAMES = ("pusht", "panda")


def env_class(name: str) -> type:
    """The environment class for a name (its class attributes, e.g. control_hz, without building
    a simulator); unknown names raise a clear ValueError."""
    if name == "pusht":
        from .pusht import PushTEnv
        return PushTEnv
    if name == "panda":
        from .panda import PandaEnv
        return PandaEnv
    raise ValueError(f"unknown env '{name}'; choose one of {ENV_NAMES}")


def make_env(name: str, **kwargs):
    """Create an environment by name; unknown names raise a clear ValueError."""
    return env_class(name)(**kwargs)


def env_cameras(env_name: str, cameras) -> tuple[str, ...] | None:
    """The cameras to record from `env_name` (None: its one default camera), checked against
    what the env renders."""
    if cameras is None:
        return None
    cameras = tuple(cameras)
    offered = getattr(env_class(env_name), "camera_names", ("scene",))
    if not cameras or any(c not in offered for c in cameras) or len(set(cameras)) != len(cameras):
        raise ValueError(f"env '{env_name}' renders cameras {list(offered)}; asked for "
                         f"{list(cameras)}")
    return None if cameras == ("scene",) else cameras


def make_env_for(name: str, cameras) -> object:
    """The env rendering every camera a checkpoint names (`cfg.cameras`); a one-camera model
    whose camera the env does not name gets the env's own view."""
    offered = getattr(env_class(name), "camera_names", ("scene",))
    cameras = list(cameras)
    rendered = None if len(cameras) == 1 and cameras[0] not in offered else env_cameras(name, cameras)
    return make_env(name, **({"cameras": rendered} if rendered else {}))
