"""One config dataclass for the whole UVA model; it is saved inside every checkpoint.

Defaults are the CPU-sized `small` model described in DESIGN.md §2. The structure follows the
reference UVA: each history frame is paired with one future frame token-by-token, and each future
frame owns `actions_per_frame` consecutive actions of the chunk.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

TASK_MODES = ("video_model", "dynamic_model", "policy_model", "inverse_model", "full_dynamic_model")
"""The five masked training tasks of UVA (names as in the reference implementation)."""


def check_camera_names(cameras) -> list[str]:
    """A config's camera list: a non-empty list of unique, non-empty names (strings)."""
    if isinstance(cameras, str) or not isinstance(cameras, (list, tuple)):
        raise ValueError(f"cameras must be a list of camera names, got {cameras!r}")
    cameras = list(cameras)
    if not cameras:
        raise ValueError("cameras must name at least one camera")
    bad = [c for c in cameras if not isinstance(c, str) or not c.strip()]
    if bad:
        raise ValueError(f"camera names must be non-empty strings, got {bad!r}")
    duplicates = sorted({c for c in cameras if cameras.count(c) > 1})
    if duplicates:
        raise ValueError(f"camera names must be unique; repeated: {duplicates}")
    return cameras


@dataclass
class UVAConfig:
    # --- observation / action structure
    # camera names, in token order: each camera's frames get their own tokens (cameras x frames x
    # spatial). One camera costs exactly what a camera-less model did; a config without the key
    # (every checkpoint before cameras existed) is one camera named "scene"
    cameras: list[str] = field(default_factory=lambda: ["scene"])
    image_size: int = 64
    n_frames: int = 2  # history frames == future frames (paired per token)
    actions_per_frame: int = 4  # env steps between frames; the chunk has n_frames * this actions
    action_dim: int = 2
    proprio_dim: int = 2
    # --- frame VAE (diffusers AutoencoderKL, trained by `uva train --stage vae`)
    vae_block_channels: tuple[int, ...] = (32, 64, 64, 64)
    vae_latent_channels: int = 4
    vae_kl_weight: float = 1e-6
    latent_scale: float = 1.0  # 1/std of the VAE latents, measured on the dataset
    patch_size: int = 2  # latent pixels per token side (MAR patchify)
    # --- transformer (MAR-style bidirectional encoder + decoder)
    width: int = 256
    encoder_depth: int = 3
    decoder_depth: int = 3
    num_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.1
    # --- diffusion heads
    video_head_width: int = 256
    video_head_depth: int = 3
    action_head_width: int = 256
    action_head_depth: int = 3
    action_conv_channels: int = 64
    # how the action head reads the joint latent: "mean" (global average per frame, the first
    # shipped checkpoints), "flatten" (keeps where things are) or "attention" (a learned query per
    # action step over all tokens; action_conv_channels is its width); heads.ACTION_POOLINGS
    action_pooling: str = "mean"
    # the action head's noise predictor: "mlp" (MLP-AdaLN, action_head_width x action_head_depth)
    # or "unet" (temporal-conv U-Net, action_head_width channels in its first level; depth unused)
    action_denoiser: str = "mlp"
    # inverse dynamics decoded by its own action head (same shape) instead of the policy's: the
    # two uses read different latents, and fitting both in one head traded one for the other
    # (README, session 6); False = one head for both, as the paper
    inverse_action_head: bool = False
    # the action head also conditions on the history's proprio directly (policy mode; inverse
    # dynamics has none and gets zeros), so the agent's own position need not survive the backbone
    action_proprio: bool = False
    # scale of the action head's starting noise (inference only): 1 = the trained distribution;
    # lower keeps successive chunks nearer the mode instead of switching between modes (on PushT
    # 0.5 and 0 were no better, README)
    action_temperature: float = 1.0
    train_diffusion_steps: int = 1000
    video_inference_steps: int = 10
    action_inference_steps: int = 10
    video_unmask_iterations: int = 4  # MAR iterative unmasking steps in predict_video
    # scale of the video head's starting noise: 0 = the deterministic DDIM prediction (measured
    # closer to the real future than 1.0 on both envs, README), 1 = full sampling
    video_temperature: float = 0.0
    diffusion_batch_mul: int = 2  # noise draws per target per step, as in MAR's DiffLoss
    # --- masking law: ratio ~ truncated normal(1.0, std) restricted to [min, 1]
    mask_ratio_min: float = 0.7
    mask_ratio_std: float = 0.25
    # --- which task modes are trained, and how often (stage 2 default: all five)
    task_weights: dict[str, float] = field(
        default_factory=lambda: {m: 1.0 for m in TASK_MODES}
    )
    # --- execution hint for controllers: how many steps of each chunk to run before re-planning
    n_action_steps: int = 8

    def __post_init__(self):
        self.vae_block_channels = tuple(self.vae_block_channels)
        self.cameras = check_camera_names(self.cameras)
        unknown = set(self.task_weights) - set(TASK_MODES)
        if unknown:
            raise ValueError(f"unknown task modes {sorted(unknown)}; valid: {TASK_MODES}")
        if self.image_size % (self.vae_downsample * self.patch_size):
            raise ValueError(
                f"image_size {self.image_size} must be divisible by VAE downsample "
                f"{self.vae_downsample} x patch_size {self.patch_size}"
            )
        if self.tokens_per_frame % self.actions_per_frame:
            raise ValueError(
                f"tokens per frame ({self.tokens_per_frame}) must be a multiple of "
                f"actions_per_frame ({self.actions_per_frame}) so each action tiles whole tokens"
            )
        if not 1 <= self.n_action_steps <= self.horizon:
            raise ValueError(f"n_action_steps must be in [1, {self.horizon}]")
        if self.action_temperature < 0 or self.video_temperature < 0:
            raise ValueError("action_temperature and video_temperature must be >= 0")
        if self.action_denoiser == "unet" and (self.horizon % 2 or self.action_head_width % 8):
            raise ValueError("action_denoiser 'unet' needs an even chunk length and "
                             "action_head_width a multiple of 8")

    # --- derived sizes
    @property
    def vae_downsample(self) -> int:
        return 2 ** (len(self.vae_block_channels) - 1)

    @property
    def latent_size(self) -> int:
        return self.image_size // self.vae_downsample

    @property
    def grid_size(self) -> int:
        """Tokens per side of one frame."""
        return self.latent_size // self.patch_size

    @property
    def tokens_per_frame(self) -> int:
        return self.grid_size**2

    @property
    def n_cameras(self) -> int:
        return len(self.cameras)

    @property
    def tokens_per_camera(self) -> int:
        """Tokens of one camera's frames (history and future frames are paired per token)."""
        return self.n_frames * self.tokens_per_frame

    @property
    def n_tokens(self) -> int:
        """Tokens the transformer attends over: cameras x frames x spatial."""
        return self.n_cameras * self.tokens_per_camera

    @property
    def token_dim(self) -> int:
        return self.vae_latent_channels * self.patch_size**2

    @property
    def horizon(self) -> int:
        return self.n_frames * self.actions_per_frame

    @property
    def active_modes(self) -> list[str]:
        return [m for m in TASK_MODES if self.task_weights.get(m, 0.0) > 0]

    # --- serialisation
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["vae_block_channels"] = list(self.vae_block_channels)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "UVAConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"config has unknown keys {sorted(unknown)}")
        return cls(**d)
