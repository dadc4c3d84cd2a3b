"""What the frozen parts compute once and keep on disk, keyed by content so a stale entry is never
reused and an extended dataset computes only what is new: every frame's VAE latent (latents.pt,
shared by a run's stages) and the head stage's frozen-backbone latents per mode and episode."""
from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from ..config import UVAConfig
from ..data import WindowIndex
from ..fsutil import atomic_write
from ..model import UVAModel
from ..vae import encode_frames
from .augment import active_copies, shifted_images
from .distributed import DistInfo


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


def encode_dataset(model: UVAModel, buf, cfg: UVAConfig, device: str, cache: Path,
                   images: dict | None = None) -> torch.Tensor:
    """Encode every frame once with the frozen VAE (cached on disk beside the run): (N, C, h, w)
    for one camera, (N, K, C, h, w) for cfg.cameras (indexing it by a window gives the model's
    (B, F, K, C, h, w) layout). The cache keys each chunk of frames by its content, so a dataset
    extended by `collect --base` (its base's frames first) re-encodes only the new frames when the
    base's cache is copied in. `images` ({camera: frames}) replaces the buffer's frames (the
    shifted copies of .augment)."""
    digest = vae_digest(model, cfg)
    cameras = [(images or buf.images)[c] for c in cfg.cameras]
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


def training_windows(model: UVAModel, buf, normalizers, args, out: Path, info: DistInfo,
                     augment: bool = False):
    """Frozen-VAE latents of every frame, normalised actions and proprio, and the train /
    validation window indices (the dataset's own episode split). With `augment` and
    cfg.augment_shift_copies > 0 the latents are (1 + copies, frames, ...): the original
    encoding first, then each shifted copy of the training episodes (.augment)."""
    cfg = model.cfg
    train_eps, val_eps = buf.train_val_episodes(args.val_fraction)
    copies = active_copies(cfg) if augment else 0
    # shared by the stages of a run (same frozen VAE); a copy's offsets depend only on its number
    caches = [(out.parent / "latents.pt", None)] + [
        (out.parent / f"shift{cfg.augment_shift_px}px_copy{k}_latents.pt", k)
        for k in range(1, copies + 1)]

    def encode_all():
        return [encode_dataset(model, buf, cfg, args.device, cache, None if k is None else
                               shifted_images(buf, cfg.cameras, k, cfg.augment_shift_px, train_eps))
                for cache, k in caches]

    if info.is_main:
        versions = encode_all()
    if info.world > 1:
        dist.barrier()
        versions = encode_all()
    latents = versions[0] if len(versions) == 1 else torch.stack(versions)
    actions = torch.as_tensor(normalizers["action"].normalize(buf.action.astype(np.float64)),
                              dtype=torch.float32)
    proprio = torch.as_tensor(normalizers["proprio"].normalize(buf.state.astype(np.float64)),
                              dtype=torch.float32)
    train_idx = WindowIndex(buf.episode_ends, cfg.n_frames, cfg.actions_per_frame, train_eps)
    val_idx = WindowIndex(buf.episode_ends, cfg.n_frames, cfg.actions_per_frame, val_eps)
    return latents, actions, proprio, train_idx, val_idx, val_eps


HEAD_PREFIXES = ("action_head.", "inverse_action_head.")
"""Tensor-name prefixes of the action heads (what a head refit trains; the rest is the backbone)."""


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
