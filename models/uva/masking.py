"""Masking law and the five UVA task modes.

Each mode decides which inputs the transformer sees and which heads are supervised (as in the
reference implementation):

| mode               | future frames in      | history in | actions in | losses         |
|--------------------|-----------------------|------------|------------|----------------|
| video_model        | randomly masked       | yes        | no         | video          |
| dynamic_model      | randomly masked       | yes        | yes        | video          |
| policy_model       | all masked            | yes        | no         | action         |
| inverse_model      | all visible           | no         | no         | action         |
| full_dynamic_model | randomly masked       | yes        | no         | video + action |
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

from .config import TASK_MODES


@dataclass(frozen=True)
class ModeSpec:
    future_masking: str  # "random" | "all" | "none"
    use_history: bool
    use_actions: bool
    video_loss: bool
    action_loss: bool


MODE_SPECS = {
    "video_model": ModeSpec("random", True, False, True, False),
    "dynamic_model": ModeSpec("random", True, True, True, False),
    "policy_model": ModeSpec("all", True, False, False, True),
    "inverse_model": ModeSpec("none", False, False, False, True),
    "full_dynamic_model": ModeSpec("random", True, False, True, True),
}
assert set(MODE_SPECS) == set(TASK_MODES)


class MaskRatioLaw:
    """Mask ratio ~ normal(1.0, std) truncated to [ratio_min, 1.0] (MAR/UVA)."""

    def __init__(self, ratio_min: float, std: float):
        self.dist = stats.truncnorm((ratio_min - 1.0) / std, 0.0, loc=1.0, scale=std)

    def sample(self, rng: np.random.Generator) -> float:
        return float(self.dist.rvs(random_state=rng))


def random_future_mask(batch: int, n_frames: int, tokens_per_frame: int, ratio: float,
                       generator: torch.Generator | None = None,
                       n_cameras: int = 1) -> torch.Tensor:
    """(B, K*F*S) mask, 1 = hidden, tokens ordered cameras x frames x spatial. One spatial mask
    per sample and camera, shared by all of that camera's future frames; every camera hides the
    same number of tokens. One camera draws exactly the numbers it drew before cameras existed."""
    n_masked = int(np.ceil(tokens_per_frame * ratio))
    noise = torch.rand(batch, n_cameras, tokens_per_frame, generator=generator)
    order = torch.argsort(noise, dim=-1)
    spatial = torch.zeros(batch, n_cameras, tokens_per_frame)
    spatial.scatter_(-1, order[..., :n_masked], 1.0)
    return spatial.unsqueeze(2).expand(-1, -1, n_frames, -1).reshape(batch, -1)


def mode_mask(mode: str, batch: int, n_frames: int, tokens_per_frame: int, ratio: float,
              generator: torch.Generator | None = None, n_cameras: int = 1) -> torch.Tensor:
    spec = MODE_SPECS[mode]
    n_tokens = n_cameras * n_frames * tokens_per_frame
    if spec.future_masking == "all":
        return torch.ones(batch, n_tokens)
    if spec.future_masking == "none":
        return torch.zeros(batch, n_tokens)
    return random_future_mask(batch, n_frames, tokens_per_frame, ratio, generator, n_cameras)
