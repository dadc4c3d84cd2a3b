"""The stages that build a model: the frame VAE (then frozen), and the transformer stages (video,
joint) on cached latents; plus a vae stage made of another run's VAE (--vae-from)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..checkpoint import load_checkpoint, load_vae, save_checkpoint
from ..config import TASK_MODES, UVAConfig
from ..data import WindowIndex
from ..metrics import psnr
from ..model import VAE_MODE, UVAModel
from ..vae import encode_frames, images_to_tensor
from .augment import active_copies, draw_versions
from .caches import training_windows
from .checks import STAGE_TRAINING_FIELDS, VAE_FIELDS, check_dataset_fits
from .loop import batch_indices, run_stage
from .state import steps_before


def train_vae(buf, cfg, normalizers, args, out, info):
    model = UVAModel(cfg).to(args.device)
    model.vae.requires_grad_(True)
    params = list(model.vae.parameters())
    train_eps, val_eps = buf.train_val_episodes(args.val_fraction)
    train_frames, val_frames = buf.frame_indices(train_eps), buf.frame_indices(val_eps)
    val_frames = val_frames[np.linspace(0, len(val_frames) - 1, min(256, len(val_frames))).astype(int)]
    # one VAE for every camera: it trains on all cameras' frames (camera k's frame i at k*N + i)
    imgs = torch.from_numpy(buf.img if len(buf.images) == 1
                            else np.concatenate(list(buf.images.values())))
    n = len(buf.action)
    train_frames, val_frames = (np.concatenate([f + k * n for k in range(len(buf.images))])
                                for f in (train_frames, val_frames))

    def loss_fn(module, step, gen, part):
        rows = batch_indices(len(train_frames), args.batch_size, args.seed, step)
        x = images_to_tensor(imgs[train_frames[rows[part]]]).to(args.device)
        lat = cfg.latent_size
        noise = torch.randn(len(rows), cfg.vae_latent_channels, lat, lat, generator=gen)[part]
        loss, logs = module({"images": x, "noise": noise}, VAE_MODE, 0.0)
        return loss, {"recon": logs["mse"], "psnr_db": logs["psnr"]}

    @torch.no_grad()
    def val_fn(m):
        x = images_to_tensor(imgs[val_frames]).to(args.device)
        recon = m.vae.decode(m.vae.encode(x).latent_dist.mean).sample
        return {"psnr_db": psnr(recon, x)}

    final = run_stage("vae", model, cfg, normalizers, args, out, info, loss_fn, val_fn, params,
                      {"val_episodes": val_eps})
    # measure the latent scale on training frames and store it in the stage's final checkpoint
    model, cfg, normalizers, meta = load_checkpoint(final, args.device)
    sample = train_frames[np.linspace(0, len(train_frames) - 1, min(2048, len(train_frames))).astype(int)]
    lat = torch.cat([encode_frames(model.vae, imgs[sample[i:i + 256]].to(args.device), 1.0)
                     for i in range(0, len(sample), 256)])
    cfg.latent_scale = float(1.0 / lat.std().clamp_min(1e-6))
    val_psnr = val_fn(model)["psnr_db"]
    if info.is_main:
        save_checkpoint(final, model, cfg, normalizers, {**meta, "val_psnr_db": val_psnr})
    return final


def train_transformer(stage, buf, init: Path, args, out, info):
    model, cfg, normalizers, init_meta = load_checkpoint(init, args.device)
    prior_steps = steps_before(init_meta, stage)
    check_dataset_fits(buf, cfg, args.data, init)
    if stage == "video":
        cfg.task_weights = {"video_model": 1.0}
    else:  # --config task_weights tilt the mode sampling (e.g. the policy up); 1 where unnamed
        weights = args.config_overrides.get("task_weights") or {}
        cfg.task_weights = {m: float(weights.get(m, 1.0)) for m in (args.modes or TASK_MODES)}
    # a stage's own augmentation and the action head's schedule (validated like any config; the
    # schedule only before the action head trained, checks.check_overrides_fit)
    settings = {k: args.config_overrides[k] for k in STAGE_TRAINING_FIELDS
                if k != "task_weights" and k in args.config_overrides}
    if settings:
        cfg = UVAConfig.from_dict({**cfg.to_dict(), **settings})
    if cfg.action_diffusion_steps != model.cfg.action_diffusion_steps:
        model = model.with_config(cfg)
    model.cfg = cfg
    model.vae.requires_grad_(False)
    params = [p for n, p in model.named_parameters() if not n.startswith("vae.")]
    latents, actions, proprio, train_idx, val_idx, val_eps = training_windows(
        model, buf, normalizers, args, out, info, augment=True)
    copies = active_copies(cfg)
    modes = cfg.active_modes
    weights = np.array([cfg.task_weights[m] for m in modes], dtype=np.float64)
    weights /= weights.sum()

    def make_batch(index: WindowIndex, rows: np.ndarray, versions=None) -> dict:
        """versions: which encoding each window is drawn from (.augment); None = the original."""
        if versions is None:
            original = latents[0] if copies else latents
            frames = {"history_latents": original[index.history[rows]],
                      "future_latents": original[index.future[rows]]}
        else:
            v = torch.as_tensor(versions)[:, None]
            frames = {"history_latents": latents[v, index.history[rows]],
                      "future_latents": latents[v, index.future[rows]]}
        return {**{k: x.to(args.device) for k, x in frames.items()},
                "actions": actions[index.actions[rows]].to(args.device),
                "proprio": proprio[index.history[rows]].to(args.device)}

    def loss_fn(module, step, gen, part):
        rows = batch_indices(len(train_idx), args.batch_size, args.seed, step)
        rng = np.random.default_rng([args.seed, step, 1])
        mode = modes[rng.choice(len(modes), p=weights)]
        ratio = model.mask_law.sample(rng)
        versions = (draw_versions(len(rows), copies, np.random.default_rng([args.seed, step, 2]))
                    if copies else None)
        batch = make_batch(train_idx, rows[part], None if versions is None else versions[part])
        loss, logs = module(batch, mode, ratio, gen, part, len(rows))
        return loss, {f"{mode}/{k}": v for k, v in logs.items()}

    val_rows = np.linspace(0, len(val_idx) - 1, min(128, len(val_idx))).astype(int)

    @torch.no_grad()
    def val_fn(m):
        m.eval()
        batch = make_batch(val_idx, val_rows)
        out_logs = {}
        for mode in modes:
            loss, _ = m(batch, mode, 0.85, torch.Generator().manual_seed(1234))
            out_logs[mode] = loss.item()
        return out_logs

    return run_stage(stage, model, cfg, normalizers, args, out, info, loss_fn, val_fn, params,
                     {"val_episodes": val_eps}, prior_steps)


def vae_stage_from(source: Path, overrides: dict, out: Path, buf, data_path) -> Path:
    """Write `out` as a vae-stage checkpoint made of `source`'s trained VAE (weights, latent
    scale, normalizers) and a fresh transformer whose config takes `overrides`, so a transformer
    variant (e.g. finer patches) trains on exactly the frozen VAE another run used."""
    fixed = sorted(set(overrides) & set(VAE_FIELDS))
    if fixed:
        raise ValueError(f"--vae-from keeps the VAE of {source}; cannot override {fixed}")
    cfg, normalizers, meta, vae_state = load_vae(source)
    # the VAE encodes any camera: the new model takes the buffer's cameras unless told otherwise
    cfg = UVAConfig.from_dict({**cfg.to_dict(), "cameras": buf.cameras, **overrides})
    check_dataset_fits(buf, cfg, data_path, source)
    model = UVAModel(cfg)
    model.vae.load_state_dict(vae_state)
    save_checkpoint(out, model, cfg, normalizers,
                    {"stage": "vae", "steps": 0, "vae_from": str(source),
                     **({"val_psnr_db": meta["val_psnr_db"]} if "val_psnr_db" in meta else {})})
    return out
