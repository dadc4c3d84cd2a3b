"""Does image augmentation help UVA's policy head learn from 200 demos? (random shift, DrQ-style)

With the backbone frozen (a head refit: VAE, transformer and video head fixed), augmentation has
to happen before the frozen parts: every training episode is re-encoded K more times, each time
shifted by one random (dx, dy) in [-pad, pad] pixels (edge-replicated pad + crop, the same shift
for all of an episode's frames, as Diffusion Policy / DrQ crop one observation window alike), and
its policy-mode joint latents are computed from those frames. Two heads then train from the same
fresh init, for the same steps, batch, seed and learning-rate schedule (AdamW + cosine + EMA, as
the product's head stage):

  plain      windows of the original frames only
  shifted    windows drawn uniformly from the original and the K shifted copies

Scored closed loop (same env and torch seeds for both: paired) on seeds that chose nothing.
Backbone: the shipped PushT file (trained on the recipe's first 200 demos, seeds from 0; its own
head, refitted on 2 400 demos, is not used: both heads start fresh). A research probe, not the
product: it writes JSON and prints a table.

    uva collect --env pusht --episodes 200 --seed 0 --workers 2 --out data/pusht200.zarr
    python experiments/augment/head_shift.py --data data/pusht200.zarr --copies 4 --pad 4 \
        --steps 6000 --episodes 100 --first-seed 300000 --out outputs/augment/head_shift.json

On 2 cores, one arm per process (each one torch thread), paired at the end (--pair-with waits
for the other run's JSON):

    python experiments/augment/head_shift.py --data D --arms plain --out plain.json &
    python experiments/augment/head_shift.py --data D --arms shifted --pair-with plain.json \
        --out head_shift.json
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from uva.training.augment import shift_frames  # the product's (the joint stage uses it)


@torch.no_grad()
def frame_latents(model, cfg, frames: np.ndarray, batch: int = 256) -> torch.Tensor:
    from uva.vae import encode_frames
    out = [encode_frames(model.vae, torch.from_numpy(frames[i:i + batch]), cfg.latent_scale)
           for i in range(0, len(frames), batch)]
    return torch.cat(out)


@torch.no_grad()
def policy_latents(model, latents, proprio, index, batch: int = 256) -> torch.Tensor:
    out = torch.empty((len(index), model.cfg.n_tokens, model.cfg.width), dtype=torch.float16)
    for i in range(0, len(index), batch):
        rows = slice(i, i + batch)
        out[rows] = model.policy_latent(latents[index.history[rows]],
                                        proprio[index.history[rows]]).half()
    return out


def build_windows(model, cfg, buf, normalizers, episodes, copies: int, pad: int, seed: int):
    """Per copy (0 = original): policy latents (windows, tokens, width) fp16 and the action rows
    of those windows; copies >= 1 shift each episode's frames by one random offset."""
    from uva.data import WindowIndex
    from tqdm import tqdm
    rng = np.random.default_rng(seed)
    img = buf.images[cfg.cameras[0]]
    proprio = torch.as_tensor(normalizers["proprio"].normalize(buf.state.astype(np.float64)),
                              dtype=torch.float32)
    slices = buf.episode_slices()
    index = WindowIndex(buf.episode_ends, cfg.n_frames, cfg.actions_per_frame, episodes)
    frames_needed = np.unique(index.history)  # only the training episodes' frames
    zs, shifts = [], []
    for c in tqdm(range(copies + 1), desc="latents per copy"):
        shifted = img.copy() if c else img
        if c:
            for ep in episodes:
                dx, dy = (int(v) for v in rng.integers(-pad, pad + 1, 2))
                shifts.append((c, ep, dx, dy))
                s = slices[ep]
                shifted[s] = shift_frames(img[s], dx, dy, pad)
        latents = torch.zeros((len(img), cfg.vae_latent_channels, cfg.latent_size,
                               cfg.latent_size))
        latents[frames_needed] = frame_latents(model, cfg, shifted[frames_needed])
        zs.append(policy_latents(model, latents, proprio, index))
    return zs, index, shifts


