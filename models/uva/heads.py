"""The two light diffusion heads that decode UVA's joint latent.

* `VideoDiffusionHead`: denoises each future-frame token from its own latent vector (per-token
  MLP with AdaLN, as MAR's DiffLoss).
* `ActionDiffusionHead`: reads the joint latent into one feature vector per action step — per
  frame, a small conv stack over the latent grid, then a linear map of the whole grid (so *where*
  things are survives, as Diffusion Policy keeps spatial layout instead of a global pool),
  interpolated over the steps — and denoises the whole action chunk with an MLP-AdaLN. At control
  time only this head runs.

Noise schedules come from diffusers: DDPM (cosine) for training, DDIM for few-step sampling.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler
from einops import rearrange


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer diffusion timesteps."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class AdaLNResBlock(nn.Module):
    """Residual MLP block whose LayerNorm shift/scale/gate come from the condition."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 3 * width))
        nn.init.zeros_(self.modulation[-1].weight)
        nn.init.zeros_(self.modulation[-1].bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.modulation(cond).chunk(3, dim=-1)
        return x + gate * self.mlp(self.norm(x) * (1 + scale) + shift)


class AdaLNDenoiser(nn.Module):
    """MLP-AdaLN noise predictor: (noisy x, timestep, condition) -> predicted noise."""

    def __init__(self, target_dim: int, cond_dim: int, width: int, depth: int):
        super().__init__()
        self.width = width
        self.input_proj = nn.Linear(target_dim, width)
        self.time_embed = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.cond_embed = nn.Linear(cond_dim, width)
        self.blocks = nn.ModuleList(AdaLNResBlock(width) for _ in range(depth))
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.output_proj = nn.Linear(width, target_dim)
        nn.init.zeros_(self.final_modulation[-1].weight)
        nn.init.zeros_(self.final_modulation[-1].bias)
        nn.init.zeros_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor | None, cond: torch.Tensor | None,
                modulations: list[list[torch.Tensor]] | None = None, step: int = 0) -> torch.Tensor:
        """Predicted noise. With `modulations` (from step_conditions; t and cond unused) this
        is sampling step `step` of a precomputed schedule: see forward_modulated."""
        if modulations is not None:
            return self.forward_modulated(x, modulations, step)
        c = self.time_embed(timestep_embedding(t, self.width)) + self.cond_embed(cond)
        h = self.input_proj(x)
        for block in self.blocks:
            h = block(h, c)
        shift, scale = self.final_modulation(c).chunk(2, dim=-1)
        return self.output_proj(self.final_norm(h) * (1 + scale) + shift)

    def step_conditions(self, timesteps: torch.Tensor, cond: torch.Tensor) -> list[list[torch.Tensor]]:
        """Everything of forward() that does not depend on x, for all sampling steps at once.

        timesteps (S,), cond (B, cond_dim) -> per block [shift, 1 + scale, gate] and then the
        final [shift, 1 + scale], each (S, B, width). The modulations depend on the timestep and
        the condition only, so a sampler computes them in one batched matmul per block instead
        of one per step (the head is dispatch-bound at batch 1)."""
        S, B = timesteps.shape[0], cond.shape[0]
        temb = self.time_embed(timestep_embedding(timesteps, self.width))  # (S, W)
        c = (temb[:, None] + self.cond_embed(cond)[None]).reshape(S * B, self.width)
        out = []
        for mod, n in [(b.modulation, 3) for b in self.blocks] + [(self.final_modulation, 2)]:
            parts = list(mod(c).reshape(S, B, n * self.width).chunk(n, dim=-1))
            parts[1] = parts[1] + 1
            out.append(parts)
        return out

    def forward_modulated(self, x: torch.Tensor, mods: list[list[torch.Tensor]], s: int) -> torch.Tensor:
        """forward() of sampling step `s` given step_conditions() (same arithmetic, regrouped)."""
        ln = lambda v: F.layer_norm(v, (self.width,), eps=1e-6)
        h = F.linear(x, self.input_proj.weight, self.input_proj.bias)
        for block, (shift, scale1, gate) in zip(self.blocks, mods):
            lin1, lin2 = block.mlp[0], block.mlp[2]
            y = F.silu(F.linear(torch.addcmul(shift[s], ln(h), scale1[s]), lin1.weight, lin1.bias))
            h = torch.addcmul(h, gate[s], F.linear(y, lin2.weight, lin2.bias))
        shift, scale1 = mods[-1]
        return F.linear(torch.addcmul(shift[s], ln(h), scale1[s]),
                        self.output_proj.weight, self.output_proj.bias)


