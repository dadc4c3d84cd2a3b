"""UVA: one transformer over a joint video-action latent, decoded by two diffusion heads.

Inputs are per-token fused as in the reference: for every latent-pixel token of future frame i,
concatenate [future token (or a learned mask latent), the same token of history frame i (or the
mask latent), the latent of the action covering that token (or a learned null action), the history
frame's proprio] and project to the model width. Learned temporal + spatial position embeddings,
then a bidirectional encoder and decoder (MAR-style); the decoder output `z` is the joint latent.

Several cameras (`cfg.cameras`): each camera's frames are VAE-encoded into their own tokens, laid
out cameras x frames x spatial, with a learned camera embedding added to the positions; the
transformer attends over all of them, actions and proprio tile every camera's tokens alike, the
video head predicts every camera's future tokens and the action head reads all of them. Latents
are (B, F, C, h, w) for one camera and (B, F, K, C, h, w) for K > 1 (frame-major, as indexing a
dataset's (N, K, C, h, w) latents by window gives them). One camera builds no extra tensor and
orders its tokens as before, so its checkpoints load and act unchanged.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
from einops import rearrange, repeat

from .config import UVAConfig
from .heads import ActionDiffusionHead, VideoDiffusionHead
from .masking import MODE_SPECS, MaskRatioLaw, mode_mask
from .vae import build_vae, vae_loss

VAE_MODE = "vae"
"""Pseudo task mode of forward(): the VAE reconstruction + KL loss of training stage 1."""


def _stack(cfg: UVAConfig, depth: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        d_model=cfg.width, nhead=cfg.num_heads, dim_feedforward=int(cfg.width * cfg.mlp_ratio),
        dropout=cfg.dropout, activation="gelu", batch_first=True, norm_first=True,
    )
    return nn.TransformerEncoder(layer, depth, norm=nn.LayerNorm(cfg.width),
                                 enable_nested_tensor=False)


class UVAModel(nn.Module):
    def __init__(self, cfg: UVAConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.vae = build_vae(cfg)
        self.vae.requires_grad_(False)  # trained in its own stage, frozen here
        # token fusion
        self.future_proj = nn.Linear(cfg.token_dim, w)
        self.history_proj = nn.Linear(cfg.token_dim, w)
        self.action_proj = nn.Linear(cfg.action_dim, w)
        self.proprio_proj = nn.Linear(cfg.proprio_dim, w)
        self.mask_latent = nn.Parameter(torch.randn(w) * 0.02)
        self.null_action_latent = nn.Parameter(torch.randn(w) * 0.02)
        self.null_proprio_latent = nn.Parameter(torch.randn(w) * 0.02)
        self.fuse = nn.Linear(4 * w, w)
        self.fuse_norm = nn.LayerNorm(w)
        self.temporal_pos = nn.Parameter(torch.randn(cfg.n_frames, w) * 0.02)
        self.spatial_pos = nn.Parameter(torch.randn(cfg.tokens_per_frame, w) * 0.02)
        # MAR-style encoder / decoder
        self.encoder = _stack(cfg, cfg.encoder_depth)
        self.decoder_embed = nn.Linear(w, w)
        self.decoder_temporal_pos = nn.Parameter(torch.randn(cfg.n_frames, w) * 0.02)
        self.decoder_spatial_pos = nn.Parameter(torch.randn(cfg.tokens_per_frame, w) * 0.02)
        self.decoder = _stack(cfg, cfg.decoder_depth)
        # heads
        self.video_head = VideoDiffusionHead(
            cfg.token_dim, w, cfg.video_head_width, cfg.video_head_depth,
            cfg.train_diffusion_steps, cfg.video_inference_steps)
        self.action_head = self._action_head(cfg)
        self.inverse_action_head = self._action_head(cfg) if cfg.inverse_action_head else None
        self.mask_law = MaskRatioLaw(cfg.mask_ratio_min, cfg.mask_ratio_std)
        # which camera a token belongs to (one camera: none, so its checkpoints are unchanged)
        self.camera_pos = self.decoder_camera_pos = None
        if cfg.n_cameras > 1:
            self.camera_pos = nn.Parameter(torch.randn(cfg.n_cameras, w) * 0.02)
            self.decoder_camera_pos = nn.Parameter(torch.randn(cfg.n_cameras, w) * 0.02)

    @staticmethod
    def _action_head(cfg: UVAConfig) -> ActionDiffusionHead:
        return ActionDiffusionHead(
            cfg.width, cfg.grid_size, cfg.n_frames, cfg.horizon, cfg.action_dim,
            cfg.action_conv_channels, cfg.action_head_width, cfg.action_head_depth,
            cfg.action_diffusion_steps, cfg.action_inference_steps, cfg.n_cameras)

    def with_config(self, cfg: UVAConfig) -> "UVAModel":
        """These weights under `cfg`, a config that keeps every tensor's shape (a training
        setting or a diffusion schedule changed): a model built from it, the weights loaded."""
        with torch.random.fork_rng(devices=[]):  # the caller's random stream stays as it was
            model = UVAModel(cfg)
        model.load_state_dict(self.state_dict())
        return model.to(next(self.parameters()).device).train(self.training)

    def head_for(self, mode: str) -> ActionDiffusionHead:
        """The action head that decodes `mode`'s latent: the inverse head for inverse dynamics
        when the config has one, else the shared (policy) head."""
        if mode == "inverse_model" and self.inverse_action_head is not None:
            return self.inverse_action_head
        return self.action_head

    # ------------------------------------------------------------------ tokens
    def tokenize(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled VAE latents (B, F, C, h, w), or (B, F, K, C, h, w) for K cameras ->
        (B, K*F*S, token_dim), cameras x frames x spatial (MAR patchify)."""
        p, K = self.cfg.patch_size, self.cfg.n_cameras
        if latents.dim() == 5 and K == 1:
            return rearrange(latents, "b f c (h p) (w q) -> b (f h w) (c p q)", p=p, q=p)
        if latents.dim() != 6 or latents.shape[2] != K:
            raise ValueError(f"latents of a {K}-camera model must be (B, F, {K}, C, h, w)"
                             f"{' or (B, F, C, h, w)' if K == 1 else ''}, got "
                             f"{tuple(latents.shape)}")
        return rearrange(latents, "b f k c (h p) (w q) -> b (k f h w) (c p q)", p=p, q=p)

    def untokenize(self, tokens: torch.Tensor) -> torch.Tensor:
        """Inverse of tokenize: (B, F, C, h, w) for one camera, (B, F, K, C, h, w) for K."""
        cfg, p = self.cfg, self.cfg.patch_size
        if cfg.n_cameras == 1:
            return rearrange(tokens, "b (f h w) (c p q) -> b f c (h p) (w q)", f=cfg.n_frames,
                             h=cfg.grid_size, p=p, q=p)
        return rearrange(tokens, "b (k f h w) (c p q) -> b f k c (h p) (w q)",
                         k=cfg.n_cameras, f=cfg.n_frames, h=cfg.grid_size, p=p, q=p)

    def _positions(self, temporal: torch.Tensor, spatial: torch.Tensor,
                   camera: torch.Tensor | None) -> torch.Tensor:
        """(N, width) position embedding of every token: camera + frame + spatial."""
        pos = temporal[:, None] + spatial[None]
        if camera is not None:
            pos = camera[:, None, None] + pos[None]
        return pos.reshape(self.cfg.n_tokens, -1)

    # ------------------------------------------------------------------ backbone
    def joint_latent(self, history_tokens: torch.Tensor | None, future_tokens: torch.Tensor | None,
                     mask: torch.Tensor, actions: torch.Tensor | None,
                     proprio: torch.Tensor | None) -> torch.Tensor:
        """Fuse inputs per token and run encoder + decoder.

        history_tokens / future_tokens: (B, N, token_dim) or None (replaced by the mask latent);
        mask: (B, N), 1 = future token hidden; actions: (B, horizon, action_dim) normalised, or None
        (null action latent); proprio: (B, F, proprio_dim) normalised, or None (null latent: proprio
        belongs to the history, which inverse dynamics does not see). Returns z (B, N, width).
        """
        cfg = self.cfg
        B, N = mask.shape
        if N != cfg.n_tokens:
            raise ValueError(f"mask has {N} tokens, the model {cfg.n_tokens} "
                             f"({cfg.n_cameras} cameras x {cfg.n_frames} frames x "
                             f"{cfg.tokens_per_frame})")
        mask_tok = self.mask_latent.expand(B, N, -1)
        if future_tokens is None:
            future = mask_tok
        else:
            future = torch.where(mask.unsqueeze(-1).bool(), mask_tok, self.future_proj(future_tokens))
        history = mask_tok if history_tokens is None else self.history_proj(history_tokens)
        if actions is None:
            action_lat = self.null_action_latent.expand(B, N, -1)
        else:
            # each action covers the same tokens of every camera's frames
            action_lat = self.action_proj(actions).repeat_interleave(
                cfg.tokens_per_camera // cfg.horizon, dim=1)
            if cfg.n_cameras > 1:
                action_lat = action_lat.repeat(1, cfg.n_cameras, 1)
        if proprio is None:
            proprio_lat = self.null_proprio_latent.expand(B, N, -1)
        else:
            proprio_lat = repeat(self.proprio_proj(proprio), "b f c -> b (k f s) c",
                                 k=cfg.n_cameras, s=cfg.tokens_per_frame)
        x = self.fuse(torch.cat([future, history, action_lat, proprio_lat], dim=-1))
        pos = self._positions(self.temporal_pos, self.spatial_pos, self.camera_pos)
        x = self.encoder(self.fuse_norm(x + pos))
        dec_pos = self._positions(self.decoder_temporal_pos, self.decoder_spatial_pos,
                                  self.decoder_camera_pos)
        return self.decoder(self.decoder_embed(x) + dec_pos)

    def policy_latent(self, history_latents: torch.Tensor, proprio: torch.Tensor) -> torch.Tensor:
        """Policy mode's joint latent: history + proprio in, every future token masked, no
        actions. Scaled latents (see tokenize), (B, F, P) normalised proprio -> (B, N, width)."""
        mask = history_latents.new_ones(history_latents.shape[0], self.cfg.n_tokens)
        return self.joint_latent(self.tokenize(history_latents), None, mask, None, proprio)

    def inverse_latent(self, future_latents: torch.Tensor) -> torch.Tensor:
        """Inverse dynamics' joint latent: the reached frames visible, no history, proprio or
        actions. Scaled latents (see tokenize) -> (B, N, width)."""
        mask = future_latents.new_zeros(future_latents.shape[0], self.cfg.n_tokens)
        return self.joint_latent(None, self.tokenize(future_latents), mask, None, None)

    # ------------------------------------------------------------------ video
    @torch.no_grad()
    def sample_video(self, history_latents: torch.Tensor, actions: torch.Tensor | None,
                     proprio: torch.Tensor | None, generator: torch.Generator | None = None,
                     temperature: float | None = None, fast: bool = True) -> torch.Tensor:
        """Future latents by MAR iterative unmasking, for one window (batch 1).

        Every future token starts masked; each of `video_unmask_iterations` passes runs the
        backbone on what is revealed so far and the video head samples the next group of tokens
        (a cosine schedule of how many stay hidden). Each camera unmasks its own tokens in its
        own random order; the same spatial positions are revealed in every future frame.
        history_latents: scaled (1, F, C, h, w), or (1, F, K, C, h, w) for K cameras; actions
        (1, horizon, A) normalised for forward dynamics, None for video generation; proprio
        (1, F, P) normalised. temperature: the video head's starting-noise scale (None: the
        config's `video_temperature`). Returns latents in history_latents' layout."""
        cfg = self.cfg
        if history_latents.shape[0] != 1:
            raise ValueError(f"sample_video samples one window, got a batch of "
                             f"{history_latents.shape[0]}")
        temperature = cfg.video_temperature if temperature is None else temperature
        device = history_latents.device
        hist = self.tokenize(history_latents)
        S, F, K = cfg.tokens_per_frame, cfg.n_frames, cfg.n_cameras
        tokens = torch.zeros_like(hist)
        orders = torch.stack([torch.randperm(S, generator=generator) for _ in range(K)]).to(device)
        # token index of (camera, frame, 0): offsets of every camera's frames in the token order
        offsets = (torch.arange(K, device=device)[:, None] * F
                   + torch.arange(F, device=device)[None]) * S
        n_masked = S
        for it in range(cfg.video_unmask_iterations):
            ratio = math.cos(math.pi / 2 * (it + 1) / cfg.video_unmask_iterations)
            n_next = 0 if it == cfg.video_unmask_iterations - 1 else max(1, int(S * ratio))
            n_next = min(n_next, n_masked - 1)
            spatial_mask = torch.zeros(K, S, device=device)
            spatial_mask.scatter_(1, orders[:, :n_masked], 1.0)
            mask = spatial_mask[:, None].expand(K, F, S).reshape(1, -1)
            z = self.joint_latent(hist, tokens, mask, actions, proprio)
            reveal = orders[:, n_next:n_masked]
            token_idx = (offsets[:, :, None] + reveal[:, None, :]).reshape(-1)
            tokens[0, token_idx] = self.video_head.sample(z[0, token_idx], generator, temperature,
                                                          fast=fast)
            n_masked = n_next
        return self.untokenize(tokens)

    # ------------------------------------------------------------------ training
    def mode_inputs(self, mode: str, batch: dict, mask: torch.Tensor) -> torch.Tensor:
        spec = MODE_SPECS[mode]
        hist = self.tokenize(batch["history_latents"])
        fut = self.tokenize(batch["future_latents"])
        return self.joint_latent(
            hist if spec.use_history else None,
            None if spec.future_masking == "all" else fut,
            mask,
            batch["actions"] if spec.use_actions else None,
            batch["proprio"] if spec.use_history else None,
        )

    def forward(self, batch: dict, mode: str, mask_ratio: float,
                generator: torch.Generator | None = None, batch_slice: slice = slice(None),
                global_batch: int | None = None) -> tuple[torch.Tensor, dict]:
        """Loss of one task mode on a batch of cached latents (forward() so DDP can wrap it).

        batch: history_latents/future_latents scaled (see tokenize); actions (B, H, A) and
        proprio (B, F, P) normalised to [-1, 1]. `mask_ratio` comes from `mask_law`. All noise
        and masks are drawn from `generator` for `global_batch` samples and `batch_slice` of them
        is used, so data-parallel ranks reproduce a single-process step exactly.
        """
        if mode == VAE_MODE:  # stage-1 frame autoencoder, routed here so DDP syncs it too
            return vae_loss(self.vae, batch["images"], self.cfg.vae_kl_weight, batch["noise"])
        cfg, spec = self.cfg, MODE_SPECS[mode]
        B = batch["actions"].shape[0]
        global_batch = global_batch or B
        mask = mode_mask(mode, global_batch, cfg.n_frames, cfg.tokens_per_frame, mask_ratio,
                         generator, cfg.n_cameras)[batch_slice].to(batch["actions"].device)
        z = self.mode_inputs(mode, batch, mask)
        total = z.new_zeros(())
        parts = {}
        noise_args = dict(generator=generator, batch_slice=batch_slice, global_batch=global_batch)
        if spec.video_loss:
            target = self.tokenize(batch["future_latents"])
            parts["video"] = self.video_head.loss(z, target, mask, cfg.diffusion_batch_mul,
                                                  **noise_args)
            total = total + parts["video"]
        if spec.action_loss:
            parts["action"] = self.head_for(mode).loss(z, batch["actions"],
                                                       cfg.diffusion_batch_mul, **noise_args)
            total = total + parts["action"]
        return total, {k: v.item() for k, v in parts.items()}
