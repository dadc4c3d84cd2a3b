"""Our data in LeRobot's Diffusion Policy layout, without importing lerobot (numpy + torch only),
so the main venv's tests can check it.

Two directions, one convention (LeRobot's PushT: n_obs_steps 2, horizon 16, n_action_steps 8):

- training: frame t of a replay buffer -> observation frames/states at t-1, t and actions
  t-1 .. t+14 (LeRobot's delta indices [1-n_obs .. 0] and [1-n_obs .. 1-n_obs+horizon-1]),
  clamped to the episode with `*_is_pad` flags where clamped, as LeRobotDataset does;
- inference: the window our evaluator (`uva.rollout`) hands a policy -> the newest n_obs_steps
  frames and states, oldest first. With the peer's history stride of 1 (`PEER_STRIDE`) that
  window's frames are t-1, t, padded with the episode's first frame at its start: the frames
  LeRobot's own observation queue holds at that step.

Images are uint8 HWC in our buffers and windows and float [0, 1] CHW for LeRobot; states and
actions are float32 in env units (the policy normalises them with the stats computed here).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

IMAGE = "observation.image"
STATE = "observation.state"
ACTION = "action"
ACTION_IS_PAD = "action_is_pad"
PEER_STRIDE = 1  # env steps between the observation frames LeRobot's policy sees


@dataclass(frozen=True)
class PeerEvalConfig:
    """What `uva.rollout.rollout` reads of a policy's `cfg`: its history window (n_obs_steps
    frames, one env step apart) and frame size, one camera."""
    n_frames: int = 2
    image_size: int = 64
    n_action_steps: int = 8
    action_dim: int = 2
    proprio_dim: int = 2
    actions_per_frame: int = PEER_STRIDE  # the evaluator's history stride
    cameras: list = field(default_factory=lambda: ["scene"])

    @property
    def n_cameras(self) -> int:
        return len(self.cameras)


def frames_to_chw(frames: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) frames -> float32 (..., 3, H, W) in [0, 1]."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim < 3 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (..., H, W, 3), got {frames.shape} {frames.dtype}")
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(frames, -1, -3))).float().div_(255.0)


def window_to_observation(window: dict, n_obs_steps: int) -> dict[str, torch.Tensor]:
    """The evaluator's window ({"image": (F, H, W, 3) uint8, "state": (F, P)}, oldest first)
    -> LeRobot observations of its newest n_obs_steps steps, oldest first, batch of one:
    {IMAGE: (1, n_obs, 3, H, W) float in [0, 1], STATE: (1, n_obs, P) float32}."""
    if "image" not in window:
        raise ValueError("the LeRobot peer takes one camera: a window with 'image'")
    image, state = np.asarray(window["image"]), np.asarray(window["state"])
    if len(image) != len(state):
        raise ValueError(f"window has {len(image)} frames but {len(state)} states")
    if len(image) < n_obs_steps:
        raise ValueError(f"window has {len(image)} frames, the policy needs {n_obs_steps}")
    return {IMAGE: frames_to_chw(image[-n_obs_steps:])[None],
            STATE: torch.from_numpy(state[-n_obs_steps:].astype(np.float32))[None]}


def observation_steps(obs: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """(1, n_obs, ...) observations -> one (1, ...) observation per step, oldest first: what
    LeRobot's select_action receives once per env step."""
    n = obs[STATE].shape[1]
    return [{k: v[:, i] for k, v in obs.items()} for i in range(n)]


class TrainWindows:
    """LeRobot Diffusion Policy training samples drawn from a `uva.data.ReplayBuffer`.

    `frames` are the sample anchors (frame t) of the given episodes, the last
    `drop_n_last_frames` of each episode left out as LeRobot's EpisodeAwareSampler does for
    Diffusion Policy; `batch(frame_indices)` builds the tensors LeRobot's DiffusionPolicy.forward
    takes."""

    def __init__(self, buf, episodes: list[int], n_obs_steps: int = 2, horizon: int = 16,
                 drop_n_last_frames: int = 7):
        if buf.n_episodes == 0 or not episodes:
            raise ValueError("no episodes to train on")
        if len(buf.images) != 1:
            raise ValueError(f"the LeRobot peer takes one camera, the buffer has {buf.cameras}")
        self.buf, self.episodes = buf, list(episodes)
        self.n_obs_steps, self.horizon = n_obs_steps, horizon
        ends = np.asarray(buf.episode_ends, np.int64)
        starts = np.concatenate([[0], ends[:-1]])
        self.episode_of = np.repeat(np.arange(len(ends)), ends - starts)
        self.starts, self.ends = starts, ends
        self.frames = np.concatenate([np.arange(starts[e], max(starts[e], ends[e] - drop_n_last_frames))
                                      for e in self.episodes]).astype(np.int64)
        if len(self.frames) == 0:
            raise ValueError("every episode is shorter than drop_n_last_frames")
        self.obs_deltas = np.arange(1 - n_obs_steps, 1)
        self.action_deltas = np.arange(1 - n_obs_steps, 1 - n_obs_steps + horizon)

    def __len__(self) -> int:
        return len(self.frames)

    def _indices(self, t: np.ndarray, deltas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ep = self.episode_of[t]
        raw = t[:, None] + deltas[None]
        lo, hi = self.starts[ep][:, None], self.ends[ep][:, None] - 1
        return np.clip(raw, lo, hi), (raw < lo) | (raw > hi)

    def batch(self, frame_indices) -> dict[str, torch.Tensor]:
        t = np.asarray(frame_indices, np.int64).reshape(-1)
        obs, obs_pad = self._indices(t, self.obs_deltas)
        act, act_pad = self._indices(t, self.action_deltas)
        return {IMAGE: frames_to_chw(self.buf.img[obs]),
                STATE: torch.from_numpy(self.buf.state[obs].astype(np.float32)),
                ACTION: torch.from_numpy(self.buf.action[act].astype(np.float32)),
                ACTION_IS_PAD: torch.from_numpy(act_pad),
                "observation.image_is_pad": torch.from_numpy(obs_pad),
                "observation.state_is_pad": torch.from_numpy(obs_pad)}


def _vector_stats(x: np.ndarray) -> dict[str, np.ndarray]:
    x = np.asarray(x, np.float64)
    return {"min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0)}


def dataset_stats(buf, episodes: list[int], chunk: int = 4096) -> dict[str, dict[str, np.ndarray]]:
    """LeRobot's dataset stats (min, max, mean, std) of the given episodes: per dimension for
    state and action, per channel, shaped (3, 1, 1), over [0, 1] pixels for the image."""
    idx = buf.frame_indices(episodes)
    n, s, s2 = 0, np.zeros(3), np.zeros(3)
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    for i in range(0, len(idx), chunk):
        px = buf.img[idx[i:i + chunk]].reshape(-1, 3).astype(np.float64) / 255.0
        n, s, s2 = n + len(px), s + px.sum(0), s2 + (px ** 2).sum(0)
        lo, hi = np.minimum(lo, px.min(0)), np.maximum(hi, px.max(0))
    mean = s / n
    image = {"min": lo, "max": hi, "mean": mean, "std": np.sqrt(np.maximum(s2 / n - mean ** 2, 0))}
    return {IMAGE: {k: v.reshape(3, 1, 1) for k, v in image.items()},
            STATE: _vector_stats(buf.state[idx]), ACTION: _vector_stats(buf.action[idx])}
