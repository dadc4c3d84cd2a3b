"""Image-quality numbers shared by training, evaluation and replay: PSNR of tensors in [-1, 1]
and of uint8 frames."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR in dB for tensors in [-1, 1] (peak-to-peak 2)."""
    mse = F.mse_loss(pred.float().clamp(-1, 1), target.float()).item()
    return 10 * math.log10(4.0 / max(mse, 1e-10))


def psnr_uint8(pred: np.ndarray, target: np.ndarray) -> float:
    """PSNR in dB of uint8 frames (the same number `psnr` gives for them mapped to [-1, 1])."""
    to = lambda a: torch.from_numpy(a.astype(np.float32) / 127.5 - 1.0)
    return psnr(to(pred), to(target))
