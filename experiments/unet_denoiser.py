"""Temporal-conv U-Net noise predictor for an action chunk (Diffusion Policy's head shape), used
by state_policy_probe.py `--head unet`. It was once an `action_denoiser` option of uva's action
head; on PushT it matched the MLP-AdaLN denoiser on true state and was no better on frames
(docs/findings.md), so the product keeps the MLP only and this copy lives with the probe."""
from __future__ import annotations

import torch
import torch.nn as nn
from einops import rearrange

from uva.heads import timestep_embedding


class FiLMConvBlock(nn.Module):
    """Two conv-GroupNorm-Mish layers over time; the condition scales and shifts the first."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv1d(c_in, c_out, 3, padding=1), nn.GroupNorm(8, c_out),
                                   nn.Mish())
        self.conv2 = nn.Sequential(nn.Conv1d(c_out, c_out, 3, padding=1), nn.GroupNorm(8, c_out),
                                   nn.Mish())
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * c_out))
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(cond)[..., None].chunk(2, dim=1)
        return self.conv2(self.conv1(x) * (1 + scale) + shift) + self.skip(x)


class TemporalUNetDenoiser(nn.Module):
    """(noisy flat chunk, timestep, condition) -> predicted noise, through a two-level U-Net over
    the chunk's time axis with FiLM conditioning (Diffusion Policy's head shape, sized for 8-16
    step chunks). Convolving along time lets neighbouring steps share evidence, which the MLP
    over the flattened chunk has to learn. `width` = channels of the first level (multiple of 8);
    the chunk length must be even (one stride-2 level)."""

    def __init__(self, horizon: int, action_dim: int, cond_dim: int, width: int):
        super().__init__()
        self.horizon, self.action_dim, self.width = horizon, action_dim, width
        c = width + cond_dim
        self.time_embed = nn.Sequential(nn.Linear(width, width), nn.Mish(), nn.Linear(width, width))
        self.down1 = FiLMConvBlock(action_dim, width, c)
        self.down2 = FiLMConvBlock(width, 2 * width, c)
        self.pool = nn.Conv1d(width, width, 3, stride=2, padding=1)
        self.mid = FiLMConvBlock(2 * width, 2 * width, c)
        self.up = nn.ConvTranspose1d(2 * width, width, 4, stride=2, padding=1)
        self.up1 = FiLMConvBlock(2 * width, width, c)
        self.out = nn.Conv1d(width, action_dim, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        c = torch.cat([self.time_embed(timestep_embedding(t, self.width)), cond], dim=-1)
        h = rearrange(x, "n (h a) -> n a h", h=self.horizon)
        skip = self.down1(h, c)
        h = self.mid(self.down2(self.pool(skip), c), c)
        h = self.up1(torch.cat([self.up(h), skip], dim=1), c)
        return rearrange(self.out(h), "n a h -> n (h a)")
