"""Shared fixtures. Tests run on CPU with 2 torch threads and real components only."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from uva import UVAConfig
from uva.checkpoint import random_checkpoint

torch.set_num_threads(2)

TINY = dict(width=64, encoder_depth=1, decoder_depth=1, num_heads=2, video_head_width=64,
            video_head_depth=2, action_head_width=64, action_head_depth=2,
            action_conv_channels=16, vae_block_channels=(16, 16, 16, 16), dropout=0.0)


@pytest.fixture
def tiny_cfg() -> UVAConfig:
    return UVAConfig(**TINY)


@pytest.fixture
def tiny_ckpt(tmp_path, tiny_cfg):
    path = tmp_path / "ckpt"
    random_checkpoint(path, tiny_cfg)
    return path


def tiny_panda_checkpoint(path, cameras=None):
    """A tiny randomly initialised checkpoint with the Panda's dimensions and joint ranges."""
    from ros_helpers import PANDA_LOWER, PANDA_UPPER
    from uva import UVAModel
    from uva.checkpoint import save_checkpoint
    from uva.normalizer import MinMaxNormalizer
    torch.manual_seed(0)
    cfg = UVAConfig(action_dim=8, proprio_dim=8, **({"cameras": cameras} if cameras else {}),
                    **TINY)
    norms = {k: MinMaxNormalizer(np.array(PANDA_LOWER), np.array(PANDA_UPPER))
             for k in ("action", "proprio")}
    save_checkpoint(path, UVAModel(cfg), cfg, norms)
    return path


@pytest.fixture(scope="module")
def panda_ckpt(tmp_path_factory):
    """One camera, Panda dimensions, random weights."""
    return tiny_panda_checkpoint(tmp_path_factory.mktemp("panda") / "ckpt")


@pytest.fixture(scope="module")
def two_camera_ckpt(tmp_path_factory):
    """The same with two cameras, scene and wrist (each its own tokens)."""
    return tiny_panda_checkpoint(tmp_path_factory.mktemp("panda2") / "ckpt2", ["scene", "wrist"])


@pytest.fixture(scope="module")
def ros():
    """rclpy context + a test node and its executor, over real DDS."""
    rclpy = pytest.importorskip("rclpy")
    rclpy.init()
    node = rclpy.create_node("uva_test_driver")
    executor = rclpy.executors.SingleThreadedExecutor()
    executor.add_node(node)
    yield node, executor
    node.destroy_node()
    rclpy.shutdown()


def random_obs(cfg: UVAConfig, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"image": rng.integers(0, 255, (cfg.n_frames, cfg.image_size, cfg.image_size, 3),
                                  dtype=np.uint8),
            "state": rng.uniform(0, 1, (cfg.n_frames, cfg.proprio_dim))}


def random_batch(cfg: UVAConfig, batch: int = 4, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    lat = (batch, cfg.n_frames, cfg.vae_latent_channels, cfg.latent_size, cfg.latent_size)
    return {"history_latents": torch.randn(lat, generator=g),
            "future_latents": torch.randn(lat, generator=g),
            "actions": torch.rand(batch, cfg.horizon, cfg.action_dim, generator=g) * 2 - 1,
            "proprio": torch.rand(batch, cfg.n_frames, cfg.proprio_dim, generator=g) * 2 - 1}
