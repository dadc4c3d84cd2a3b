"""Inference API over a trained UVA checkpoint: policy, forward dynamics / video, inverse dynamics.

`predict_action` is what runs at control time: one encoder+decoder pass with every future token
masked, then the action head only (the video head never runs). VAE latents of past frames are
cached by camera and frame content, so a new control step encodes only its newest frame(s).
Where the device computes bf16 natively, predict_action's VAE encoder and transformer run in bf16
(`precision`, uva.fastpath); video, inverse dynamics and reconstructions stay fp32.

Cameras: obs["images"] maps each of the checkpoint's camera names (cfg.cameras) to its frames; a
one-camera model also takes obs["image"]. What comes back per camera (predict_video's frames) is a
{camera: frames} dict for several cameras and the plain array for one, as before cameras existed.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np
import torch

from .checkpoint import CheckpointError, load_checkpoint
from .config import UVAConfig
from .fastpath import (ActionSampler, FrameEncoder, PolicyBackbone, dtype_of,
                       resolve_precision)
from .model import UVAModel
from .normalizer import MinMaxNormalizer
from .vae import decode_latents, encode_frames


class UVAPolicy:
    def __init__(self, model: UVAModel, cfg: UVAConfig, normalizers: dict[str, MinMaxNormalizer],
                 device: str = "cpu", meta: dict | None = None, fast: bool = True,
                 precision: str = "auto"):
        self.model = model.to(device).eval()
        self.cfg = cfg
        self.meta = meta or {}  # training facts saved with the checkpoint (steps, val episodes)
        self.device = torch.device(device)
        self.action_norm = normalizers["action"]
        self.proprio_norm = normalizers["proprio"]
        self._latent_cache: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self.cache_capacity = 4 * cfg.n_frames * cfg.n_cameras
        self.frames_encoded = 0  # counts VAE encodes; lets callers verify the cache works
        # fast: traced VAE encoder + batched-modulation DDIM loop; False = the eager reference
        # path (same results within fastpath.FAST_TOLERANCE; kept for tests and `uva bench`).
        # precision: predict_action's VAE encoder and transformer in bf16 where the device
        # computes it natively ("auto"), or as asked ("fp32", "bf16"); see fastpath. Video,
        # inverse dynamics and reconstructions stay fp32 (not on the control path).
        self.precision, self.precision_reason = resolve_precision(precision, self.device, fast)
        dtype = dtype_of(self.precision)
        self._fast = fast
        self.frame_encoder = FrameEncoder(self.model.vae, cfg.image_size, cfg.latent_scale,
                                          self.device, fast, dtype)
        self.backbone = PolicyBackbone(self.model, dtype) if self.precision != "fp32" else None
        self.action_sampler = ActionSampler(self.model.action_head, self.device, fast)

    @property
    def fast(self) -> bool:
        return self._fast

    @fast.setter
    def fast(self, value: bool) -> None:
        """Switching between the fast and the reference path forgets the cached latents (each
        path encodes frames its own way)."""
        if bool(value) != self._fast:
            self._latent_cache.clear()
        self._fast = bool(value)

    # ------------------------------------------------------------------ validation
    def _check_frames(self, images, name: str) -> np.ndarray:
        cfg = self.cfg
        images = np.asarray(images)
        want = (cfg.n_frames, cfg.image_size, cfg.image_size, 3)
        if images.shape != want:
            raise ValueError(
                f"{name}: expected shape {want} (frames oldest->newest, HxWx3 RGB), got "
                f"{images.shape}; resize to {cfg.image_size}x{cfg.image_size} RGB first")
        if images.dtype != np.uint8:
            raise ValueError(f"{name}: expected uint8 RGB pixels, got dtype {images.dtype}")
        return images

    @staticmethod
    def _check_finite(values, shape: tuple[int, int], name: str) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        if values.shape != shape:
            raise ValueError(f"{name}: expected shape {shape}, got {values.shape}")
        if not np.isfinite(values).all():
            raise ValueError(f"{name}: contains NaN or inf")
        return values

    def _check_cameras(self, frames, name: str) -> dict[str, np.ndarray]:
        """{camera: checked frames} in cfg.cameras order from a {camera: frames} mapping, or
        from a plain frame array when the model has one camera."""
        cameras = self.cfg.cameras
        if not isinstance(frames, dict):
            if len(cameras) > 1:
                raise ValueError(f"{name}: this model has cameras {cameras}; give a dict "
                                 f"{{camera name: frames}}, not one frame array")
            return {cameras[0]: self._check_frames(frames, name)}
        missing = [c for c in cameras if c not in frames]
        extra = sorted(str(c) for c in frames if c not in cameras)
        if missing or extra:
            raise ValueError(f"{name}: cameras do not match the model's {cameras}: "
                             f"missing {missing}, unexpected {extra}")
        return {c: self._check_frames(frames[c], f"{name}[{c!r}]") for c in cameras}

    def _check_obs(self, obs: dict) -> tuple[dict[str, np.ndarray], np.ndarray]:
        if not isinstance(obs, dict) or "state" not in obs or ("image" in obs) == ("images" in obs):
            raise ValueError("obs must be a dict with 'state' and either 'images' ({camera: "
                             "frames}) or, for a one-camera model, 'image'")
        cfg = self.cfg
        images = (self._check_cameras(obs["images"], "obs['images']") if "images" in obs
                  else self._check_cameras(obs["image"], "obs['image']"))
        return images, self._check_finite(obs["state"], (cfg.n_frames, cfg.proprio_dim),
                                          "obs['state']")

    def _per_camera(self, arrays: dict[str, np.ndarray]):
        """The plain array for a one-camera model, else the {camera: array} dict."""
        return arrays[self.cfg.cameras[0]] if self.cfg.n_cameras == 1 else arrays

    def _check_actions(self, actions) -> np.ndarray:
        return self._check_finite(actions, (self.cfg.horizon, self.cfg.action_dim), "actions")

    # ------------------------------------------------------------------ encoding
    def reset(self) -> None:
        self._latent_cache.clear()

    def encode(self, images, for_policy: bool = False) -> torch.Tensor:
        """{camera: (F, H, W, 3) uint8} (or the array, one camera) -> latents (1, F, C, h, w),
        or (1, F, K, C, h, w) for K cameras, reusing cached frames; the frames no camera has
        cached are encoded in one VAE call. for_policy: the latents predict_action uses (the
        fast encoder in the policy's precision); otherwise fp32 (video, inverse dynamics)."""
        keys = self._cache_frames(images, for_policy)
        latents = torch.stack([self._latent_cache[k] for k in keys])
        if self.cfg.n_cameras == 1:
            return latents[None]
        # camera-major list -> frame-major (F, K, C, h, w), the model's layout
        return latents.reshape(self.cfg.n_cameras, self.cfg.n_frames,
                               *latents.shape[1:]).transpose(0, 1)[None]

    @torch.inference_mode()
    def precache(self, images) -> int:
        """Encode frames into the latent cache ahead of the predict_action that will use them
        (a node encodes a history frame when it arrives, between chunks). Same input as
        `encode`, any number of frames per camera; returns how many were encoded."""
        before = self.frames_encoded
        self._cache_frames(images, for_policy=True)
        return self.frames_encoded - before

    def _cache_frames(self, images, for_policy: bool) -> list[bytes]:
        """Cache keys of the frames (camera-major), encoding the ones not cached in one call;
        they become the most recent, and the least recent beyond the capacity are dropped.
        A lower-precision policy path keeps its latents apart from the fp32 ones (key tag)."""
        if not isinstance(images, dict):
            images = {self.cfg.cameras[0]: np.asarray(images)}
        low_precision = self.precision != "fp32"
        fast = self.fast and (for_policy or not low_precision)
        tag = self.precision.encode() if fast and low_precision else b""
        frames = [(c, f) for c in self.cfg.cameras for f in images[c]]
        keys = []
        for camera, frame in frames:
            h = hashlib.blake2b(camera.encode() + tag, digest_size=16)
            h.update(np.ascontiguousarray(frame).tobytes())
            keys.append(h.digest())
        first = {}  # a frame repeated (episode-start padding) is encoded once
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        todo = [i for k, i in first.items() if k not in self._latent_cache]
        if todo:
            pixels = np.stack([frames[i][1] for i in todo])
            fresh = self.frame_encoder(torch.from_numpy(pixels).to(self.device), fast)
            self.frames_encoded += len(todo)
            for i, lat in zip(todo, fresh):
                self._latent_cache[keys[i]] = lat
        for k in keys:
            self._latent_cache.move_to_end(k)
        while len(self._latent_cache) > self.cache_capacity:
            self._latent_cache.popitem(last=False)
        return keys

    def _proprio(self, state: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(self.proprio_norm.normalize(state), dtype=torch.float32,
                               device=self.device)[None]

    def _generator(self, seed: int | None) -> torch.Generator | None:
        return None if seed is None else torch.Generator().manual_seed(seed)

    # ------------------------------------------------------------------ API
    @torch.inference_mode()
    def predict_action(self, obs: dict, seed: int | None = None) -> np.ndarray:
        """obs: {'images': {camera: (F, S, S, 3) uint8 oldest->newest}, 'state': (F,
        proprio_dim)} ('image': the frames, for a one-camera model). Returns the action chunk
        (horizon, action_dim) in environment units."""
        images, state = self._check_obs(obs)
        proprio = self._proprio(state)
        backbone = self.backbone if (self.fast and self.backbone is not None) else self.model
        z = backbone.policy_latent(self.encode(images, for_policy=True), proprio)
        return self._actions_out(self.action_sampler.sample(
            z, self._generator(seed), self.cfg.action_temperature, fast=self.fast)[0])

    def warm_up(self, repeats: int = 2) -> None:
        """Run predict_action on blank inputs so lazy initialisation (oneDNN primitive caches,
        CUDA kernels and allocator) happens before the first control tick; the latent cache is
        left as it was (blank frames are evicted)."""
        cfg = self.cfg
        saved = OrderedDict(self._latent_cache)
        count = self.frames_encoded
        frames = np.zeros((cfg.n_frames, cfg.image_size, cfg.image_size, 3), np.uint8)
        cameras = list(getattr(cfg, "cameras", None) or [])
        blank = ({"images": {c: frames for c in cameras}} if len(cameras) > 1
                 else {"image": frames})
        blank["state"] = np.tile(self.proprio_norm.unnormalize(np.zeros(cfg.proprio_dim)),
                                 (cfg.n_frames, 1))
        for _ in range(repeats):
            self._latent_cache.clear()
            self.predict_action(blank, seed=0)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self._latent_cache, self.frames_encoded = saved, count

    def _actions_out(self, normalized: torch.Tensor) -> np.ndarray:
        """Clip to the demonstrated range ([-1, 1] normalised) before mapping to env units:
        diffusion samples can overshoot and a policy must never command beyond its data."""
        return self.action_norm.unnormalize(normalized.clamp(-1, 1).double().cpu().numpy())

    def predict_video(self, obs: dict, actions=None, seed: int | None = None,
                      anchored: bool = True, temperature: float | None = None):
        """Future frames (F, S, S, 3) uint8 by MAR iterative unmasking (UVAModel.sample_video;
        {camera: frames} for a several-camera model). With
        `actions` (the chunk in environment units) this is forward dynamics; without, video
        generation.

        anchored: return the newest observed frame plus the predicted change (decoded prediction
        minus the decoded newest latent). The frozen VAE's reconstruction error appears in both
        decodes and cancels, so what the model predicts unchanged comes out exactly as observed
        instead of VAE-blurred. False returns the raw decodes.
        temperature: video head noise scale (default: the checkpoint's `video_temperature`)."""
        raw, anchored_frames = self.predict_video_variants(obs, actions, seed, temperature)
        return anchored_frames if anchored else raw

    @torch.inference_mode()
    def predict_video_variants(self, obs: dict, actions=None, seed: int | None = None,
                               temperature: float | None = None) -> tuple:
        """(raw decodes, anchored frames) of one sampling run (see `predict_video`), so an
        evaluation can compare the two without sampling twice."""
        images, state = self._check_obs(obs)
        cfg, m = self.cfg, self.model
        norm_actions = None
        if actions is not None:
            norm_actions = torch.as_tensor(
                self.action_norm.normalize(self._check_actions(actions)), dtype=torch.float32,
                device=self.device)[None]
        history_latents = self.encode(images)
        latents = m.sample_video(history_latents, norm_actions, self._proprio(state),
                                 self._generator(seed),
                                 cfg.video_temperature if temperature is None else temperature,
                                 fast=self.fast)[0]
        F, K = cfg.n_frames, cfg.n_cameras
        newest = history_latents[0, -1:]
        if K > 1:  # (F, K, ...) -> camera-major frames, one decode for all cameras
            latents, newest = latents.transpose(0, 1).flatten(0, 1), newest[0]
        decoded = decode_latents(m.vae, torch.cat([latents, newest]),
                                 cfg.latent_scale).cpu().numpy()
        raw, anchored = {}, {}
        for k, camera in enumerate(cfg.cameras):
            pred, last = decoded[k * F:(k + 1) * F], decoded[K * F + k][None]
            change = pred.astype(np.int16) - last.astype(np.int16)
            raw[camera] = pred
            anchored[camera] = np.clip(images[camera][-1:].astype(np.int16) + change, 0,
                                       255).astype(np.uint8)
        return self._per_camera(raw), self._per_camera(anchored)

    @torch.inference_mode()
    def reconstruct(self, frames) -> np.ndarray:
        """VAE encode -> decode of uint8 frames: the ceiling for raw decodes of predicted latents."""
        lat = encode_frames(self.model.vae, torch.from_numpy(np.asarray(frames)).to(self.device),
                            self.cfg.latent_scale)
        return decode_latents(self.model.vae, lat, self.cfg.latent_scale).cpu().numpy()

    @torch.inference_mode()
    def inverse_dynamics(self, frames, seed: int | None = None) -> np.ndarray:
        """frames: the F frames reached after each group of `actions_per_frame` actions,
        (F, S, S, 3) uint8 ({camera: frames} for several cameras). Returns the actions
        (horizon, action_dim) that led there."""
        z = self.model.inverse_latent(self.encode(self._check_cameras(frames, "frames")))
        head = self.model.head_for("inverse_model")
        return self._actions_out(head.sample(z, self._generator(seed),
                                             self.cfg.action_temperature, fast=self.fast)[0])


def load_policy(path, device: str = "cpu", fast: bool = True,
                precision: str = "auto") -> UVAPolicy:
    """Load a checkpoint directory; raises CheckpointError naming the bad file. fast=False
    keeps the eager reference inference path (see UVAPolicy.fast); precision: "auto" (bf16
    where the device computes it natively, else fp32), "fp32" or "bf16" (see uva.fastpath)."""
    model, cfg, normalizers, meta = load_checkpoint(path, device)
    policy = UVAPolicy(model, cfg, normalizers, device, meta, fast, precision)
    try:  # lazy initialisation at load (= a node's configure), not at the first control tick
        policy.warm_up()
    except (RuntimeError, ValueError) as e:
        raise CheckpointError(f"{path}: loads but predict_action fails on blank input: {e}") from e
    return policy
