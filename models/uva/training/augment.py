"""Image augmentation for the transformer stages (video, joint): random shifts, training only.

The frame VAE is frozen after its stage and every frame is encoded once (caches.encode_dataset),
so augmentation cannot draw a new crop per step as Diffusion Policy and DrQ do on raw pixels.
Instead each training episode is encoded `copies` more times, every copy shifted by one random
offset of up to `shift_px` pixels (edge-replicated pad, then crop back to the frame size; one
offset per episode, copy and camera, so the frames of a window, past and future, move together),
and each training window is drawn from the original or one of the copies with equal
probability. The offsets are a fixed function of (copy, episode, camera), so a copy's cache is
reused by every stage and every resume. Validation windows and inference are never shifted.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


AUGMENT_FIELDS = ("augment_shift_px", "augment_shift_copies")
"""The UVAConfig fields of this augmentation (training settings: a stage may change them)."""


def active_copies(cfg) -> int:
    """Shifted copies a transformer stage trains on (0 when shifting is off)."""
    return cfg.augment_shift_copies if cfg.augment_shift_px > 0 else 0


def shift_frames(frames: np.ndarray, dx: int, dy: int, pad: int) -> np.ndarray:
    """(N, H, W, 3) uint8 moved by (dx, dy) pixels (content moves by -dx, -dy): replicate-pad by
    `pad`, crop back to H x W at offset (pad + dy, pad + dx)."""
    if not (abs(dx) <= pad and abs(dy) <= pad):
        raise ValueError(f"shift ({dx}, {dy}) exceeds the padding {pad}")
    if pad == 0 or len(frames) == 0:
        return frames.copy()
    h, w = frames.shape[1:3]
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    x = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    x = x[:, :, pad + dy:pad + dy + h, pad + dx:pad + dx + w]
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def episode_offsets(copy: int, n_episodes: int, n_cameras: int, shift_px: int) -> np.ndarray:
    """(episodes, cameras, 2) integer (dx, dy) in [-shift_px, shift_px] of copy `copy` (>= 1)."""
    rng = np.random.default_rng([7151, copy, shift_px])
    return rng.integers(-shift_px, shift_px + 1, (n_episodes, n_cameras, 2))


class ShiftedFrames:
    """One camera's frames with the listed episodes shifted by their offsets, computed on each
    read of a range (`frames[a:b]`): a copy never holds a second array of the whole buffer's
    frames in memory (about 6 GB at 2 400 PushT demos), only the range being read."""

    def __init__(self, frames, slices: list[slice], offsets: np.ndarray, pad: int,
                 episodes: list[int]):
        self.frames, self.pad = frames, pad
        self.shape, self.dtype = tuple(frames.shape), frames.dtype
        self.shifted = [(slices[e], (int(offsets[e, 0]), int(offsets[e, 1]))) for e in sorted(episodes)]

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: slice) -> np.ndarray:
        if not isinstance(index, slice):
            raise TypeError("ShiftedFrames reads ranges of frames (frames[a:b])")
        start, stop, step = index.indices(len(self))
        if step != 1:
            raise ValueError("ShiftedFrames reads contiguous ranges")
        out = np.array(self.frames[start:stop])
        for sl, (dx, dy) in self.shifted:  # the shift is per frame: a part of an episode is exact
            lo, hi = max(sl.start, start), min(sl.stop, stop)
            if lo < hi:
                out[lo - start:hi - start] = shift_frames(out[lo - start:hi - start], dx, dy, self.pad)
        return out


def shifted_images(buf, cameras: list[str], copy: int, shift_px: int,
                   episodes: list[int]) -> dict[str, ShiftedFrames]:
    """The buffer's frames with each listed episode shifted by its offset of copy `copy`; the
    other episodes' frames as they are (they are never drawn shifted). Read by range."""
    slices = buf.episode_slices()
    offsets = episode_offsets(copy, len(slices), len(cameras), shift_px)
    return {camera: ShiftedFrames(buf.images[camera], slices, offsets[:, k], shift_px, episodes)
            for k, camera in enumerate(cameras)}


def draw_versions(rows: int, copies: int, rng: np.random.Generator) -> np.ndarray:
    """Which encoding each sampled window comes from: 0 = the original, 1..copies = a shifted
    copy, uniformly."""
    return rng.integers(0, copies + 1, rows)
