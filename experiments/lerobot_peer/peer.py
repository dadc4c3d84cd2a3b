"""LeRobot's Diffusion Policy (lerobot 0.3.2, its own modelling, normalisation, optimiser and
checkpoint code) configured for our one-camera replay buffers (PushT, Panda), and the adapter
through which our evaluator (`uva.rollout.rollout`) drives it. Runs in the peer's venv (`make peer-setup`)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from lerobot.configs.policies import PreTrainedConfig
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.constants import OBS_IMAGES
from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy
from lerobot.policies.utils import populate_queues

from convert import ACTION, IMAGE, STATE, PeerEvalConfig, observation_steps, window_to_observation


def make_config(image_shape: tuple[int, int], state_dim: int, action_dim: int, crop: int = 56,
                down_dims=(512, 1024, 2048), noise_scheduler: str = "DDPM",
                inference_steps: int | None = None, device: str = "cpu") -> DiffusionConfig:
    """LeRobot's PushT Diffusion Policy (n_obs_steps 2, horizon 16, n_action_steps 8, ResNet-18
    with group norm and spatial softmax, DDPM with 100 training steps) for our frames: a random
    `crop` x `crop` crop in training, the centre crop at inference (LeRobot's own augmentation;
    its default 84 assumes 96 px frames), and no pretrained backbone weights (nothing is
    downloaded). `down_dims` sizes the U-Net (LeRobot's default (512, 1024, 2048))."""
    h, w = image_shape
    if crop > min(h, w):
        raise ValueError(f"crop {crop} does not fit {h}x{w} frames")
    return DiffusionConfig(
        input_features={IMAGE: PolicyFeature(FeatureType.VISUAL, (3, h, w)),
                        STATE: PolicyFeature(FeatureType.STATE, (state_dim,))},
        output_features={ACTION: PolicyFeature(FeatureType.ACTION, (action_dim,))},
        crop_shape=(crop, crop), crop_is_random=True, pretrained_backbone_weights=None,
        down_dims=tuple(down_dims), noise_scheduler_type=noise_scheduler,
        num_inference_steps=inference_steps, device=device, push_to_hub=False)


def stats_tensors(stats: dict) -> dict:
    return {k: {s: torch.as_tensor(np.asarray(v), dtype=torch.float32) for s, v in d.items()}
            for k, d in stats.items()}


class LeRobotPeer:
    """A LeRobot DiffusionPolicy behind the interface `uva.rollout.rollout` drives: `cfg`,
    `reset()`, `predict_action(window)` -> (n_action_steps, action_dim) env-unit actions.

    lerobot 0.3.2's `predict_action_chunk` generates from the policy's observation queues, which
    its `select_action` fills one env step at a time. Each call here empties the queues, fills
    them with the window's n_obs_steps observations oldest first (normalised by the policy,
    through LeRobot's `populate_queues`, as `select_action` does) and calls
    `predict_action_chunk`: the chunk `select_action` would start at that step."""

    def __init__(self, policy: DiffusionPolicy, image_size: int = 64):
        self.policy = policy.eval()  # centre crop at inference: LeRobot crops randomly only in training
        pc = policy.config
        self.cfg = PeerEvalConfig(n_frames=pc.n_obs_steps, image_size=image_size,
                                  n_action_steps=pc.n_action_steps,
                                  action_dim=pc.action_feature.shape[0],
                                  proprio_dim=pc.robot_state_feature.shape[0])
        self.device = torch.device(pc.device)
        self.chunk_latency_s: list[float] = []
        self.path: Path | None = None  # the checkpoint it was loaded from

    def reset(self) -> None:
        self.policy.reset()

    def predict_action(self, window: dict) -> np.ndarray:
        if self.policy.training:
            raise RuntimeError("the peer policy must be in eval mode (no random crop) to act")
        obs = window_to_observation(window, self.cfg.n_frames)
        self.policy.reset()
        batch = {}
        for step in observation_steps(obs):
            batch = self.policy.normalize_inputs({k: v.to(self.device) for k, v in step.items()})
            batch = dict(batch)
            batch[OBS_IMAGES] = torch.stack([batch[k] for k in self.policy.config.image_features],
                                            dim=-4)
            populate_queues(self.policy._queues, batch)
        t0 = time.perf_counter()
        chunk = self.policy.predict_action_chunk(batch)
        self.chunk_latency_s.append(time.perf_counter() - t0)
        return chunk[0].double().cpu().numpy()


def pretrained_dir(path: Path) -> Path:
    """A run directory (its newest checkpoint), a checkpoint step directory, or the
    pretrained_model directory itself."""
    for d in (path, path / "pretrained_model", path / "checkpoints" / "last" / "pretrained_model"):
        if (d / "model.safetensors").is_file() and (d / "config.json").is_file():
            return d
    raise FileNotFoundError(f"{path}: no LeRobot checkpoint (config.json + model.safetensors)")


def load_peer(path, device: str = "cpu", image_size: int = 64, noise_scheduler: str | None = None,
              inference_steps: int | None = None) -> LeRobotPeer:
    """A checkpoint written by `save_pretrained` (config.json + model.safetensors), or a run
    directory (its newest checkpoint). `noise_scheduler` ("DDPM"/"DDIM") and `inference_steps`
    replace the sampler the checkpoint's config names (the training schedule is the same)."""
    path = pretrained_dir(Path(path))
    config = PreTrainedConfig.from_pretrained(str(path))
    config.device = device  # a checkpoint trained on a GPU loads onto the CPU too
    if noise_scheduler is not None:
        config.noise_scheduler_type = noise_scheduler
    if inference_steps is not None:
        config.num_inference_steps = inference_steps
    # strict: a weight (or a normalisation stat) missing from the file is an error, not a warning
    policy = DiffusionPolicy.from_pretrained(str(path), config=config, strict=True)
    peer = LeRobotPeer(policy, image_size)
    peer.path = path
    return peer
