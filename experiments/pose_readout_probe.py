"""Diagnostic for PushT's perception gap: where along frame -> VAE latent -> joint latent ->
action-head condition does the T block's pose get lost?

The state probe (state_policy_probe.py) showed the action head scores about twice as well from
the true block pose as UVA does from frames. This script asks which representation no longer
holds that pose: it fits the same small regressor to the simulator's true block pose (position,
angle) from each representation of the newest frame, on the training episodes, and reports the
error on the held-out episodes (the split `uva train` uses):

- `frame`: the 64x64 RGB frame itself, through a small CNN trained here (what the pixels allow);
- `vae_latent`: the checkpoint's frozen VAE latent of that frame (what the transformer is given);
- `joint_latent`: the checkpoint's policy-mode transformer output for that frame's tokens;
- `action_condition`: what the action denoiser is conditioned on (action_head.condition), the
  narrowest point.

    python experiments/pose_readout_probe.py --ckpt models/checkpoints/pusht --data data/pusht.zarr

Writes pose_readout.json and pose_readout.png into --out.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from tqdm import tqdm  # noqa: E402

from state_policy_probe import true_states  # noqa: E402
from uva.checkpoint import load_checkpoint  # noqa: E402
from uva.fsutil import atomic_write, atomic_write_json  # noqa: E402
from uva.data import WindowIndex, read_replay_buffer  # noqa: E402
from uva.training.caches import head_latents  # noqa: E402
from uva.vae import encode_frames, images_to_tensor  # noqa: E402

WORKSPACE_PX = 512.0  # PushT's world is 512 x 512


@torch.no_grad()
def representations(ckpt: str, buf, batch: int = 256) -> dict[str, torch.Tensor]:
    """Frozen features of every frame (as the newest frame of its policy-mode window)."""
    model, cfg, norms, _ = load_checkpoint(ckpt)
    latents = torch.cat([encode_frames(model.vae, torch.from_numpy(buf.img[i:i + batch]),
                                       cfg.latent_scale)
                         for i in tqdm(range(0, len(buf.img), batch), desc="VAE latents")])
    proprio = torch.as_tensor(norms["proprio"].normalize(buf.state), dtype=torch.float32)
    windows = WindowIndex(buf.episode_ends, cfg.n_frames, cfg.actions_per_frame)
    z = head_latents(model, "policy_model", latents, proprio, windows, "cpu")
    newest = slice((cfg.n_frames - 1) * cfg.tokens_per_frame, None)
    condition = torch.cat([model.action_head.condition(z[i:i + batch])
                           for i in range(0, len(z), batch)])
    return {"vae_latent": latents.flatten(1), "joint_latent": z[:, newest].flatten(1),
            "action_condition": condition}


def frame_cnn() -> nn.Module:
    """Keeps the spatial grid to the end (flatten, no global pool): position must survive."""
    return nn.Sequential(
        nn.Conv2d(3, 32, 5, stride=2, padding=2), nn.SiLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.SiLU(),
        nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.SiLU(),
        nn.Flatten(), nn.Linear(64 * 8 * 8, 256), nn.SiLU(), nn.Linear(256, 4))


def feature_mlp(dim: int) -> nn.Module:
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 256), nn.SiLU(),
                         nn.Linear(256, 256), nn.SiLU(), nn.Linear(256, 4))


def fit(net: nn.Module, inputs, targets: torch.Tensor, train_rows: np.ndarray, steps: int,
        batch: int, desc: str) -> nn.Module:
    """`inputs(rows)` gives the regressor's input for those frames (lets frames decode lazily)."""
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in tqdm(range(steps), desc=desc):
        rows = train_rows[torch.randint(0, len(train_rows), (batch,), generator=gen).numpy()]
        loss = nn.functional.mse_loss(net(inputs(rows)), targets[rows])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


def pose_errors(pred: torch.Tensor, true_pose: np.ndarray) -> dict[str, float]:
    """pred: (N, 4) = x/512, y/512, sin, cos; true_pose: (N, 3) x, y (px), angle (rad)."""
    pred = pred.double().numpy()
    pos_err = np.linalg.norm(pred[:, :2] * WORKSPACE_PX - true_pose[:, :2], axis=1)
    angle = np.arctan2(pred[:, 2], pred[:, 3])
    ang_err = np.abs((angle - true_pose[:, 2] + np.pi) % (2 * np.pi) - np.pi)
    return {"position_px_mean": float(pos_err.mean()),
            "position_px_median": float(np.median(pos_err)),
            "angle_deg_mean": float(np.degrees(ang_err).mean()),
            "angle_deg_median": float(np.degrees(np.median(ang_err)))}


def plot(results: dict, path: Path) -> None:
    names = list(results)
    x = np.arange(len(names))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, key, label in zip(axes, ("position_px", "angle_deg"),
                              ("block position error (px of 512)", "block angle error (deg)")):
        ax.bar(x - 0.2, [results[n][f"{key}_median"] for n in names], 0.4, label="median")
        ax.bar(x + 0.2, [results[n][f"{key}_mean"] for n in names], 0.4, label="mean")
        ax.set_xticks(x, names, rotation=25, fontsize=8)
        ax.set_title(label, fontsize=10)
    axes[0].legend(fontsize=8)
    fig.suptitle("PushT: T-block pose read out of each representation (held-out episodes)",
                 fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ckpt", default="models/checkpoints/pusht")
    ap.add_argument("--data", default="data/pusht.zarr")
    ap.add_argument("--out", default="outputs/pose_readout_pusht")
    ap.add_argument("--steps", type=int, default=3000, help="regressor training steps (each)")
    ap.add_argument("--batch-size", type=int, default=256)
    a = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    buf = read_replay_buffer(a.data)
    states = true_states(a.data, buf)  # agent x, y, block x, y, sin, cos
    true_pose = np.stack([states[:, 2], states[:, 3], np.arctan2(states[:, 4], states[:, 5])], 1)
    targets = torch.as_tensor(np.concatenate([states[:, 2:4] / WORKSPACE_PX, states[:, 4:6]], 1),
                              dtype=torch.float32)
    train_eps, val_eps = buf.train_val_episodes(0.05)  # the split uva train uses
    train_rows, val_rows = buf.frame_indices(train_eps), buf.frame_indices(val_eps)
    features = representations(a.ckpt, buf)
    mean_pose = targets[train_rows].mean(0, keepdim=True).expand(len(val_rows), -1)
    results = {"train_mean": pose_errors(mean_pose, true_pose[val_rows])}
    regressors = {"frame": (frame_cnn(), lambda rows: images_to_tensor(torch.from_numpy(buf.img[rows])))}
    for name, feats in features.items():
        regressors[name] = (feature_mlp(feats.shape[1]), lambda rows, f=feats: f[rows])
    for name, (net, inputs) in regressors.items():
        fit(net, inputs, targets, train_rows, a.steps, a.batch_size, f"fit {name}")
        with torch.no_grad():
            pred = torch.cat([net(inputs(val_rows[i:i + 1024]))
                              for i in range(0, len(val_rows), 1024)])
        results[name] = pose_errors(pred, true_pose[val_rows])
        print(name, results[name], flush=True)
    report = {"ckpt": a.ckpt, "data": a.data, "regressor_steps": a.steps,
              "train_frames": len(train_rows), "val_frames": len(val_rows), "results": results}
    atomic_write_json(out / "pose_readout.json", report)
    plot(results, out / "pose_readout.png")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
