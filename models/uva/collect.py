"""Demonstrations from the scripted experts: `collect` (episodes on fresh seeds, optionally
extending an existing buffer, in several processes with the same result) and
`collect_corrections` (DAgger: a trained policy drives, the expert labels). Both write through
uva.data's replay-buffer writer."""
from __future__ import annotations

import multiprocessing
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .data import DatasetError, ReplayBuffer, read_replay_buffer, write_replay_buffer
from .envs import env_cameras
from .fsutil import check_out
from .images import resize


def _episode(imgs: list, states: list, actions: list) -> dict:
    """One recorded episode in the arrays and dtypes `write_replay_buffer` stores; `imgs` holds
    one frame per step, or one {camera: frame} dict per step for several cameras."""
    steps = {"state": np.array(states, np.float32), "action": np.array(actions, np.float32)}
    if imgs and isinstance(imgs[0], dict):
        return {"images": {c: np.stack([f[c] for f in imgs]) for c in imgs[0]}, **steps}
    return {"img": np.stack(imgs), **steps}


def extended_attrs(demos: ReplayBuffer, n_new: int) -> dict:
    """Attributes of `demos` extended by `n_new` episodes: one more collection segment."""
    return {**demos.attrs, "segments": list(demos.attrs.get("segments") or [demos.n_episodes])
            + [n_new]}


def base_episodes(base: str | Path, env_name: str) -> tuple[ReplayBuffer, list[dict]]:
    """The replay buffer a collection extends, and its episodes in `_episode`'s form."""
    demos = read_replay_buffer(base)
    if demos.attrs.get("env") != env_name:
        raise DatasetError(f"{base}: holds env '{demos.attrs.get('env')}', not '{env_name}'")
    return demos, [{"images": {c: f[s] for c, f in demos.images.items()}, "state": demos.state[s],
                    "action": demos.action[s]} for s in demos.episode_slices()]


class ExpertAttempts:
    """One expert episode per seed, on an env this process builds once: the unit of work that
    `collect` runs in-process or hands to worker processes (an env cannot be pickled)."""

    def __init__(self, env_name: str, image_size: int, cameras: tuple[str, ...] | None = None):
        from .envs import make_env
        self.env = make_env(env_name, **({"cameras": cameras} if cameras else {}))
        self.image_size = image_size
        self.cameras = cameras

    def __call__(self, seed: int) -> tuple[int, bool, float, dict]:
        env = self.env
        obs = env.reset(seed)
        imgs, states, actions = [], [], []
        success = False
        for _ in range(env.max_steps):
            action = env.expert_action()
            imgs.append(resize(obs.image, self.image_size) if self.cameras is None else
                        {c: resize(f, self.image_size) for c, f in obs.frames.items()})
            states.append(obs.state)
            actions.append(action)
            res = env.step(action)
            obs = res.obs
            if res.done:
                success = res.success
                break
        return seed, success, env.score, _episode(imgs, states, actions)


_worker_attempts: ExpertAttempts | None = None


def _start_worker(env_name: str, image_size: int, cameras: tuple[str, ...] | None) -> None:
    global _worker_attempts
    _worker_attempts = ExpertAttempts(env_name, image_size, cameras)


def _worker_attempt(seed: int) -> tuple[int, bool, float, dict]:
    return _worker_attempts(seed)


@contextmanager
def expert_attempts(env_name: str, image_size: int, seeds: range, workers: int,
                    cameras: tuple[str, ...] | None = None):
    """Yield expert outcomes for `seeds` in seed order. With workers > 1 the seeds run in that
    many processes (each with its own env) but come back in order, so the buffer is the same as
    a one-process collection; the consumer stops early and leftover work is cancelled."""
    if workers <= 1:
        attempts = ExpertAttempts(env_name, image_size, cameras)
        try:
            yield map(attempts, seeds)
        finally:
            attempts.env.close()
        return
    # spawn, not fork: the parent may hold torch's thread pools, which a fork can deadlock
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers, initializer=_start_worker, initargs=(env_name, image_size, cameras)) as pool:
        yield pool.imap(_worker_attempt, seeds)


