"""Min-max normalisation of actions and proprio to [-1, 1], with stats stored in checkpoints."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class MinMaxNormalizer:
    low: np.ndarray
    high: np.ndarray

    @classmethod
    def fit(cls, data: np.ndarray, margin: float = 1e-6) -> "MinMaxNormalizer":
        data = np.asarray(data, dtype=np.float64).reshape(-1, data.shape[-1])
        if not np.isfinite(data).all():
            raise ValueError("cannot fit a normalizer on non-finite data")
        return cls(data.min(0) - margin, data.max(0) + margin)

    @property
    def span(self) -> np.ndarray:
        # a constant dimension maps to 0 instead of dividing by zero
        return np.where(self.high - self.low > 1e-8, self.high - self.low, 1.0)

    def normalize(self, x):
        low, span = self._like(x, self.low), self._like(x, self.span)
        return (x - low) / span * 2 - 1

    def unnormalize(self, x):
        low, span = self._like(x, self.low), self._like(x, self.span)
        return (x + 1) / 2 * span + low

    @staticmethod
    def _like(x, arr: np.ndarray):
        if isinstance(x, torch.Tensor):
            return torch.as_tensor(arr, dtype=x.dtype, device=x.device)
        return arr.astype(np.float32) if np.asarray(x).dtype == np.float32 else arr

    def to_dict(self) -> dict:
        return {"low": self.low.tolist(), "high": self.high.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "MinMaxNormalizer":
        return cls(np.asarray(d["low"], dtype=np.float64), np.asarray(d["high"], dtype=np.float64))
