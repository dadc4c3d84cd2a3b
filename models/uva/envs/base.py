"""The small interface every simulated environment of `uva.envs` offers."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Observation:
    image: np.ndarray  # (H, W, 3) uint8 RGB camera frame
    state: np.ndarray  # proprio: agent position (PushT) or joint positions (Panda)


@dataclass
class StepResult:
    obs: Observation
    reward: float
    done: bool  # the task reached success (episode may stop)
    success: bool
