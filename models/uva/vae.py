"""Frame encoder: a small diffusers `AutoencoderKL` trained on dataset frames, then frozen.

The reference UVA uses a frozen pretrained KL-16 VAE; no weights can be downloaded here, so `uva`
trains its own on the frames it collected (reconstruction + KL) and measures the latent scale.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from .config import UVAConfig
from .metrics import psnr


def build_vae(cfg: UVAConfig) -> AutoencoderKL:
    n = len(cfg.vae_block_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=cfg.vae_block_channels,
        layers_per_block=1,
        latent_channels=cfg.vae_latent_channels,
        norm_num_groups=16,
        sample_size=cfg.image_size,
        mid_block_add_attention=False,  # attention at 8x8 buys nothing for 64 px frames on CPU
    )


def images_to_tensor(images_uint8: torch.Tensor) -> torch.Tensor:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float in [-1, 1]."""
    x = images_uint8.float().div(127.5).sub(1.0)
    return x.movedim(-1, -3)


def tensor_to_images(x: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) in [-1, 1] -> (..., H, W, 3) uint8."""
    return x.movedim(-3, -1).add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)


def vae_loss(vae: AutoencoderKL, x: torch.Tensor, kl_weight: float,
             noise: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """Reconstruction + KL. `noise` (the reparameterisation draw) can be passed in so that
    data-parallel ranks use the same draws a single process would."""
    posterior = vae.encode(x).latent_dist
    if noise is None:
        noise = torch.randn_like(posterior.mean)
    recon = vae.decode(posterior.mean + posterior.std * noise.to(posterior.mean)).sample
    mse = F.mse_loss(recon, x)
    kl = posterior.kl().mean() / x[0].numel()
    return mse + kl_weight * kl, {"mse": mse.item(), "kl": kl.item(), "psnr": psnr(recon, x)}


@torch.no_grad()
def encode_frames(vae: AutoencoderKL, images_uint8: torch.Tensor, scale: float) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> scaled latent means (N, C, h, w). The mean is deterministic, which
    keeps cached latents and control-time latents identical."""
    return vae.encode(images_to_tensor(images_uint8)).latent_dist.mean * scale


@torch.no_grad()
def decode_latents(vae: AutoencoderKL, latents: torch.Tensor, scale: float) -> torch.Tensor:
    """Scaled latents (N, C, h, w) -> (N, H, W, 3) uint8."""
    return tensor_to_images(vae.decode(latents / scale).sample)
