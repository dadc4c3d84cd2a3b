"""Inference fast paths: the same functions as the eager modules, with less overhead at batch 1.

* `FrameEncoder`: the frozen VAE's encoder (encoder + quant conv -> latent mean), traced,
  frozen and optimised for inference by TorchScript on CPU (convolutions prepacked for oneDNN;
  eager PyTorch runs most of these small convolutions at batch 1 on its slow im2col path:
  ~4.3 -> ~2.5 ms per 64 px frame on one EPYC core). Built once at policy load, checked against
  the eager encoder on a probe frame, and replaced by the eager encoder whenever tracing fails
  or disagrees (`reason` says why), so it can never change what is computed beyond float
  rounding (FAST_TOLERANCE).

The action head's fast sampling loop lives beside the head (heads.DiffusionSampler.sample).
"""
from __future__ import annotations

import warnings

import torch
import torch.nn as nn

from .vae import encode_frames, images_to_tensor

FAST_TOLERANCE = 1e-4
"""Max |fast - reference| accepted on scaled latents and on normalised actions (float32
rounding of a regrouped computation is ~1e-6; tests/test_realtime.py checks both)."""


class _EncoderMean(nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.encoder, self.quant_conv = vae.encoder, vae.quant_conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        moments = self.encoder(x)
        if self.quant_conv is not None:
            moments = self.quant_conv(moments)
        return moments.chunk(2, dim=1)[0]  # DiagonalGaussianDistribution.mean


class FrameEncoder:
    """uint8 frames (N, S, S, 3) -> scaled latents (N, C, h, w), as vae.encode_frames."""

    def __init__(self, vae, image_size: int, scale: float, device: torch.device,
                 fast: bool = True):
        self.vae, self.scale, self.device = vae, scale, torch.device(device)
        self.traced = None
        self.reason = "reference path requested" if not fast else ""
        if fast and self.device.type != "cpu":
            self.reason = "TorchScript freezing is used on CPU only; eager on " + self.device.type
        elif fast:
            self._build(image_size)

    def _build(self, image_size: int) -> None:
        probe = torch.Generator().manual_seed(0)
        frames = torch.randint(0, 256, (2, image_size, image_size, 3), generator=probe,
                               dtype=torch.uint8).to(self.device)
        x = images_to_tensor(frames)
        try:
            with torch.no_grad(), warnings.catch_warnings():
                # diffusers' shape asserts become constants in the trace: fine, shapes are fixed
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                module = _EncoderMean(self.vae).eval()
                traced = torch.jit.optimize_for_inference(
                    torch.jit.freeze(torch.jit.trace(module, x[:1], check_trace=False)))
                got = torch.cat([traced(x[i:i + 1]) for i in range(2)] + [traced(x)]) * self.scale
            want = encode_frames(self.vae, frames, self.scale)
            err = (got - torch.cat([want, want])).abs().max().item()
        except Exception as e:  # any tracing/freezing failure: eager encoder, reason kept
            self.reason = f"tracing the VAE encoder failed ({type(e).__name__}: {e}); eager"
            return
        if not err <= FAST_TOLERANCE:
            self.reason = f"traced VAE encoder disagrees with eager ({err:.2e}); eager"
            return
        self.traced = traced

    @property
    def fast(self) -> bool:
        return self.traced is not None

    def __call__(self, frames_uint8: torch.Tensor, fast: bool = True) -> torch.Tensor:
        if not (fast and self.traced is not None):
            return encode_frames(self.vae, frames_uint8, self.scale)
        return self.traced(images_to_tensor(frames_uint8)) * self.scale
