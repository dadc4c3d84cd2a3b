"""Checks made before a stage writes anything: which config fields each kind of stage may change,
and whether a dataset fits a model (dimensions, cameras, frame sizes)."""
from __future__ import annotations

from pathlib import Path

from ..checkpoint import read_config
from ..config import UVAConfig
from ..data import DatasetError
from .args import HEAD_STAGE
from .augment import AUGMENT_FIELDS

ACTION_HEAD_FIELDS = ("action_head_width", "action_head_depth", "action_conv_channels",
                      "action_train_diffusion_steps", "action_inference_steps", "n_action_steps",
                      "inverse_action_head", "action_temperature")
"""Config fields the `head` stage may change: the rest of the model is kept, frozen (a new
training schedule, like a new shape, starts fresh heads: a head's weights mean what its schedule
taught them)."""
HEAD_SHAPE_NEUTRAL_FIELDS = ("action_inference_steps", "n_action_steps", "action_temperature",
                             "inverse_action_head")
"""Of those, the ones that leave the existing heads' weights usable (sampling and execution
settings, and splitting off an inverse head, which starts as a copy of the shared one)."""

VAE_FIELDS = ("image_size", "vae_block_channels", "vae_latent_channels", "vae_kl_weight",
              "latent_scale")
"""Config fields a reused VAE fixes: overriding them would not match its weights or latents."""

STAGE_TRAINING_FIELDS = ("task_weights", "action_train_diffusion_steps", *AUGMENT_FIELDS)
"""Config fields a transformer stage started from --init may change: they weight its losses,
augment its inputs or set the action head's training schedule (a joint stage started from the
video stage, whose action head never trained), and leave the model's shape as it is."""


def check_overrides_fit(init: Path, overrides: dict) -> None:
    """A stage continuing --init's weights keeps that model's shape: --config fields that would
    differ from its config are refused up front instead of being silently ignored."""
    cfg, _, meta = read_config(init)
    wanted = UVAConfig.from_dict({**cfg.to_dict(), **overrides})
    if (wanted.action_diffusion_steps != cfg.action_diffusion_steps
            and meta.get("stage") in ("joint", HEAD_STAGE)):
        raise ValueError(f"--init {init} holds an action head trained on a "
                         f"{cfg.action_diffusion_steps}-step schedule; a new schedule needs a "
                         f"fresh head: refit one with --stage head --config "
                         f"'{{\"action_train_diffusion_steps\": {wanted.action_diffusion_steps}}}'")
    changed = sorted(k for k in overrides
                     if k not in STAGE_TRAINING_FIELDS and getattr(wanted, k) != getattr(cfg, k))
    if changed:
        raise ValueError(f"--init {init} fixes the model; --config may change only "
                         f"{STAGE_TRAINING_FIELDS} here, not {changed}")


def fresh_config(buf, args) -> UVAConfig:
    """The config of a model trained from scratch on `buf` (sizes from the data, then --config),
    checked against the buffer's cameras and frame sizes."""
    cfg = UVAConfig(**{"image_size": int(buf.img.shape[1]), "cameras": buf.cameras,
                       "action_dim": int(buf.action.shape[1]),
                       "proprio_dim": int(buf.state.shape[1]), **args.config_overrides})
    check_cameras_fit(buf, cfg, args.data, "--config")
    return cfg


def check_cameras_fit(buf, cfg: UVAConfig, data_path, source) -> None:
    """The config's cameras must be the buffer's (same names, same order): a model reads each
    camera's frames into that camera's tokens."""
    if buf.cameras != cfg.cameras:
        raise DatasetError(f"{data_path}: holds cameras {buf.cameras}, {source} expects "
                           f"{cfg.cameras}")
    for name, frames in buf.images.items():
        if frames.shape[1:3] != (cfg.image_size, cfg.image_size):
            raise DatasetError(f"{data_path}: camera '{name}' frames are {frames.shape[1:3]}, "
                               f"{source} expects {cfg.image_size} x {cfg.image_size} (import "
                               f"or collect with --image-size {cfg.image_size})")


def check_dataset_fits(buf, cfg: UVAConfig, data_path, ckpt_path) -> None:
    if buf.action.shape[1] != cfg.action_dim or buf.state.shape[1] != cfg.proprio_dim:
        raise DatasetError(
            f"{data_path}: action dim {buf.action.shape[1]} / state dim {buf.state.shape[1]} do "
            f"not match checkpoint {ckpt_path} (action {cfg.action_dim}, proprio {cfg.proprio_dim})")
    check_cameras_fit(buf, cfg, data_path, f"checkpoint {ckpt_path}")
