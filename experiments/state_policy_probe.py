"""Diagnostic for the PushT ceiling: is it in seeing, or in imitating this data at all?

Trains UVA's action diffusion head (same denoiser, schedules, 2 observations 4 steps apart,
8-step chunks) on the simulator's true state (agent position + block pose) instead of frames, on
the same demonstrations, and rolls it out on the same evaluation seeds. The block poses are not
in the dataset, so every episode is replayed from its recorded seed and actions (the replay must
reproduce the recorded agent positions, which checks that the simulator is deterministic).

A high score here puts the ceiling in the vision side (frames -> latent -> action); a score as
low as the UVA policies' puts it in the data, the chunking or the action head. `--head unet`
swaps UVA's MLP-AdaLN denoiser for the temporal U-Net of unet_denoiser.py beside this script
(Diffusion Policy's head shape, 64 channels) to test the head on its own.

    python experiments/state_policy_probe.py --data data/pusht.zarr --out outputs/state_probe_pusht

The replayed states are cached beside the data (data/pusht.zarr.true_state.npy) for later probes.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from diffusers.training_utils import EMAModel
from tqdm import tqdm

from uva.fsutil import atomic_write, atomic_write_json  # noqa: E402
from uva.config import UVAConfig  # noqa: E402
from uva.data import WindowIndex, read_replay_buffer  # noqa: E402
from uva.envs.pusht import PushTEnv  # noqa: E402
from uva.rollout import rollout  # noqa: E402
from uva.heads import AdaLNDenoiser, DiffusionSampler  # noqa: E402
from uva.normalizer import MinMaxNormalizer  # noqa: E402

from unet_denoiser import TemporalUNetDenoiser  # noqa: E402  (beside this script)


class PrivilegedPushT(PushTEnv):
    """PushT whose observation state is [agent x, y, block x, y, sin, cos of block angle]."""

    def _obs(self, raw):
        obs = super()._obs(raw)
        block = self.unwrapped.block
        obs.state = np.concatenate([obs.state, [*block.position, np.sin(block.angle),
                                                np.cos(block.angle)]])
        return obs


def replay_states(buf, env: PrivilegedPushT) -> np.ndarray:
    """Privileged state of every recorded frame, by replaying each episode's seed and actions."""
    states, start = [], 0
    for ep, end in enumerate(tqdm(buf.episode_ends, desc="replay episodes")):
        obs = env.reset(int(buf.attrs["seeds"][ep]))
        for t in range(start, int(end)):
            if np.abs(obs.state[:2] - buf.state[t]).max() > 1e-3:
                raise RuntimeError(f"episode {ep} step {t - start}: replay diverged from the "
                                   f"recording ({obs.state[:2]} vs {buf.state[t]})")
            states.append(obs.state)
            obs = env.step(buf.action[t]).obs
        start = int(end)
    return np.asarray(states)


def true_states(data: str, buf) -> np.ndarray:
    """Privileged states of `data`, replayed once and cached beside it for every later probe."""
    cache = Path(f"{data}.true_state.npy")
    states = np.load(cache) if cache.is_file() else None
    if states is None or len(states) != len(buf.action):
        states = replay_states(buf, PrivilegedPushT())

        def write(tmp):
            with open(tmp, "wb") as f:
                np.save(f, states)
        atomic_write(cache, write)
    return states


