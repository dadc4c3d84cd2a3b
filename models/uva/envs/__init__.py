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
