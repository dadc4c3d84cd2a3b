"""The small interface every simulated environment of `uva.envs` offers."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Observation:
    image: np.ndarray  # (H, W, 3) uint8 RGB frame of the first camera
    state: np.ndarray  # proprio: agent position (PushT) or joint positions (Panda)
    # camera name -> frame, cameras in order, for an env rendering several; None = one camera
    images: dict[str, np.ndarray] | None = None

    @property
    def frames(self) -> dict[str, np.ndarray]:
        """Camera name -> frame (one camera is "scene")."""
        return self.images if self.images is not None else {"scene": self.image}


@dataclass
class StepResult:
    obs: Observation
    reward: float
    done: bool  # the task reached success (episode may stop)
    success: bool