class StatePolicy:
    """Just enough of UVAPolicy's interface for uva.rollout.rollout."""

    def __init__(self, cfg, denoiser, sampler, norms):
        self.cfg, self.denoiser, self.sampler, self.norms = cfg, denoiser, sampler, norms

    def reset(self) -> None:
        pass

    @torch.no_grad()
    def predict_action(self, window: dict) -> np.ndarray:
        cond = torch.as_tensor(self.norms["state"].normalize(window["state"]),
                               dtype=torch.float32).reshape(1, -1)
        x = self.sampler.sample(self.denoiser, cond, self.cfg.horizon * self.cfg.action_dim)
        return self.norms["action"].unnormalize(x.reshape(self.cfg.horizon, -1).numpy())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="data/pusht.zarr")
    ap.add_argument("--out", default="outputs/state_probe_pusht")
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--seed", type=int, default=100000, help="first evaluation seed")
    ap.add_argument("--action-steps", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--head", choices=["mlp", "unet"], default="mlp")
    ap.add_argument("--actions-per-frame", type=int, default=4,
                    help="chunk = 2 x this; also the spacing of the 2 observations")
    ap.add_argument("--demos", type=int, default=0,
                    help="train on the training episodes among the first N demos (0 = all)")
    ap.add_argument("--diffusion-steps", type=int, default=0,
                    help="training diffusion steps (0 = UVAConfig's train_diffusion_steps)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    # defaults: the shipped PushT chunking and schedule
    cfg = UVAConfig(actions_per_frame=a.actions_per_frame,
                    **({"train_diffusion_steps": a.diffusion_steps} if a.diffusion_steps else {}))
    buf = read_replay_buffer(a.data)
    env = PrivilegedPushT()
    states = true_states(a.data, buf)
    norms = {"state": MinMaxNormalizer.fit(states), "action": MinMaxNormalizer.fit(buf.action)}
    s = torch.as_tensor(norms["state"].normalize(states), dtype=torch.float32)
    act = torch.as_tensor(norms["action"].normalize(buf.action), dtype=torch.float32)
    train_eps, _ = buf.train_val_episodes(0.05)  # the split uva train uses
    if a.demos:
        train_eps = [e for e in train_eps if e < a.demos]
    index = WindowIndex(buf.episode_ends, cfg.n_frames, cfg.actions_per_frame, train_eps)
    target_dim, cond_dim = cfg.horizon * cfg.action_dim, cfg.n_frames * states.shape[1]
    denoiser = (AdaLNDenoiser(target_dim, cond_dim, cfg.action_head_width, cfg.action_head_depth)
                if a.head == "mlp" else TemporalUNetDenoiser(cfg.horizon, cfg.action_dim,
                                                             cond_dim, width=64))
    sampler = DiffusionSampler(cfg.train_diffusion_steps, cfg.action_inference_steps)
    ema = EMAModel(denoiser.parameters(), decay=0.999)
    opt = torch.optim.AdamW(denoiser.parameters(), lr=3e-4, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-4, total_steps=a.steps, pct_start=0.02)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for step in tqdm(range(a.steps), desc="train state policy"):
        rows = torch.randint(0, len(index), (a.batch_size,), generator=gen).numpy()
        cond = s[index.history[rows]].reshape(a.batch_size, -1)
        target = act[index.actions[rows]].reshape(a.batch_size, -1)
        t, noise = sampler.draw((cfg.diffusion_batch_mul, a.batch_size, target_dim), gen, "cpu")
        loss = sampler.training_loss(denoiser, target, cond, t, noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        ema.step(denoiser.parameters())
        losses.append(loss.item())
    ema.copy_to(denoiser.parameters())
    denoiser.eval()
    policy = StatePolicy(cfg, denoiser, sampler, norms)
    result = {"data": a.data, "train_episodes": len(train_eps),
              "actions_per_frame": cfg.actions_per_frame,
              "train_diffusion_steps": cfg.train_diffusion_steps, "train_steps": a.steps,
              "horizon": cfg.horizon, "head": a.head,
              "head_parameters": sum(p.numel() for p in denoiser.parameters()),
              "batch_size": a.batch_size,
              "final_loss_mean_last_500": float(np.mean(losses[-500:])), "episodes": a.episodes,
              "first_seed": a.seed, "by_action_steps": {}}
    for n_exec in a.action_steps:
        runs = [rollout(policy, env, a.seed + i, n_exec)[0]
                for i in tqdm(range(a.episodes), desc=f"eval {n_exec} executed")]
        scores = np.array([r["score"] for r in runs])
        result["by_action_steps"][str(n_exec)] = {
            "score": float(scores.mean()),
            "score_sem": float(scores.std(ddof=1) / np.sqrt(len(scores))),
            "success_rate": float(np.mean([r["success"] for r in runs])),
            "per_episode": [float(v) for v in scores]}  # seeds from --seed: pairs with other probes
        print(n_exec, result["by_action_steps"][str(n_exec)], flush=True)
    atomic_write_json(out / "probe.json", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