class DiffusionSampler:
    """Wraps the diffusers schedulers shared by both heads (no hand-written schedules)."""

    def __init__(self, train_steps: int, inference_steps: int):
        self.train_scheduler = DDPMScheduler(
            num_train_timesteps=train_steps,
            beta_schedule="squaredcos_cap_v2",
            prediction_type="epsilon",
            clip_sample=False,
        )
        # DDIM keeps no per-sample state beyond its timestep table, so one configured instance
        # serves every call (building it costs ~1 ms, a visible share of a control step)
        self.sample_scheduler = DDIMScheduler.from_config(self.train_scheduler.config)
        self.sample_scheduler.set_timesteps(inference_steps)

    def draw(self, shape: tuple[int, ...], generator: torch.Generator | None, device):
        """Timesteps and noise for `shape` (leading dims: repeats, batch, ...).

        Drawn on the CPU from `generator` for the *global* batch, so data-parallel ranks that
        slice their part get exactly the noise a single process would use."""
        t = torch.randint(0, self.train_scheduler.config.num_train_timesteps, shape[:-1],
                          generator=generator)
        noise = torch.randn(shape, generator=generator)
        return t.to(device), noise.to(device)

    def training_loss(self, denoiser: AdaLNDenoiser, target: torch.Tensor, cond: torch.Tensor,
                      t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Epsilon-prediction MSE. target/cond (B, ..., D); t/noise carry a leading repeats dim
        (several noise levels per target per step, MAR's trick)."""
        r = t.shape[0]
        target = target.unsqueeze(0).expand(r, *target.shape)
        cond = cond.unsqueeze(0).expand(r, *cond.shape)
        noisy = self.train_scheduler.add_noise(target.reshape(-1, target.shape[-1]),
                                               noise.reshape(-1, noise.shape[-1]), t.reshape(-1))
        pred = denoiser(noisy, t.reshape(-1), cond.reshape(-1, cond.shape[-1]))
        return F.mse_loss(pred, noise.reshape(-1, noise.shape[-1]))

    def ddim_coefficients(self) -> list[tuple[float, float]]:
        """Per sampling step (a, b) with DDIMScheduler.step(eps, t, x, eta=0) == a*x + b*eps.

        Taken from the diffusers scheduler's own tables (alphas_cumprod, final_alpha_cumprod,
        its prev-timestep rule) for the configuration used here (epsilon prediction, no clipping
        or thresholding); any other configuration raises, and the sampler then uses step()."""
        sch = self.sample_scheduler
        cfg = sch.config
        if cfg.prediction_type != "epsilon" or cfg.clip_sample or cfg.thresholding:
            raise NotImplementedError("closed-form DDIM covers epsilon prediction, unclipped")
        key = self.timesteps_key()
        if getattr(self, "_ddim_key", None) != key:
            ac = sch.alphas_cumprod.double()
            coeffs = []
            for t in key:
                prev = t - cfg.num_train_timesteps // sch.num_inference_steps
                a_t = ac[t].item()
                a_prev = ac[prev].item() if prev >= 0 else float(sch.final_alpha_cumprod)
                a = math.sqrt(a_prev / a_t)
                coeffs.append((a, math.sqrt(1 - a_prev) - a * math.sqrt(1 - a_t)))
            self._ddim_key, self._ddim_coeffs = key, coeffs
        return self._ddim_coeffs

    def timesteps_key(self) -> tuple[int, ...]:
        """The sampling timesteps in force (a changed step count changes it)."""
        return tuple(int(t) for t in self.sample_scheduler.timesteps)

    @staticmethod
    def initial_noise(batch: int, target_dim: int, generator: torch.Generator | None,
                      like: torch.Tensor, temperature: float) -> torch.Tensor:
        """The starting noise of a sample, drawn on the CPU from `generator` (the same numbers
        on every device) and scaled by `temperature`."""
        x = torch.randn(batch, target_dim, generator=generator, device="cpu").to(like)
        return x * temperature

    @staticmethod
    def ddim_steps(denoiser: AdaLNDenoiser, x: torch.Tensor, mods: list,
                   coeffs: list[tuple[float, float]]) -> torch.Tensor:
        """The closed-form DDIM loop x = a*x + b*eps over precomputed step_conditions `mods`;
        each step goes through the module call, so forward hooks see every step."""
        for s, (a, b) in enumerate(coeffs):
            x = torch.add(x * a, denoiser(x, None, None, mods, s), alpha=b)
        return x

    @torch.no_grad()
    def sample(self, denoiser: AdaLNDenoiser, cond: torch.Tensor, target_dim: int,
               generator: torch.Generator | None = None, temperature: float = 1.0,
               fast: bool = True) -> torch.Tensor:
        """DDIM (eta 0) from noise scaled by `temperature` (MAR's knob: lower = less diverse).

        fast: for the MLP-AdaLN denoiser, precompute every step's modulations in one batch and
        apply the scheduler's closed-form step coefficients in a tight loop (the reference loop,
        fast=False, calls the module and scheduler.step() each step; they agree to float
        rounding, tests/test_realtime.py)."""
        scheduler = self.sample_scheduler
        x = self.initial_noise(cond.shape[0], target_dim, generator, cond, temperature)
        if fast and isinstance(denoiser, AdaLNDenoiser):
            try:
                coeffs = self.ddim_coefficients()
            except NotImplementedError:
                coeffs = None
            if coeffs is not None:
                mods = denoiser.step_conditions(scheduler.timesteps.to(cond.device), cond)
                return self.ddim_steps(denoiser, x, mods, coeffs)
        for t in scheduler.timesteps:
            t_batch = t.to(cond.device).expand(cond.shape[0])
            eps = denoiser(x, t_batch, cond)
            x = scheduler.step(eps, t, x, eta=0.0).prev_sample
        return x


class VideoDiffusionHead(nn.Module):
    def __init__(self, token_dim: int, z_dim: int, width: int, depth: int, train_steps: int,
                 inference_steps: int):
        super().__init__()
        self.token_dim = token_dim
        self.denoiser = AdaLNDenoiser(token_dim, z_dim, width, depth)
        self.diffusion = DiffusionSampler(train_steps, inference_steps)

    def loss(self, z: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, repeats: int,
             generator=None, batch_slice: slice = slice(None), global_batch: int | None = None):
        """z, target: (B, N, .); mask (B, N) with 1 = token to predict (every sample hides the
        same number of tokens). Loss on the hidden tokens only. Noise is drawn for the global
        batch and sliced (see DiffusionSampler.draw)."""
        B = z.shape[0]
        n_hidden = int(mask[0].sum().item())
        idx = mask.bool().nonzero()[:, 1].reshape(B, n_hidden)
        z = torch.gather(z, 1, idx[..., None].expand(-1, -1, z.shape[-1]))
        target = torch.gather(target, 1, idx[..., None].expand(-1, -1, target.shape[-1]))
        t, noise = self.diffusion.draw((repeats, global_batch or B, n_hidden, self.token_dim),
                                       generator, z.device)
        return self.diffusion.training_loss(self.denoiser, target, z, t[:, batch_slice],
                                            noise[:, batch_slice])

    def sample(self, z: torch.Tensor, generator=None, temperature: float = 1.0,
               fast: bool = True) -> torch.Tensor:
        """z: (M, z_dim) -> tokens (M, token_dim). fast: see DiffusionSampler.sample."""
        return self.diffusion.sample(self.denoiser, z, self.token_dim, generator, temperature, fast)


class ActionDiffusionHead(nn.Module):
    def __init__(self, z_dim: int, grid_size: int, n_frames: int, horizon: int, action_dim: int,
                 conv_channels: int, width: int, depth: int, train_steps: int,
                 inference_steps: int, n_cameras: int = 1):
        super().__init__()
        self.grid_size, self.n_frames, self.horizon, self.action_dim = (
            grid_size, n_frames, horizon, action_dim)
        # several cameras: the same convs run on each camera's frame and one linear map takes
        # all cameras' features of a frame to that frame's vector (one camera: the tensors of a
        # camera-less head, unchanged); attribute names are the tensor names in shipped files
        self.n_cameras = n_cameras
        self.frame_conv = nn.Sequential(
            nn.Conv2d(z_dim, conv_channels, 3, padding=1), nn.SiLU(),
            nn.Conv2d(conv_channels, conv_channels, 3, padding=1), nn.SiLU(),
        )
        self.frame_fc = nn.Linear(n_cameras * conv_channels * grid_size**2, conv_channels)
        self.denoiser = AdaLNDenoiser(horizon * action_dim, horizon * conv_channels, width, depth)
        self.diffusion = DiffusionSampler(train_steps, inference_steps)

    def condition(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, K*F*S, C), cameras x frames x spatial -> flat per-action-step condition
        (B, horizon * conv_channels)."""
        grid = rearrange(z, "b (k f h w) c -> (b k f) c h w", k=self.n_cameras,
                         f=self.n_frames, h=self.grid_size)
        features = rearrange(self.frame_conv(grid).flatten(1), "(b k f) d -> (b f) (k d)",
                             k=self.n_cameras, f=self.n_frames)
        per_frame = rearrange(self.frame_fc(features), "(b f) c -> b c f", f=self.n_frames)
        per_step = F.interpolate(per_frame, size=self.horizon, mode="linear", align_corners=True)
        return rearrange(per_step, "b c h -> b (h c)")

    def forward(self, z: torch.Tensor, actions: torch.Tensor, repeats: int, generator=None,
                batch_slice: slice = slice(None), global_batch: int | None = None) -> torch.Tensor:
        """The loss, as forward() so DDP can wrap the head alone (the `head` training stage)."""
        return self.loss(z, actions, repeats, generator, batch_slice, global_batch)

    def loss(self, z: torch.Tensor, actions: torch.Tensor, repeats: int, generator=None,
             batch_slice: slice = slice(None), global_batch: int | None = None) -> torch.Tensor:
        target = rearrange(actions, "b h a -> b (h a)")
        t, noise = self.diffusion.draw((repeats, global_batch or z.shape[0], target.shape[-1]),
                                       generator, z.device)
        return self.diffusion.training_loss(self.denoiser, target, self.condition(z),
                                            t[:, batch_slice], noise[:, batch_slice])

    def sample(self, z: torch.Tensor, generator=None, temperature: float = 1.0,
               fast: bool = True) -> torch.Tensor:
        """z (B, F*S, C) -> action chunk (B, horizon, action_dim) normalised. fast: see
        DiffusionSampler.sample."""
        flat = self.diffusion.sample(self.denoiser, self.condition(z),
                                     self.horizon * self.action_dim, generator, temperature, fast)
        return rearrange(flat, "b (h a) -> b h a", h=self.horizon)
