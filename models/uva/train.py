"""Training: the reference UVA recipe on CPU budgets, and unchanged under torchrun/accelerate.

Stages: `vae` (frame autoencoder, then frozen) -> `video` (video_model only) -> `joint` (all five
task modes, from the video stage's weights). `all` runs the three in order. `head` (asked for by
name, beyond the paper's recipe) refits only the action head on a trained model's frozen
policy- and inverse-mode latents, optionally as a different head (--config action-head fields).
Every stage uses AdamW (betas 0.9/0.95, wd 0.02), cosine LR with warmup, EMA weights (diffusers
EMAModel), validation losses per mode, PNG loss curves, and atomic resumable checkpoints.

Resume is exact: every random draw of step k (batch order, task mode, mask ratio, masks, noise,
dropout) is derived from (seed, k), so a run killed at any moment and resumed from its last
checkpoint replays no step and skips none. Under a launcher (WORLD_SIZE > 1) each rank takes its
slice of the same global batch and DDP averages gradients; only rank 0 writes files.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from diffusers.optimization import get_cosine_schedule_with_warmup
from diffusers.training_utils import EMAModel
from tqdm import tqdm

from .checkpoint import (CheckpointError, load_checkpoint, load_vae, read_config,
                         save_checkpoint, total_steps)
from .config import TASK_MODES, UVAConfig
from .data import DatasetError, WindowIndex, dataset_facts, read_replay_buffer
from .fsutil import atomic_write, atomic_write_json
from .model import VAE_MODE, UVAModel
from .normalizer import MinMaxNormalizer
from .rundir import RunLock, check_run, clear_stages
from .metrics import psnr
from .vae import encode_frames, images_to_tensor

STAGES = ("vae", "video", "joint")
HEAD_STAGE = "head"
ACTION_HEAD_FIELDS = ("action_head_width", "action_head_depth", "action_conv_channels",
                      "action_inference_steps", "n_action_steps", "inverse_action_head",
                      "action_temperature")
"""Config fields the `head` stage may change: the rest of the model is kept, frozen."""
HEAD_SHAPE_NEUTRAL_FIELDS = ("action_inference_steps", "n_action_steps", "action_temperature",
                             "inverse_action_head")
"""Of those, the ones that leave the existing heads' weights usable (sampling and execution
settings, and splitting off an inverse head, which starts as a copy of the shared one)."""


@dataclass
class TrainArgs:
    data: str
    out: str
    stage: str = "all"
    steps: dict = field(default_factory=lambda: {"vae": 1500, "video": 1000, "joint": 4000,
                                                 "head": 5000})
    batch_size: int = 32
    lr: float = 1e-4
    vae_lr: float = 5e-4
    weight_decay: float = 0.02
    warmup_steps: int = 100
    ema_decay: float = 0.999
    ckpt_every: int = 250
    eval_every: int = 250
    seed: int = 0
    resume: bool = False
    device: str = "cpu"
    bf16: bool = False
    init: str | None = None  # checkpoint to start a stage from (default: previous stage's output)
    vae_from: str | None = None  # reuse this checkpoint's trained VAE instead of the vae stage
    modes: list[str] | None = None  # joint-stage task modes (default: all five)
    config_overrides: dict = field(default_factory=dict)
    val_fraction: float = 0.05
    max_minutes: float | None = None  # stop (with a checkpoint) after this wall time
    keep_every: int | None = None  # keep EMA snapshots under <stage>/milestones/ (learning curves)
    overwrite: bool = False  # replace stages `out` already holds (else refused unless resume)


# ---------------------------------------------------------------------------- distributed
@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size())


def rank_slice(global_batch: int, info: DistInfo) -> slice:
    """This rank's part of the global batch (sizes differ by at most one)."""
    base, extra = divmod(global_batch, info.world)
    start = info.rank * base + min(info.rank, extra)
    return slice(start, start + base + (1 if info.rank < extra else 0))


