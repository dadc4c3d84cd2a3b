"""Reproducibility checks stored beside a shipped checkpoint, and how to compare them on any machine.

Two kinds, because float kernels differ between x86 CPUs (Intel / AMD, AVX2 / AVX-512) by ~1e-5:
- an **open-loop check**: one action chunk and one forward-dynamics prediction from a fixed
  simulator observation with fixed sampling seeds. Nothing feeds back, so a different CPU moves
  the result by ~1e-5 while any change to the weights, the normaliser or the sampling code moves
  it by orders of magnitude more; compared with tight tolerances.
- a **closed-loop check**: the scores of three evaluation episodes. A closed loop amplifies the
  1e-5 differences (the same episode can take another path on another machine), so the scores are
  compared as behaviour (the mean within a margin), not digit by digit.
"""
from __future__ import annotations

import numpy as np

ACTION_TOLERANCE = 2e-3
"""Max |difference| of the open-loop chunk, in normalised action units ([-1, 1] = the
demonstrated range): 100x the cross-CPU drift, far below what a changed weight produces."""
VIDEO_TOLERANCE = 1.0
"""Max mean |difference| of the open-loop predicted frames, in uint8 grey levels."""
CLOSED_LOOP_MARGIN = 0.25
"""Beyond one whole episode, how many episodes' worth the stored seeds' summed score may lose on
another machine (see closed_loop_floor)."""


def closed_loop_floor(stored_scores) -> float:
    """The lowest mean score another machine may reach on the stored seeds: the stored mean less
    (1 + CLOSED_LOOP_MARGIN) episodes' worth. On a pass/fail task (Panda) one episode that takes
    another path flips between 0 and 1 (measured: the Panda file's seeds score [0, 1, 1] where it
    was stored and [0, 0, 1] on a 2-core AMD EPYC, with open-loop chunks equal to 1e-6); losing
    two of three still fails, and so does a broken checkpoint."""
    return float(np.mean(stored_scores)) - (1.0 + CLOSED_LOOP_MARGIN) / len(stored_scores)


def open_loop_observation(policy, env, seed: int) -> dict:
    """The policy's observation at the start of episode `seed` (history padded with the first
    frame, as at every episode start)."""
    from .rollout import ObservationHistory
    history = ObservationHistory.for_model(policy.cfg)
    history.observe(env.reset(seed))
    return history.window()


def open_loop_check(policy, env, seed: int = 100000, sample_seed: int = 0) -> dict:
    """What `compare_open_loop` re-computes: the normalised action chunk and the predicted
    future frames (uint8) for one fixed observation. Checks are fp32 (load the policy with
    precision="fp32"): bf16 moves a chunk by up to ~0.01, more than ACTION_TOLERANCE."""
    if getattr(policy, "precision", "fp32") != "fp32":
        raise ValueError(f"reproducibility checks are computed in fp32; this policy runs "
                         f"{policy.precision}: load it with precision='fp32'")
    window = open_loop_observation(policy, env, seed)
    chunk = policy.predict_action(window, seed=sample_seed)
    frames = policy.predict_video(window, actions=chunk, seed=sample_seed)
    if isinstance(frames, dict):  # several cameras: each frame holds them top to bottom
        frames = np.concatenate([frames[c] for c in policy.cfg.cameras], axis=1)
    normalized = policy.action_norm.normalize(np.asarray(chunk, np.float64))
    return {"seed": seed, "sample_seed": sample_seed,
            "actions_normalized": np.round(normalized, 6).tolist(),
            "frames": np.asarray(frames, np.uint8)}


def compare_open_loop(policy, env, stored: dict, stored_frames: np.ndarray) -> dict:
    """Deviation of this machine's open-loop result from the stored one."""
    now = open_loop_check(policy, env, stored["seed"], stored["sample_seed"])
    action_dev = float(np.abs(np.asarray(now["actions_normalized"])
                              - np.asarray(stored["actions_normalized"])).max())
    video_dev = float(np.abs(now["frames"].astype(np.float64)
                             - np.asarray(stored_frames, np.float64)).mean())
    return {"action_max_abs": action_dev, "video_mean_abs": video_dev,
            "ok": action_dev <= ACTION_TOLERANCE and video_dev <= VIDEO_TOLERANCE}


def frames_to_strip(frames: np.ndarray) -> np.ndarray:
    """(F, H, W, 3) -> (H, F*W, 3): one PNG holds every predicted frame (of a several-camera
    model: each camera a row, H = cameras x frame height)."""
    return np.concatenate(list(frames), axis=1)


def strip_to_frames(strip: np.ndarray, n_frames: int) -> np.ndarray:
    return np.stack(np.split(strip, n_frames, axis=1))
