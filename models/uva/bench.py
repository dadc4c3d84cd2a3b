"""`uva bench`: parameter counts and CPU latency of predict_action vs predict_video."""
from __future__ import annotations

import platform
import tempfile
import time

import numpy as np
import torch

from .checkpoint import save_checkpoint
from .fsutil import atomic_write_json
from .config import UVAConfig
from .model import UVAModel
from .normalizer import MinMaxNormalizer
from .policy import load_policy
from .vae import encode_frames


def random_checkpoint(path, cfg: UVAConfig | None = None, seed: int = 0) -> None:
    """A randomly initialised checkpoint with unit normalizers (for benchmarks and tests)."""
    cfg = cfg or UVAConfig()
    torch.manual_seed(seed)
    norms = {"action": MinMaxNormalizer(np.zeros(cfg.action_dim), np.ones(cfg.action_dim)),
             "proprio": MinMaxNormalizer(np.zeros(cfg.proprio_dim), np.ones(cfg.proprio_dim))}
    save_checkpoint(path, UVAModel(cfg), cfg, norms, {"note": "random init"})


def _times(fn, repeats: int) -> np.ndarray:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return np.array(out) * 1000


def bench(ckpt: str | None, out: str, device: str = "cpu", repeats: int = 30) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        if ckpt is None:
            random_checkpoint(tmp)
            ckpt_used = "random-init small model"
            policy = load_policy(tmp, device)
        else:
            ckpt_used = ckpt
            policy = load_policy(ckpt, device)
    cfg, m = policy.cfg, policy.model
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (cfg.n_frames + repeats + 2, cfg.image_size, cfg.image_size, 3),
                          dtype=np.uint8)
    state = np.stack([policy.proprio_norm.unnormalize(rng.uniform(-1, 1, cfg.proprio_dim))
                      for _ in range(cfg.n_frames)])
    counter = iter(range(10**9))

    def control_step():
        """A real control step: one new frame arrives, the older ones are cached."""
        i = next(counter) % (len(frames) - cfg.n_frames)
        policy.predict_action({"image": frames[i:i + cfg.n_frames], "state": state})

    obs = {"image": frames[:cfg.n_frames], "state": state}
    action_ms = _times(control_step, repeats)
    video_ms = _times(lambda: policy.predict_video(obs), max(repeats // 3, 5))
    one = torch.from_numpy(frames[:1]).to(device)
    vae_ms = _times(lambda: encode_frames(m.vae, one, cfg.latent_scale), repeats)
    count = lambda mod: 0 if mod is None else int(sum(p.numel() for p in mod.parameters()))
    parts = {"vae": count(m.vae), "video_head": count(m.video_head),
             "action_head": count(m.action_head),
             "inverse_action_head": count(m.inverse_action_head)}
    result = {
        "checkpoint": ckpt_used, "device": device, "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "params": {"total": count(m), "transformer": count(m) - sum(parts.values()), **parts},
        "predict_action_ms": {"median": float(np.median(action_ms)),
                              "p95": float(np.percentile(action_ms, 95))},
        "predict_video_ms": {"median": float(np.median(video_ms)),
                             "p95": float(np.percentile(video_ms, 95))},
        "vae_encode_ms_per_frame": float(np.median(vae_ms)),
        "video_over_action_ratio": float(np.median(video_ms) / np.median(action_ms)),
    }
    atomic_write_json(out, result)
    return result