def frozen_backbone_windows(ckpt: str, data: str, copies: int, pad: int, seed: int) -> dict:
    """The frozen backbone of `ckpt` (eval mode), the replay buffer `data`, its normalised
    actions and the policy-mode latents of its training episodes (build_windows; copies >= 1 shifted)."""
    from uva.checkpoint import load_checkpoint
    from uva.data import read_replay_buffer
    model, cfg, normalizers, _ = load_checkpoint(ckpt)
    model.eval()
    buf = read_replay_buffer(data)
    train_eps, val_eps = buf.train_val_episodes(0.05)
    actions = torch.as_tensor(normalizers["action"].normalize(buf.action.astype(np.float64)),
                              dtype=torch.float32)
    t0 = time.time()
    zs, index, shifts = build_windows(model, cfg, buf, normalizers, train_eps, copies, pad, seed)
    return {"model": model, "cfg": cfg, "normalizers": normalizers, "buf": buf,
            "train_eps": train_eps, "val_eps": val_eps, "actions": actions, "zs": zs,
            "index": index, "shifts": shifts, "latents_s": time.time() - t0}


def fresh_head(model):
    """A copy of `model`'s action head re-initialised the same way for every arm (seed 1000;
    AdaLN-zero, as a head is built)."""
    head = copy.deepcopy(model.action_head)
    torch.manual_seed(1000)  # the same fresh init for every arm
    for m in head.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    for blk in head.denoiser.blocks:  # AdaLN-zero, as a head is built
        torch.nn.init.zeros_(blk.modulation[-1].weight)
        torch.nn.init.zeros_(blk.modulation[-1].bias)
    for lin in (head.denoiser.final_modulation[-1], head.denoiser.output_proj):
        torch.nn.init.zeros_(lin.weight)
        torch.nn.init.zeros_(lin.bias)
    return head


def fit(params, steps: int, lr: float, loss_at, label: str, warmup: int = 100) -> dict:
    """`steps` of AdamW (the product's head-stage settings), warmup + cosine LR and EMA on
    `params`, `loss_at(step)` giving each step's loss; the EMA weights are copied in at the end.
    Returns the mean loss of the last 500 steps and the wall time."""
    from diffusers.training_utils import EMAModel
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=0.02)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (
        1 + math.cos(math.pi * min(s, steps) / steps)))
    ema = EMAModel(params, decay=0.999, use_ema_warmup=True)
    losses = []
    t0 = time.time()
    for step in range(steps):
        loss = loss_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        ema.step(params)
        losses.append(loss.item())
        if (step + 1) % 500 == 0:
            print(f"  {label} step {step + 1}/{steps} "
                  f"loss {np.mean(losses[-500:]):.4f} ({time.time() - t0:.0f}s)", flush=True)
    ema.copy_to(params)
    return {"final_loss_500": float(np.mean(losses[-500:])), "train_s": time.time() - t0}


def train_head(model, cfg, zs, actions, index, steps: int, batch: int, lr: float, seed: int,
               use_copies: bool, warmup: int = 100):
    """A fresh copy of the action head trained on the cached latents; returns its EMA weights."""
    head = fresh_head(model).train().requires_grad_(True)
    n, n_copies = len(index), len(zs)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)

    def loss_at(step):
        rows = rng.integers(0, n, batch)
        which = rng.integers(0, n_copies, batch) if use_copies else np.zeros(batch, int)
        z = torch.stack([zs[c][r] for c, r in zip(which, rows)]).float()
        return head.loss(z, actions[index.actions[rows]], cfg.diffusion_batch_mul, gen)

    info = fit(list(head.parameters()), steps, lr, loss_at,
               "shifted" if use_copies else "plain", warmup)
    return head.eval().state_dict(), info


def probe_args(ap, steps: int, first_seed: int, threads: int = 2) -> None:
    """The arguments every fresh-head probe on a frozen backbone takes (probe_start reads them)."""
    ap.add_argument("--ckpt", default="models/checkpoints/pusht", help="frozen backbone")
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, default=steps)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--first-seed", type=int, default=first_seed)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=threads)


def probe_start(a, question: str) -> tuple[dict, dict]:
    """A fresh-head probe's start from probe_args' `a`: torch threads set, the frozen backbone's
    unshifted windows (frozen_backbone_windows) and the result's common fields."""
    torch.set_num_threads(a.threads)
    w = frozen_backbone_windows(a.ckpt, a.data, 0, 0, a.seed)
    return w, {"question": question, "ckpt": a.ckpt, "data": a.data,
               "train_episodes": len(w["train_eps"]), "windows": len(w["index"]),
               "batch": a.batch, "lr": a.lr, "seed": a.seed, "threads": a.threads,
               "latents_s": w["latents_s"], "arms": {}}


