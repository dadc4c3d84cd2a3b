"""Simulated environments with scripted experts (all offline)."""
from __future__ import annotations

ENV_NAMES = ("pusht", "panda")


def make_env(name: str, **kwargs):
    """Create an environment by name; unknown names raise a clear ValueError."""
    if name == "pusht":
        from .pusht import PushTEnv
        return PushTEnv(**kwargs)
    if name == "panda":
        from .panda import PandaEnv
        return PandaEnv(**kwargs)
    raise ValueError(f"unknown env '{name}'; choose one of {ENV_NAMES}")