# ---------------------------------------------------------------------------- state files
class RunState:
    """Resumable checkpoints under <out>/state/step_N/, with an atomically updated pointer."""

    def __init__(self, out: Path, info: DistInfo):
        self.dir = out / "state"
        self.info = info

    def latest(self) -> Path | None:
        pointer = self.dir / "latest.json"
        if not pointer.is_file():
            return None
        path = self.dir / json.loads(pointer.read_text())["dir"]
        if not path.is_dir():
            raise CheckpointError(f"{pointer}: points to missing {path}")
        return path

    def save(self, step: int, model, cfg, normalizers, optimizer, scheduler, ema, extra: dict):
        if not self.info.is_main:
            return
        path = self.dir / f"step_{step:08d}"
        save_checkpoint(path, model, cfg, normalizers, extra)
        state = {"step": step, "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "ema": ema.state_dict()}
        atomic_write(path / "train_state.pt", lambda tmp: torch.save(state, tmp))
        atomic_write_json(self.dir / "latest.json", {"dir": path.name, "step": step})
        for old in self.dir.glob("step_*"):
            if old != path:
                shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------- helpers
def step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def batch_indices(n: int, batch: int, seed: int, step: int) -> np.ndarray:
    """Global batch of step `step`: consecutive slices of a per-epoch permutation, so every
    sample is seen once per epoch and the data position is a function of the step alone."""
    per_epoch = max(n // batch, 1)
    epoch, pos = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    return perm[pos * batch:(pos + 1) * batch] if n >= batch else perm


def plot_curves(log_path: Path, png_path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    fig, ax = plt.subplots(figsize=(7, 4))
    series: dict[str, list] = {}
    for r in rows:
        for k, v in r.items():
            if k.startswith(("train/", "val/")) and isinstance(v, (int, float)):
                series.setdefault(k, []).append((r["step"], v))
    for k, pts in sorted(series.items()):
        xs, ys = zip(*pts)
        if k.startswith("train/") and len(ys) > 20:  # smooth noisy per-step losses
            w = max(len(ys) // 50, 5)
            ys = np.convolve(ys, np.ones(w) / w, mode="valid")
            xs = xs[w - 1:]
        ax.plot(xs, ys, label=k, linestyle="--" if k.startswith("val/") else "-")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = png_path.with_name(png_path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, png_path)


# ---------------------------------------------------------------------------- the loop
def run_stage(stage: str, model: UVAModel, cfg: UVAConfig, normalizers, args: TrainArgs,
              out: Path, info: DistInfo, loss_fn, val_fn, params, extra: dict,
              prior_steps: int = 0, trained: torch.nn.Module | None = None) -> Path:
    """Generic resumable loop. loss_fn(module, step, gen, slice) -> (loss, logs).
    prior_steps: steps of this stage already in the init checkpoint, so `total_steps` in every
    saved checkpoint counts the whole training history of a chain of continued runs.
    trained: the submodule loss_fn calls when it is not the whole model (DDP wraps that one)."""
    total = args.steps[stage]
    device = torch.device(args.device)
    optimizer = torch.optim.AdamW(params, lr=args.vae_lr if stage == "vae" else args.lr,
                                  betas=(0.9, 0.95), weight_decay=args.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, min(args.warmup_steps, total // 10 + 1),
                                                total)
    ema = EMAModel(params, decay=args.ema_decay, use_ema_warmup=True)
    state = RunState(out, info)
    start = 0
    latest = state.latest() if args.resume else None
    if latest is not None:
        resumed, _, _, _ = load_checkpoint(latest, args.device)
        model.load_state_dict(resumed.state_dict())
        ts = torch.load(latest / "train_state.pt", map_location=device, weights_only=False)
        optimizer.load_state_dict(ts["optimizer"])
        scheduler.load_state_dict(ts["scheduler"])
        ema.load_state_dict(ts["ema"])
        start = ts["step"]
        if info.is_main:
            print(f"[{stage}] resumed from {latest} at step {start}", flush=True)
    elif info.is_main and (out / "log.jsonl").exists():
        (out / "log.jsonl").unlink()
    module = trained or model
    if info.world > 1:
        module = torch.nn.parallel.DistributedDataParallel(module, find_unused_parameters=True)
    log_path = out / "log.jsonl"
    extra = {**extra, "stage": stage, **dataset_facts(args.data)}
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if args.bf16
                else nullcontext())
    t0 = time.time()
    bar = tqdm(range(start, total), initial=start, total=total, desc=f"train {stage}",
               disable=not info.is_main)
    step = start
    for step in bar:
        torch.manual_seed(args.seed * 7919 + step * 131 + info.rank)  # dropout, per rank
        module.train()
        with autocast:
            loss, logs = loss_fn(module, step, step_generator(args.seed, step),
                                 rank_slice(args.batch_size, info))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        ema.step(params)
        done = step + 1
        if info.is_main:
            bar.set_postfix(loss=f"{loss.item():.4f}")
            row = {"step": done, "lr": scheduler.get_last_lr()[0],
                   "time_s": round(time.time() - t0, 3),  # wall clock: throughput, loss vs time
                   **{f"train/{k}": v for k, v in logs.items()}}
            if done % args.eval_every == 0 or done == total:
                with ema_weights(ema, params):
                    row.update({f"val/{k}": v for k, v in val_fn(model).items()})
                tqdm.write(f"[{stage}] step {done}: " + ", ".join(
                    f"{k}={v:.4f}" for k, v in row.items() if k.startswith("val/")))
            with open(log_path, "a") as f:
                f.write(json.dumps(row) + "\n")
        out_of_time = args.max_minutes is not None and (time.time() - t0) > 60 * args.max_minutes
        if done % args.ckpt_every == 0 or done == total or out_of_time:
            state.save(done, model, cfg, normalizers, optimizer, scheduler, ema, extra)
        if args.keep_every and done % args.keep_every == 0 and info.is_main:
            with ema_weights(ema, params):
                save_checkpoint(out / "milestones" / f"step_{done:08d}", model, cfg, normalizers,
                                {**extra, "steps": done, "total_steps": prior_steps + done,
                                 "weights": "ema"})
        if out_of_time:
            if info.is_main:
                print(f"[{stage}] stopping at step {done}: --max-minutes reached", flush=True)
            break
    bar.close()
    final = out / "final"
    if info.is_main:
        with ema_weights(ema, params):
            steps = step + 1 if total > start else start
            save_checkpoint(final, model, cfg, normalizers,
                            {**extra, "steps": steps, "total_steps": prior_steps + steps,
                             "weights": "ema"})
        plot_curves(log_path, out / "loss_curves.png", f"UVA {stage} stage")
    if info.world > 1:
        dist.barrier()
    return final


class ema_weights:
    """Context manager: temporarily swap EMA weights into the live parameters."""

    def __init__(self, ema: EMAModel, params):
        self.ema, self.params = ema, list(params)

    def __enter__(self):
        self.ema.store(self.params)
        self.ema.copy_to(self.params)

    def __exit__(self, *exc):
        self.ema.restore(self.params)


# ---------------------------------------------------------------------------- stages
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


def read_cache(path: Path, **load_kwargs) -> dict | None:
    """A cache file's contents, or None when it is missing or unreadable: a cache is only ever
    a shortcut, so a corrupt one is rebuilt (and said so), never trusted or fatal."""
    if not path.is_file():
        return None
    try:
        data = torch.load(path, **load_kwargs)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as err:
        print(f"ignoring unreadable cache {path} ({type(err).__name__}); recomputing", flush=True)
        return None
    return data if isinstance(data, dict) else None


def hash_weights(h, named_tensors) -> None:
    """Feed every (name, tensor) into the hash, in name order."""
    for name, tensor in sorted(named_tensors):
        h.update(name.encode())
        h.update(tensor.detach().cpu().numpy().tobytes())


def vae_digest(model: UVAModel, cfg: UVAConfig) -> str:
    """Identifies the frozen VAE + latent scale, so a stale latent cache is never reused."""
    h = hashlib.blake2b(digest_size=16)
    hash_weights(h, model.vae.state_dict().items())
    h.update(repr(cfg.latent_scale).encode())
    return h.hexdigest()


ENCODE_CHUNK = 512
"""Frames encoded per VAE call, and the unit the latent cache recognises frames by."""


def encode_dataset(model: UVAModel, buf, cfg: UVAConfig, device: str, cache: Path) -> torch.Tensor:
    """Encode every frame once with the frozen VAE (cached on disk beside the run): (N, C, h, w)
    for one camera, (N, K, C, h, w) for cfg.cameras (indexing it by a window gives the model's
    (B, F, K, C, h, w) layout). The cache keys each chunk of frames by its content, so a dataset
    extended by `collect --base` (its base's frames first) re-encodes only the new frames when the
    base's cache is copied in."""
    digest = vae_digest(model, cfg)
    cameras = [buf.images[c] for c in cfg.cameras]
    n = len(cameras[0])
    spans = [slice(i, min(i + ENCODE_CHUNK, n)) for i in range(0, n, ENCODE_CHUNK)]
    work = [(frames, span) for frames in cameras for span in spans]  # camera-major
    keys = [hashlib.blake2b(frames[s].tobytes(), digest_size=16).hexdigest() for frames, s in work]
    known = {}
    data = read_cache(cache, weights_only=False)
    if data and data.get("vae") == digest and "frame_keys" in data:
        lengths = data.get("chunk_lengths") or ENCODE_CHUNK
        known = dict(zip(data["frame_keys"], torch.split(data["latents"], lengths)))
    if not all(k in known for k in keys):
        chunks = []
        for (frames, span), key in zip(tqdm(work, desc="encode frames"), keys):
            chunks.append(known[key] if key in known else
                          encode_frames(model.vae, torch.from_numpy(frames[span]).to(device),
                                        cfg.latent_scale).cpu())
        known = dict(zip(keys, chunks))
        atomic_write(cache, lambda tmp: torch.save(
            {"vae": digest, "frame_keys": keys, "chunk_lengths": [len(c) for c in chunks],
             "latents": torch.cat(chunks)}, tmp))
    per_camera = [torch.cat([known[k] for k in keys[i:i + len(spans)]])
                  for i in range(0, len(keys), len(spans))]
    return per_camera[0] if len(per_camera) == 1 else torch.stack(per_camera, dim=1)


def training_windows(model: UVAModel, buf, normalizers, args, out: Path, info: DistInfo):
    """Frozen-VAE latents of every frame, normalised actions and proprio, and the train /
    validation window indices (the dataset's own episode split)."""
    cfg = model.cfg
    cache = out.parent / "latents.pt"  # shared by the stages of a run (same frozen VAE)
    if info.is_main:
        latents = encode_dataset(model, buf, cfg, args.device, cache)
    if info.world > 1:
        dist.barrier()
        latents = encode_dataset(model, buf, cfg, args.device, cache)
    actions = torch.as_tensor(normalizers["action"].normalize(buf.action.astype(np.float64)),
                              dtype=torch.float32)
    proprio = torch.as_tensor(normalizers["proprio"].normalize(buf.state.astype(np.float64)),
                              dtype=torch.float32)
    train_eps, val_eps = buf.train_val_episodes(args.val_fraction)
    train_idx = WindowIndex(buf.episode_ends, cfg.n_frames, cfg.actions_per_frame, train_eps)
    val_idx = WindowIndex(buf.episode_ends, cfg.n_frames, cfg.actions_per_frame, val_eps)
    return latents, actions, proprio, train_idx, val_idx, val_eps


def steps_before(init_meta: dict, stage: str) -> int:
    """Steps of `stage` already in --init's chain, so `total_steps` counts the whole history: the
    init's own total when it is that stage; its backbone's joint steps when the joint stage
    continues a head refit."""
    if init_meta.get("stage") == stage:
        return total_steps(init_meta) or 0
    if stage == "joint" and init_meta.get("stage") == HEAD_STAGE:
        return init_meta.get("backbone_total_steps", 0)
    return 0


def train_transformer(stage, buf, init: Path, args, out, info):
    model, cfg, normalizers, init_meta = load_checkpoint(init, args.device)
    prior_steps = steps_before(init_meta, stage)
    check_dataset_fits(buf, cfg, args.data, init)
    if stage == "video":
        cfg.task_weights = {"video_model": 1.0}
    else:  # --config task_weights tilt the mode sampling (e.g. the policy up); 1 where unnamed
        weights = args.config_overrides.get("task_weights") or {}
        cfg.task_weights = {m: float(weights.get(m, 1.0)) for m in (args.modes or TASK_MODES)}
    model.cfg = cfg
    model.vae.requires_grad_(False)
    params = [p for n, p in model.named_parameters() if not n.startswith("vae.")]
    latents, actions, proprio, train_idx, val_idx, val_eps = training_windows(
        model, buf, normalizers, args, out, info)
    modes = cfg.active_modes
    weights = np.array([cfg.task_weights[m] for m in modes], dtype=np.float64)
    weights /= weights.sum()

    def make_batch(index: WindowIndex, rows: np.ndarray) -> dict:
        return {"history_latents": latents[index.history[rows]].to(args.device),
                "future_latents": latents[index.future[rows]].to(args.device),
                "actions": actions[index.actions[rows]].to(args.device),
                "proprio": proprio[index.history[rows]].to(args.device)}

    def loss_fn(module, step, gen, part):
        rows = batch_indices(len(train_idx), args.batch_size, args.seed, step)
        rng = np.random.default_rng([args.seed, step, 1])
        mode = modes[rng.choice(len(modes), p=weights)]
        ratio = model.mask_law.sample(rng)
        loss, logs = module(make_batch(train_idx, rows[part]), mode, ratio, gen, part, len(rows))
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


HEAD_MODES = ("policy_model", "inverse_model")
"""The modes whose action-head input is a fixed function of the window (every future token
hidden, or every one shown), i.e. the head's two uses at inference: the policy and inverse
dynamics. The head stage fits both so the refitted head keeps serving inverse dynamics."""

HEAD_PREFIXES = ("action_head.", "inverse_action_head.")


class HeadsByMode(torch.nn.ModuleDict):
    """The action head(s) the head stage trains, keyed by the mode each decodes (one module,
    possibly listed twice, so DDP can wrap them with a single forward)."""

    def forward(self, mode: str, *args, **kwargs):
        return self[mode](*args, **kwargs)


@torch.no_grad()
def head_latents(model: UVAModel, mode: str, latents, proprio, index: WindowIndex, device: str,
                 batch: int = 256, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Joint latent of every window in one of HEAD_MODES, computed once: with the backbone
    frozen (and in eval mode, as at inference) it is a fixed function of the window. Written
    into one preallocated tensor: concatenating the pieces would double the peak memory."""
    model.eval()
    out = None
    for i in tqdm(range(0, len(index), batch), desc=f"{mode} latents"):
        rows = slice(i, i + batch)
        z = (model.policy_latent(latents[index.history[rows]].to(device),
                                 proprio[index.history[rows]].to(device))
             if mode == "policy_model" else
             model.inverse_latent(latents[index.future[rows]].to(device)))
        if out is None:
            out = torch.empty((len(index), *z.shape[1:]), dtype=dtype, device=z.device)
        out[rows] = z
    return out


HEAD_LATENT_DTYPE = torch.float16
"""Cached head latents are half precision: (windows, tokens, width) in fp32 is ~15 GB for the
2 400 PushT demos. The head casts each batch back to fp32 (relative rounding ~5e-4)."""


def backbone_digest(model: UVAModel, mode: str) -> bytes:
    """Identifies what a head latent depends on: every weight but the action heads', the mode
    and the window shape."""
    h = hashlib.blake2b(digest_size=16)
    hash_weights(h, ((n, t) for n, t in model.state_dict().items()
                     if not n.startswith(HEAD_PREFIXES)))
    h.update(f"{mode} {model.cfg.n_frames} {model.cfg.actions_per_frame}".encode())
    return h.digest()


def cached_head_latents(model: UVAModel, mode: str, latents, proprio, buf, episodes: list[int],
                        device: str, cache: Path, write: bool) -> torch.Tensor:
    """head_latents of the windows of `episodes` (HEAD_LATENT_DTYPE), cached on disk per episode
    by content (backbone, frame latents, proprio): a resumed or repeated refit computes nothing,
    and one on a dataset extended by `collect --base` only the new episodes' windows (copy the
    base run's cache in, as with latents.pt). Known episodes are read from a memory map."""
    cfg = model.cfg
    slices = buf.episode_slices()
    backbone = backbone_digest(model, mode)
    keys, lengths = [], []
    for ep in episodes:
        frames = slices[ep]
        h = hashlib.blake2b(backbone, digest_size=16)
        h.update(latents[frames].numpy().tobytes())
        if mode == "policy_model":
            h.update(proprio[frames].numpy().tobytes())
        keys.append(h.hexdigest())
        lengths.append(frames.stop - frames.start)
    offsets = np.cumsum([0] + lengths)
    known = {}
    stored = read_cache(cache, mmap=True, weights_only=True)
    if stored:
        ends = np.cumsum([0] + list(stored["lengths"]))
        known = {k: (ends[j], ends[j + 1]) for j, k in enumerate(stored["keys"])}
    missing = [i for i, k in enumerate(keys) if k not in known]
    fresh = None
    if missing:
        fresh = head_latents(model, mode, latents, proprio,
                             WindowIndex(buf.episode_ends, cfg.n_frames, cfg.actions_per_frame,
                                         [episodes[i] for i in missing]),
                             device, dtype=HEAD_LATENT_DTYPE)
    if len(missing) == len(keys):
        out = fresh
    else:
        shape = (fresh if fresh is not None else stored["latents"]).shape[1:]
        out = torch.empty((offsets[-1], *shape), dtype=HEAD_LATENT_DTYPE, device=device)
        row = 0
        for i, key in enumerate(keys):
            dest = slice(offsets[i], offsets[i + 1])
            if key in known:
                out[dest] = stored["latents"][known[key][0]:known[key][1]]
            else:
                out[dest] = fresh[row:row + lengths[i]]
                row += lengths[i]
    del fresh, stored
    if missing and write:
        atomic_write(cache, lambda tmp: torch.save({"keys": keys, "lengths": lengths,
                                                    "latents": out.cpu()}, tmp))
    return out


def train_head(buf, init: Path, args, out, info):
    """Refit the action head(s) alone on the frozen backbone's policy- and inverse-mode latents
    (the HEAD_MODES the checkpoint was trained with, or those in --modes; one mode per step),
    each mode training the head that decodes it (`UVAModel.head_for`). Overriding action-head
    shape fields (e.g. action_head_width) starts fresh heads of that shape; without overrides the
    existing heads continue. `inverse_action_head: true` on a file with one shared head splits
    it: the new inverse head starts as a copy of the shared one. The VAE, transformer and video
    head are unchanged, so the refitted file is still a full UVA model (video, dynamics, inverse
    dynamics)."""
    source, cfg, normalizers, init_meta = load_checkpoint(init, args.device)
    check_dataset_fits(buf, cfg, args.data, init)
    cfg = UVAConfig.from_dict({**cfg.to_dict(), **args.config_overrides})
    model = UVAModel(cfg).to(args.device)
    fresh_head = any(getattr(source.cfg, k) != getattr(cfg, k) for k in args.config_overrides
                     if k not in HEAD_SHAPE_NEUTRAL_FIELDS)
    state = source.state_dict()
    if cfg.inverse_action_head and source.inverse_action_head is None:
        state |= {"inverse_" + k: v for k, v in state.items() if k.startswith("action_head.")}
    keep = {k: v for k, v in state.items()
            if not (fresh_head and k.startswith(HEAD_PREFIXES))
            and not (k.startswith("inverse_action_head.") and not cfg.inverse_action_head)}
    missing, unexpected = model.load_state_dict(keep, strict=False)
    if unexpected or any(not k.startswith(HEAD_PREFIXES) for k in missing):
        raise CheckpointError(f"{init}: weights do not fit the head stage's model")
    wanted = args.modes or cfg.active_modes  # a UVA-action file: the policy only
    modes = [m for m in HEAD_MODES if m in wanted]
    if fresh_head and cfg.inverse_action_head and "inverse_model" not in modes:
        raise ValueError("a new action-head shape replaces the inverse-dynamics head too: "
                         "fit it as well (--modes policy_model inverse_model)")
    latents, actions, proprio, train_idx, val_idx, val_eps = training_windows(
        model, buf, normalizers, args, out, info)
    model.requires_grad_(False)
    heads = HeadsByMode({m: model.head_for(m) for m in modes}).requires_grad_(True)
    params = list(heads.parameters())
    val_rows = np.linspace(0, len(val_idx) - 1, min(128, len(val_idx))).astype(int)
    train_eps, _ = buf.train_val_episodes(args.val_fraction)  # train_idx's episodes, in order

    def windows_latents(mode, episodes, split):
        return cached_head_latents(model, mode, latents, proprio, buf, episodes, args.device,
                                   out.parent / f"{mode}_{split}_latents.pt", write=info.is_main)

    train_z = {m: windows_latents(m, train_eps, "train") for m in modes}
    val_z = {m: windows_latents(m, val_eps, "val")[val_rows].float() for m in modes}
    val_actions = actions[val_idx.actions[val_rows]].to(args.device)

    def loss_fn(module, step, gen, part):
        rows = batch_indices(len(train_idx), args.batch_size, args.seed, step)
        mode = modes[np.random.default_rng([args.seed, step, 1]).integers(len(modes))]
        mine = rows[part]
        loss = module(mode, train_z[mode][mine].float(),
                      actions[train_idx.actions[mine]].to(args.device), cfg.diffusion_batch_mul,
                      gen, part, len(rows))
        return loss, {f"{mode}/action": loss.item()}

    @torch.no_grad()
    def val_fn(m):
        return {mode: m.head_for(mode).loss(val_z[mode], val_actions, cfg.diffusion_batch_mul,
                                            torch.Generator().manual_seed(1234)).item()
                for mode in modes}

    prior_steps = steps_before(init_meta, HEAD_STAGE)
    extra = {"val_episodes": val_eps, "head_of": str(init),
             "backbone_total_steps": init_meta.get("backbone_total_steps", total_steps(init_meta)),
             "fresh_head": fresh_head}
    return run_stage(HEAD_STAGE, model, cfg, normalizers, args, out, info, loss_fn, val_fn,
                     params, extra, prior_steps, trained=heads)


VAE_FIELDS = ("image_size", "vae_block_channels", "vae_latent_channels", "vae_kl_weight",
              "latent_scale")
"""Config fields a reused VAE fixes: overriding them would not match its weights or latents."""


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


STAGE_WEIGHTING_FIELDS = ("task_weights",)
"""Config fields a transformer stage started from --init may change: they weight its losses."""


def check_overrides_fit(init: Path, overrides: dict) -> None:
    """A stage continuing --init's weights keeps that model's shape: --config fields that would
    differ from its config are refused up front instead of being silently ignored."""
    cfg = read_config(init)[0]
    wanted = UVAConfig.from_dict({**cfg.to_dict(), **overrides})
    changed = sorted(k for k in overrides
                     if k not in STAGE_WEIGHTING_FIELDS and getattr(wanted, k) != getattr(cfg, k))
    if changed:
        raise ValueError(f"--init {init} fixes the model; --config may change only "
                         f"{STAGE_WEIGHTING_FIELDS} here, not {changed}")


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


def train(args: TrainArgs) -> dict:
    """Run the requested stage(s); returns {stage: final checkpoint path}."""
    if args.stage not in STAGES + ("all", HEAD_STAGE):
        raise ValueError(f"unknown stage '{args.stage}'; choose from "
                         f"{STAGES + ('all', HEAD_STAGE)}")
    if args.modes:
        bad = set(args.modes) - set(TASK_MODES)
        if bad:
            raise ValueError(f"unknown task modes {sorted(bad)}; valid: {TASK_MODES}")
    buf = read_replay_buffer(args.data)
    info = init_distributed(args.device)
    if info.world > 1 and args.device == "cuda":  # one GPU per rank (torchrun/accelerate set it)
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        args.device = f"cuda:{local}"
    torch.manual_seed(args.seed)  # identical initial weights on every rank and every rerun
    root = Path(args.out)
    stages = STAGES if args.stage == "all" else (args.stage,)
    init = Path(args.init) if args.init else None
    if args.stage == HEAD_STAGE:
        bad = sorted(set(args.config_overrides) - set(ACTION_HEAD_FIELDS))
        if bad:
            raise ValueError(f"--stage head changes only action-head fields "
                             f"{ACTION_HEAD_FIELDS}; cannot override {bad}")
        if args.modes and not set(args.modes) & set(HEAD_MODES):
            raise ValueError(f"--stage head fits the action head in {HEAD_MODES}; "
                             f"--modes {args.modes} names neither")
        if init is None:
            init = root / "joint" / "final"
            if not init.is_dir():
                raise CheckpointError(f"--stage head refits a trained model's action head: "
                                      f"pass --init CKPT (or train {init} first)")
    if init is not None and args.stage in ("video", "joint"):
        check_overrides_fit(init, args.config_overrides)
    if args.vae_from and (args.stage in ("vae", HEAD_STAGE) or args.init):
        raise ValueError("--vae-from replaces the vae stage and picks the starting weights: "
                         "use it with --stage video, joint or all, and without --init")
    if "vae" in stages and not args.vae_from:
        fresh_config(buf, args)  # a dataset the model cannot take is refused before any write
    written = tuple(dict.fromkeys(stages + (("vae",) if args.vae_from else ())))
    inputs = (args.data, args.init, args.vae_from)
    lock = RunLock(root) if info.is_main else None
    if lock is not None:  # one training per run directory; nothing finished is replaced
        check_run(root, written, args.resume, args.overwrite, inputs)
        with lock:
            check_run(root, written, args.resume, args.overwrite, inputs)  # now under the lock
            if args.overwrite and not args.resume:
                clear_stages(root, written)
            return _run_stages(args, buf, info, root, stages, init)
    return _run_stages(args, buf, info, root, stages, init)


def _run_stages(args: TrainArgs, buf, info: DistInfo, root: Path, stages: tuple, init) -> dict:
    """train()'s stages, in order, once its checks passed (and, on rank 0, under the run lock)."""
    finals: dict[str, str] = {}
    if info.world > 1:
        dist.barrier()  # rank 0 checked (and cleared) the run directory first
    if args.vae_from:
        stages = tuple(s for s in stages if s != "vae")
        init = root / "vae" / "final"
        if info.is_main:
            vae_stage_from(Path(args.vae_from), args.config_overrides, init, buf, args.data)
        if info.world > 1:
            dist.barrier()
    for stage in stages:
        out = root / stage
        if info.is_main:
            out.mkdir(parents=True, exist_ok=True)
        if args.resume and (out / "final" / "config.json").is_file() and \
                json.loads((out / "final" / "config.json").read_text()).get("steps") == args.steps[stage]:
            finals[stage] = str(out / "final")  # finished before the interruption
            init = out / "final"
            continue
        if stage == "vae":
            cfg = fresh_config(buf, args)
            normalizers = {"action": MinMaxNormalizer.fit(buf.action),
                           "proprio": MinMaxNormalizer.fit(buf.state)}
            final = train_vae(buf, cfg, normalizers, args, out, info)
        elif stage == HEAD_STAGE:
            final = train_head(buf, init, args, out, info)
        else:
            if init is None:
                prev = root / STAGES[STAGES.index(stage) - 1] / "final"
                if not prev.is_dir():
                    raise CheckpointError(f"stage '{stage}' needs --init or {prev}")
                init = prev
            final = train_transformer(stage, buf, init, args, out, info)
        finals[stage] = str(final)
        init = final
    if info.is_main:
        atomic_write_json(root / "train_summary.json", {"stages": finals, "data": args.data,
                                                        "world_size": info.world})
    return finals
