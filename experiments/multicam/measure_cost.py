"""Cost of a second camera: predict_action latency (a control step: one new frame per camera,
older frames cached) and one training step (forward + backward on cached latents), for the
random-init `small` model with Panda dimensions and 1 vs 2 cameras, at 1 torch thread.

The two models are timed alternately, one repetition each in turn, so load from other processes
on the machine falls on both alike; the process's CPU time is recorded beside the wall time. Writes experiments/multicam/cost.json.

    python experiments/multicam/measure_cost.py [--repeats 30] [--out experiments/multicam/cost.json]
"""
from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from uva import UVAConfig, UVAModel, load_policy
from uva.checkpoint import random_checkpoint
from uva.fsutil import atomic_write_json

CAMERA_SETS = {1: ["scene"], 2: ["scene", "wrist"]}


def control_step(policy, frames: dict, state: np.ndarray, counter) -> None:
    cfg = policy.cfg
    i = next(counter) % (len(frames["scene"]) - cfg.n_frames)
    images = {c: frames[c][i:i + cfg.n_frames] for c in cfg.cameras}
    policy.predict_action({"images": images, "state": state}, seed=0)


def train_step(model: UVAModel, opt, batch: dict, step: int) -> None:
    mode = ("full_dynamic_model", "policy_model")[step % 2]
    loss, _ = model(batch, mode, 0.9, torch.Generator().manual_seed(step))
    opt.zero_grad()
    loss.backward()
    opt.step()


def random_batch(cfg: UVAConfig, batch: int) -> dict:
    g = torch.Generator().manual_seed(0)
    lat = (batch, cfg.n_frames) + ((cfg.n_cameras,) if cfg.n_cameras > 1 else ()) + (
        cfg.vae_latent_channels, cfg.latent_size, cfg.latent_size)
    return {"history_latents": torch.randn(lat, generator=g),
            "future_latents": torch.randn(lat, generator=g),
            "actions": torch.rand(batch, cfg.horizon, cfg.action_dim, generator=g) * 2 - 1,
            "proprio": torch.rand(batch, cfg.n_frames, cfg.proprio_dim, generator=g) * 2 - 1}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--train-repeats", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--out", default="experiments/multicam/cost.json")
    a = p.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    policies, models, opts, batches, counters = {}, {}, {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for k, cams in CAMERA_SETS.items():
            cfg = UVAConfig(cameras=cams, action_dim=8, proprio_dim=8)
            random_checkpoint(Path(tmp) / str(k), cfg)
            policies[k] = load_policy(Path(tmp) / str(k))
            models[k] = UVAModel(cfg).train()
            opts[k] = torch.optim.AdamW([q for q in models[k].parameters() if q.requires_grad],
                                        lr=1e-4)
            batches[k] = random_batch(cfg, a.batch_size)
            counters[k] = iter(range(10**9))
    cfg = policies[1].cfg
    frames = {c: rng.integers(0, 255, (cfg.n_frames + a.repeats + 2, cfg.image_size,
                                       cfg.image_size, 3), dtype=np.uint8)
              for c in CAMERA_SETS[2]}
    state = policies[1].proprio_norm.unnormalize(rng.uniform(-1, 1, (cfg.n_frames, 8)))
    act_ms, act_cpu = {k: [] for k in CAMERA_SETS}, {k: [] for k in CAMERA_SETS}
    train_ms, train_cpu = {k: [] for k in CAMERA_SETS}, {k: [] for k in CAMERA_SETS}
    for k in CAMERA_SETS:  # warm-up
        control_step(policies[k], frames, state, counters[k])
        train_step(models[k], opts[k], batches[k], 0)
    for r in range(a.repeats):
        for k in CAMERA_SETS:
            t0, c0 = time.perf_counter(), time.process_time()
            control_step(policies[k], frames, state, counters[k])
            act_ms[k].append((time.perf_counter() - t0) * 1000)
            act_cpu[k].append((time.process_time() - c0) * 1000)
    for r in range(a.train_repeats):
        for k in CAMERA_SETS:
            t0, c0 = time.perf_counter(), time.process_time()
            train_step(models[k], opts[k], batches[k], r + 1)
            train_ms[k].append((time.perf_counter() - t0) * 1000)
            train_cpu[k].append((time.process_time() - c0) * 1000)
    stats = lambda xs: {"median": float(np.median(xs)), "p95": float(np.percentile(xs, 95))}
    result = {
        "what": "random-init small model, Panda dims (8 actions, 8 proprio), 64x64 frames",
        "torch_threads": 1, "cpu": platform.processor() or platform.machine(),
        "tokens": {k: policies[k].cfg.n_tokens for k in CAMERA_SETS},
        "params": {k: int(sum(q.numel() for q in models[k].parameters())) for k in CAMERA_SETS},
        "predict_action_ms": {k: stats(v) for k, v in act_ms.items()},
        "train_step_ms": {k: stats(v) for k, v in train_ms.items()},
        # CPU time of this process (1 thread): what the step costs, without other processes' load
        "predict_action_cpu_ms": {k: stats(v) for k, v in act_cpu.items()},
        "train_step_cpu_ms": {k: stats(v) for k, v in train_cpu.items()},
        "train_batch_size": a.batch_size,
        "predict_action_ratio_2_over_1": float(np.median(act_ms[2]) / np.median(act_ms[1])),
        "train_step_ratio_2_over_1": float(np.median(train_ms[2]) / np.median(train_ms[1])),
        "predict_action_cpu_ratio_2_over_1": float(np.median(act_cpu[2]) / np.median(act_cpu[1])),
        "train_step_cpu_ratio_2_over_1": float(np.median(train_cpu[2]) / np.median(train_cpu[1])),
        "repeats": {"predict_action": a.repeats, "train_step": a.train_repeats},
        "note": "timed alternately (1 camera, 2 cameras, ...) on a shared, loaded 2-core machine",
    }
    atomic_write_json(a.out, result)
    print(result)


if __name__ == "__main__":
    main()
