"""Does UVA's policy head gain from a pixel encoder trained for the policy, beside the frozen VAE?

Every frame reaches UVA's action head through the frozen 8x8x4 VAE latent and the transformer.
Diffusion Policy instead trains its image encoder on the policy loss (with random-crop
augmentation), and the pose read-out probe put the T's position at 1.7 px from raw frames but
3.3 px from the VAE latent. This asks whether a small CNN on the raw history frames, trained with
the head, adds what the frozen path loses -- the lever "whether the frame encoder may adapt",
measured without touching the backbone (the VAE, transformer and video head stay as they are, so
the video modes cannot change).

Arms, every one a fresh action head from the same init, batch, seed, steps and LR schedule
(experiments/augment/head_shift.py's train_head: AdamW, cosine, EMA) on the frozen backbone's
policy-mode latents of the training episodes:

  plain           the head as the product builds it (condition = conv readout of the joint latent)
  pixels          + a CNN (3 stride-2 convs, GroupNorm, spatial-softmax keypoints) on each history
                  frame; its per-frame feature is added to the head's per-frame condition through
                  a zero-initialised linear map (so the arm starts as `plain`), trained jointly;
                  frames randomly shifted by up to --pad px per window in training (DrQ / DP's crop)
  pixels_noshift  the same without the shift
  pixels_only     the head reads the CNN alone, not the joint latent (Diffusion Policy's shape:
                  an encoder trained on the action loss is all the head sees), frames shifted

Scored closed loop on the same seeds (uva.evaluate.paired_rollouts: same env and torch seeds per
episode), with each arm's predict_action latency.

    python experiments/heads/pixel_encoder.py --data data/pusht200.zarr --steps 5000 \
        --episodes 100 --first-seed 800000 --out experiments/heads/pixel_encoder.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "augment"))
from head_shift import (fit, fresh_head, pair_with, probe_args, probe_start,  # noqa: E402
                        train_head)

ARMS = ("plain", "pixels", "pixels_noshift", "pixels_only")


class SpatialSoftmax(nn.Module):
    """(B, C, H, W) -> (B, 2K): the expected (x, y) in [-1, 1] of K learned keypoint maps."""

    def __init__(self, channels: int, keypoints: int, size: int):
        super().__init__()
        self.proj = nn.Conv2d(channels, keypoints, 1)
        lin = torch.linspace(-1, 1, size)
        ys, xs = torch.meshgrid(lin, lin, indexing="ij")
        self.register_buffer("grid", torch.stack([xs.flatten(), ys.flatten()], -1))  # (HW, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attn = self.proj(x).flatten(2).softmax(-1)  # (B, K, HW)
        return (attn @ self.grid).flatten(1)


class PixelHead(nn.Module):
    """UVA's action head with a trained pixel path added to its per-frame condition."""

    def __init__(self, head, image_size: int, channels=(16, 32, 32), keypoints: int = 32,
                 use_latent: bool = True):
        super().__init__()
        self.head, self.use_latent = head, use_latent
        layers, c_in = [], 3
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.GroupNorm(8, c), nn.SiLU()]
            c_in = c
        self.cnn = nn.Sequential(*layers)
        self.keypoints = SpatialSoftmax(c_in, keypoints, image_size // 2 ** len(channels))
        self.pixel_fc = nn.Linear(2 * keypoints, head.frame_fc.out_features)
        nn.init.zeros_(self.pixel_fc.weight)
        nn.init.zeros_(self.pixel_fc.bias)

    def condition(self, z: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """z (B, F*S, C) joint latent, frames (B, F, H, W, 3) uint8 -> (B, horizon * channels)."""
        h = self.head
        grid = rearrange(z, "b (f h w) c -> (b f) c h w", f=h.n_frames, h=h.grid_size)
        x = rearrange(frames, "b f h w c -> (b f) c h w").float() / 127.5 - 1.0
        per_frame = self.pixel_fc(self.keypoints(self.cnn(x)))
        if self.use_latent:
            per_frame = per_frame + h.frame_fc(h.frame_conv(grid).flatten(1))
        per_frame = rearrange(per_frame, "(b f) c -> b c f", f=h.n_frames)
        per_step = F.interpolate(per_frame, size=h.horizon, mode="linear", align_corners=True)
        return rearrange(per_step, "b c h -> b (h c)")

    def loss(self, z, frames, actions, repeats: int, generator) -> torch.Tensor:
        h = self.head
        target = rearrange(actions, "b h a -> b (h a)")
        t, noise = h.diffusion.draw((repeats, z.shape[0], target.shape[-1]), generator, z.device)
        return h.diffusion.training_loss(h.denoiser, target, self.condition(z, frames), t, noise)

    @torch.no_grad()
    def sample(self, z, frames, generator, temperature: float) -> torch.Tensor:
        h = self.head
        flat = h.diffusion.sample(h.denoiser, self.condition(z, frames),
                                  h.horizon * h.action_dim, generator, temperature, fast=True)
        return rearrange(flat, "b (h a) -> b h a", h=h.horizon)


def shifted_windows(frames: np.ndarray, pad: int, rng: np.random.Generator) -> np.ndarray:
    """(B, F, H, W, 3) uint8, each window's frames moved by one random offset in [-pad, pad]."""
    from uva.training.augment import shift_frames  # the product's (the joint stage uses it)
    out = np.empty_like(frames)
    for b, (dx, dy) in enumerate(rng.integers(-pad, pad + 1, (len(frames), 2))):
        out[b] = shift_frames(frames[b], int(dx), int(dy), pad)
    return out


def train_pixel_head(model, cfg, z_all, images, actions, index, steps: int, batch: int, lr: float,
                     seed: int, pad: int, use_latent: bool = True, warmup: int = 100):
    """A fresh action head (train_head's init) + pixel path trained jointly; EMA weights."""
    head = fresh_head(model)
    torch.manual_seed(2000)
    pix = PixelHead(head, cfg.image_size, use_latent=use_latent).train().requires_grad_(True)
    params = [p for n, p in pix.named_parameters()  # the unused latent readout stays out
              if use_latent or not n.startswith(("head.frame_conv.", "head.frame_fc."))]
    rng, shift_rng = np.random.default_rng(seed), np.random.default_rng([seed, 1])
    gen = torch.Generator().manual_seed(seed)

    def loss_at(step):
        rows = rng.integers(0, len(index), batch)
        frames = images[index.history[rows]]
        if pad:
            frames = shifted_windows(frames, pad, shift_rng)
        return pix.loss(z_all[rows].float(), torch.from_numpy(frames),
                        actions[index.actions[rows]], cfg.diffusion_batch_mul, gen)

    info = fit(params, steps, lr, loss_at, f"pixels(pad {pad})", warmup)
    info["pixel_parameters"] = sum(p.numel() for n, p in pix.named_parameters()
                                   if not n.startswith("head."))
    return pix.eval(), info


def with_pixel_head(policy, pix):
    """`policy` (a loaded UVAPolicy) acting through `pix`: the product's encoding, backbone and
    checks, then the pixel head on the newest window's raw frames (never shifted)."""
    camera = policy.cfg.cameras[0]

    @torch.inference_mode()
    def predict_action(obs: dict, seed: int | None = None) -> np.ndarray:
        images, state = policy._check_obs(obs)
        backbone = policy.backbone if (policy.fast and policy.backbone is not None) else policy.model
        z = backbone.policy_latent(policy.encode(images, for_policy=True), policy._proprio(state))
        frames = torch.from_numpy(np.ascontiguousarray(images[camera]))[None]
        chunk = pix.sample(z, frames, policy._generator(seed), policy.cfg.action_temperature)
        return policy._actions_out(chunk[0])

    policy.predict_action = predict_action
    return policy


def latency_ms(policy, data_images: np.ndarray, state: np.ndarray, n: int = 60) -> dict:
    """predict_action wall time over n windows of real frames (cache cleared each call)."""
    times = []
    F_ = policy.cfg.n_frames
    for i in range(n):
        policy.reset()
        window = {"image": data_images[i * 7:i * 7 + F_], "state": state[i * 7:i * 7 + F_]}
        t0 = time.perf_counter()
        policy.predict_action(window)
        times.append((time.perf_counter() - t0) * 1e3)
    times = np.array(times[5:])
    return {"p50": float(np.median(times)), "p95": float(np.percentile(times, 95))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    probe_args(ap, steps=5000, first_seed=800000)
    ap.add_argument("--arms", nargs="+", default=list(ARMS[:2]), choices=ARMS)
    ap.add_argument("--pad", type=int, default=4, help="max shift in pixels (pixels arm)")
    ap.add_argument("--pair-with", default=None,
                    help="JSON of an earlier run on the same seeds: its arms join this run's "
                    "table, its first arm the reference (every episode is seeded alike)")
    a = ap.parse_args()
    from uva import load_policy
    from uva.evaluate import paired_rollouts

    w, result = probe_start(a, "a pixel encoder trained for the policy beside the frozen VAE")
    model, cfg, buf, actions, zs, index = (
        w[k] for k in ("model", "cfg", "buf", "actions", "zs", "index"))
    images = np.asarray(buf.images[cfg.cameras[0]])
    result.update({"steps": a.steps, "pad_px": a.pad})
    policies = {}
    for arm in a.arms:
        policy = load_policy(a.ckpt, precision="fp32")
        if arm == "plain":
            state, info = train_head(model, cfg, zs, actions, index, a.steps, a.batch, a.lr,
                                     a.seed, use_copies=False)
            policy.model.action_head.load_state_dict(state)  # in place: the traced sampler follows
        else:
            pix, info = train_pixel_head(model, cfg, zs[0], images, actions, index, a.steps,
                                         a.batch, a.lr, a.seed,
                                         0 if arm == "pixels_noshift" else a.pad,
                                         use_latent=arm != "pixels_only")
            policy = with_pixel_head(policy, pix)
        info["predict_action_ms"] = latency_ms(policy, images, buf.state)
        policies[arm] = policy
        result["arms"][arm] = info
        print(arm, info, flush=True)
    result["eval"] = paired_rollouts(policies, "pusht", a.episodes, a.first_seed)
    if a.pair_with:
        result["eval"] = pair_with(result["eval"], json.loads(Path(a.pair_with).read_text()))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({**result, "eval": result["eval"]["variants"]}, indent=1))


if __name__ == "__main__":
    main()
