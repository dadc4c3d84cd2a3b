"""One closed-loop episode of a policy in a simulated env, and the observation history that
turns an env's observations into the model's strided input window. Evaluation, DAgger
corrections, the shipping check and the open-loop check all run episodes through here."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from .images import resize

if TYPE_CHECKING:
    from .policy import UVAPolicy


class ObservationHistory:
    """Keeps the frames/states of an episode and builds the model's strided history window,
    padding with the first observation at the episode start (as training windows are padded).
    With `cameras`, each step's image is a {camera: frame} dict and windows carry 'images'."""

    def __init__(self, n_frames: int, stride: int, image_size: int,
                 cameras: list[str] | None = None):
        self.n_frames, self.stride, self.image_size = n_frames, stride, image_size
        self.cameras = cameras
        self.images: list = []
        self.states: list[np.ndarray] = []

    def append(self, image, state: np.ndarray) -> None:
        self.images.append(resize(image, self.image_size) if self.cameras is None else
                           {c: resize(image[c], self.image_size) for c in self.cameras})
        self.states.append(np.asarray(state, np.float64))
        keep = (self.n_frames - 1) * self.stride + 1
        del self.images[:-keep], self.states[:-keep]

    @classmethod
    def for_model(cls, cfg) -> "ObservationHistory":
        """The history a model's config asks for: every camera it names when it has several."""
        return cls(cfg.n_frames, cfg.actions_per_frame, cfg.image_size,
                   cfg.cameras if cfg.n_cameras > 1 else None)

    def observe(self, obs) -> None:
        """Append an env Observation: its one image, or each camera this history keeps."""
        self.append(obs.image if self.cameras is None else obs.frames, obs.state)

    def window(self) -> dict:
        last = len(self.images) - 1
        idx = [max(last - (self.n_frames - 1 - i) * self.stride, 0) for i in range(self.n_frames)]
        state = np.stack([self.states[i] for i in idx])
        if self.cameras is None:
            return {"image": np.stack([self.images[i] for i in idx]), "state": state}
        return {"images": {c: np.stack([self.images[i][c] for i in idx]) for c in self.cameras},
                "state": state}


def rollout(policy: UVAPolicy, env, seed: int, n_action_steps: int, record: bool = False,
            on_step=None):
    """One closed-loop episode. `on_step(obs)` is called with each observation the policy acts
    on, before the action is applied (DAgger labels the states the policy visits)."""
    import torch
    cfg = policy.cfg
    torch.manual_seed(seed)  # diffusion noise: an episode replays exactly for a given seed
    history = ObservationHistory.for_model(cfg)  # feeds every camera it names
    cameras = history.cameras
    policy.reset()
    obs = env.reset(seed)
    history.observe(obs)
    frames, latencies, success = [], [], False
    predicted = None
    for step in range(env.max_steps):
        if step % n_action_steps == 0:
            window = history.window()
            t0 = time.perf_counter()
            chunk = policy.predict_action(window)
            latencies.append(time.perf_counter() - t0)
            if record:
                predicted = policy.predict_video(window, actions=chunk, seed=seed)
        if record:
            k = step % n_action_steps
            i = min(k // cfg.actions_per_frame, cfg.n_frames - 1)
            if cameras is None:
                frames.append(np.concatenate([history.images[-1], predicted[i]], axis=1))
            else:  # one row per camera: real | predicted
                frames.append(np.concatenate([np.concatenate(
                    [history.images[-1][c], predicted[c][i]], axis=1) for c in cameras]))
        if on_step is not None:
            on_step(obs)
        res = env.step(chunk[step % n_action_steps])
        obs = res.obs
        history.observe(obs)
        if res.done:
            success = res.success
            break
    return {"seed": seed, "score": env.score, "success": bool(success), "steps": step + 1,
            "latency_s": latencies}, frames