def pair_with(mine: dict, earlier: dict) -> dict:
    """This run's paired_rollouts result joined with an earlier run's on the same seeds: the
    earlier run's arms first (its first arm the reference), each arm's paired difference."""
    from uva.evaluate import paired_variants
    old = earlier["eval"]
    if [r["seed"] for r in old["per_episode"]] != [r["seed"] for r in mine["per_episode"]]:
        raise SystemExit("--pair-with: the earlier run played other seeds")
    names = list(old["variants"]) + [n for n in mine["variants"] if n not in old["variants"]]
    rows = [{**o, **m} for o, m in zip(old["per_episode"], mine["per_episode"])]
    return {**mine, "reference": names[0], "variants": paired_variants(rows, names),
            "per_episode": rows, "paired_with": earlier.get("arms", {})}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    probe_args(ap, steps=6000, first_seed=300000, threads=1)
    ap.add_argument("--copies", type=int, default=4, help="shifted copies of every episode")
    ap.add_argument("--pad", type=int, default=4, help="max shift in pixels")
    ap.add_argument("--arms", nargs="+", default=["plain", "shifted"], choices=["plain", "shifted"])
    ap.add_argument("--pair-with", default=None,
                    help="JSON of a run of the other arm(s) on the same seeds (arms trained in "
                    "two processes): its per-episode scores join this run's for the paired table")
    a = ap.parse_args()
    if "shifted" not in a.arms:
        a.copies = 0  # the plain arm never reads the shifted copies
    torch.set_num_threads(a.threads)
    from uva import load_policy
    from uva.envs import make_env
    from uva.rollout import rollout

    w = frozen_backbone_windows(a.ckpt, a.data, a.copies, a.pad, a.seed)
    model, cfg, train_eps, actions, zs, index = (w[k] for k in ("model", "cfg", "train_eps",
                                                                 "actions", "zs", "index"))
    result = {"ckpt": a.ckpt, "data": a.data, "train_episodes": len(train_eps),
              "windows": len(index), "copies": a.copies, "pad_px": a.pad, "steps": a.steps,
              "batch": a.batch, "lr": a.lr, "latents_s": w["latents_s"], "arms": {}}
    print(f"{len(index)} windows x {a.copies + 1} copies in {result['latents_s']:.0f}s", flush=True)
    policies = {}
    for arm in a.arms:
        state, info = train_head(model, cfg, zs, actions, index, a.steps, a.batch, a.lr, a.seed,
                                 use_copies=(arm == "shifted"))
        policy = load_policy(a.ckpt, precision="fp32")
        policy.model.action_head.load_state_dict(state)  # in place: the traced sampler follows
        policies[arm] = policy
        result["arms"][arm] = info
    env = make_env("pusht")
    rows = []
    for i in range(a.episodes):
        seed = a.first_seed + i
        row = {"seed": seed}
        for arm, p in policies.items():
            r, _ = rollout(p, env, seed, cfg.n_action_steps)
            row[arm] = float(r["score"])
            row[arm + "_success"] = bool(r["success"])
        rows.append(row)
        print(f"  {seed}: " + " ".join(f"{k} {row[k]:.3f}" for k in policies), flush=True)
    env.close()
    arms = list(a.arms)
    if a.pair_with:
        waited = 0
        while not Path(a.pair_with).is_file() and waited < 3600:
            time.sleep(10)
            waited += 10
        other = json.loads(Path(a.pair_with).read_text())
        by_seed = {r["seed"]: r for r in other["per_episode"]}
        if sorted(by_seed) != [r["seed"] for r in rows]:
            raise SystemExit(f"{a.pair_with} was scored on other seeds")
        for arm in other["arms"]:
            if arm not in arms:
                arms.append(arm)
                result["arms"][arm] = {k: v for k, v in other["arms"][arm].items()
                                       if k in ("final_loss_500", "train_s")}
                for r in rows:
                    r[arm], r[arm + "_success"] = (by_seed[r["seed"]][arm],
                                                   by_seed[r["seed"]][arm + "_success"])
    arms.sort(key=["plain", "shifted"].index)
    base = np.array([r[arms[0]] for r in rows])
    for arm in arms:
        s = np.array([r[arm] for r in rows])
        d = s - base
        result["arms"][arm].update({
            "score": float(s.mean()), "score_se": float(s.std(ddof=1) / np.sqrt(len(s))),
            "successes": int(sum(r[arm + "_success"] for r in rows)),
            f"paired_diff_vs_{arms[0]}": float(d.mean()),
            "paired_diff_se": float(d.std(ddof=1) / np.sqrt(len(d)))})
    result["eval_seeds"] = [a.first_seed, a.first_seed + a.episodes - 1]
    result["per_episode"] = rows
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: {m: v for m, v in r.items()} for k, r in result["arms"].items()},
                     indent=1))


if __name__ == "__main__":
    main()