def collect(env_name: str, n_episodes: int, out: str | Path, image_size: int = 64,
            keep_failures: bool = False, seed: int = 0, max_attempts_factor: int = 4,
            base: str | Path | None = None, workers: int = 1, overwrite: bool = False,
            cameras: list[str] | tuple[str, ...] | None = None) -> dict:
    """Roll out the scripted expert and save a replay buffer. Returns a summary dict. With
    `base`, `out` holds that buffer's episodes followed by the new ones (more demonstrations
    for the same task; seeds it already used are refused, so no episode is recorded twice).
    `workers` processes share the rollouts; the result does not depend on how many.
    `cameras` (e.g. ("scene", "wrist") on Panda) records each camera as its own stream. An
    existing `out` is refused (before any rollout) unless `overwrite`."""
    from .envs import env_class

    check_out(out, overwrite, (base,))
    control_hz = env_class(env_name).control_hz  # an unknown name fails here, before any worker
    cameras = env_cameras(env_name, cameras)
    episodes, seeds, demos = [], [], None
    attempt_seeds = range(seed, seed + max_attempts_factor * n_episodes)
    if base is not None:
        demos, episodes = base_episodes(base, env_name)
        seeds = list(demos.attrs.get("seeds", []))
        if demos.cameras != list(cameras or ["scene"]):
            raise DatasetError(f"{base}: holds cameras {demos.cameras}, not "
                               f"{list(cameras or ['scene'])}")
        if int(demos.img.shape[1]) != image_size:
            raise DatasetError(f"{base}: frames are {demos.img.shape[1]} px, not {image_size}")
        reused = set(seeds) & set(attempt_seeds)
        if reused:
            raise DatasetError(f"{base} already holds seeds {sorted(reused)[:5]}...: "
                               f"pick --seed above {max(seeds)}")
    n_base = len(episodes)
    outcomes = []
    bar = tqdm(total=n_episodes, desc=f"collect {env_name}", unit="ep")
    try:
        with expert_attempts(env_name, image_size, attempt_seeds, workers, cameras) as results:
            for attempt_seed, success, score, episode in results:
                outcomes.append((attempt_seed, success, score))
                if success or keep_failures:
                    episodes.append(episode)
                    seeds.append(attempt_seed)
                    bar.update(1)
                if len(episodes) - n_base >= n_episodes:
                    break
    finally:
        bar.close()
    n_success = sum(s for _, s, _ in outcomes)
    summary = {"env": env_name, "cameras": list(cameras or ["scene"]),
               "episodes": len(episodes), "base_episodes": n_base,
               "attempts": len(outcomes),
               "expert_success_rate": n_success / max(len(outcomes), 1),
               "expert_mean_score": float(np.mean([sc for *_, sc in outcomes])) if outcomes else 0.0,
               "steps": int(sum(len(e["action"]) for e in episodes)), "seeds": seeds}
    base_attrs = extended_attrs(demos, len(episodes) - n_base) if demos is not None else {}
    write_replay_buffer(out, episodes, {**base_attrs, "env": env_name, "image_size": image_size,
                                        "seeds": seeds, "control_hz": control_hz},
                        overwrite=overwrite, inputs=(base,))
    return summary


def collect_corrections(env_name: str, ckpt: str, n_episodes: int, out: str | Path, base: str | Path,
                        seed: int = 300000, overwrite: bool = False) -> dict:
    """DAgger: roll out a trained policy, label every state it visits with the scripted expert's
    action, and write `base`'s demonstrations plus these episodes (kept whether or not they
    succeed) to `out`. Behaviour cloning only ever sees the expert's own states; when the policy
    drifts off them its errors compound, and these labels show it how to recover."""
    from .envs import make_env
    from .policy import load_policy
    from .rollout import rollout

    check_out(out, overwrite, (base, ckpt))
    demos, episodes = base_episodes(base, env_name)
    image_size = int(demos.img.shape[1])
    policy = load_policy(ckpt)
    cameras = env_cameras(env_name, demos.cameras)  # record the cameras the demos hold
    env = make_env(env_name, **({"cameras": cameras} if cameras else {}))
    scores = []
    try:
        for i in tqdm(range(n_episodes), desc=f"corrections {env_name}", unit="ep"):
            imgs, states, labels = [], [], []

            def label(obs):
                imgs.append(resize(obs.image, image_size) if cameras is None else
                            {c: resize(f, image_size) for c, f in obs.frames.items()})
                states.append(obs.state)
                labels.append(env.expert_action())

            result, _ = rollout(policy, env, seed + i, policy.cfg.n_action_steps, on_step=label)
            scores.append(result["score"])
            episodes.append(_episode(imgs, states, labels))
    finally:
        env.close()
    seeds = list(demos.attrs.get("seeds", [])) + list(range(seed, seed + n_episodes))
    summary = {"env": env_name, "episodes": len(episodes), "demo_episodes": demos.n_episodes,
               "correction_episodes": n_episodes, "correction_policy": str(ckpt),
               "policy_mean_score": float(np.mean(scores)),
               "steps": int(sum(len(e["action"]) for e in episodes)), "seeds": seeds}
    write_replay_buffer(out, episodes, {**extended_attrs(demos, n_episodes), "seeds": seeds,
                                        "correction_episodes": n_episodes,
                                        "correction_policy": str(ckpt)},
                        overwrite=overwrite, inputs=(base, ckpt))
    return summary
