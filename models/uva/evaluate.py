"""Closed-loop evaluation in simulation, plus forward/inverse dynamics metrics on held-out demos."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .checkpoint import total_steps
from .data import WindowIndex, read_replay_buffer
from .fsutil import atomic_write_json
from .images import write_gif
from .metrics import psnr_uint8
from .policy import UVAPolicy, load_policy
from .rollout import rollout


def expert_success(env_name: str, episodes: int, out: str, seed: int = 100000,
                   random_policy: bool = False) -> dict:
    """The scripted expert (or a random policy) on held-out seeds: the reference points for
    learned policies."""
    from .envs import make_env
    env = make_env(env_name)
    rng = np.random.default_rng(seed)
    act = (lambda: env.random_action(rng)) if random_policy else env.expert_action
    rows = []
    for s in tqdm(range(seed, seed + episodes), desc=f"expert {env_name}", unit="ep"):
        env.reset(s)
        success = False
        for step in range(env.max_steps):
            res = env.step(act())
            if res.done:
                success = res.success
                break
        rows.append({"seed": s, "score": env.score, "success": bool(success), "steps": step + 1})
    env.close()
    summary = {"policy": "random" if random_policy else "scripted expert", "env": env_name,
               "episodes": episodes, "first_seed": seed, "score": float(np.mean([r["score"] for r in rows])),
               "success_rate": float(np.mean([r["success"] for r in rows])), "per_episode": rows}
    Path(out).mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(out) / "eval.json", summary)
    return summary


def dynamics_metrics(policy: UVAPolicy, data: str, n_windows: int = 64, seed: int = 0) -> dict:
    """Forward dynamics (predicted vs real future frames, PSNR) against copy-last-frame, and
    inverse dynamics action error, on the checkpoint's validation episodes (never trained on).
    Forward dynamics is reported anchored (the default output) and raw; the VAE's own
    reconstruction PSNR of the true future frames is the ceiling of the raw number. The policy's
    open-loop chunk error is reported too, beside holding the current state where actions are
    position targets of the state (both envs here): what a policy must beat to be steering."""
    cfg = policy.cfg
    buf = read_replay_buffer(data)
    held = policy.meta.get("val_episodes") or buf.train_val_episodes()[1]
    if max(held) >= buf.n_episodes:
        raise ValueError(f"{data}: has {buf.n_episodes} episodes, but the checkpoint's validation "
                         f"episodes go up to {max(held)}: not the dataset it was trained on")
    index = WindowIndex(buf.episode_ends, cfg.n_frames, cfg.actions_per_frame, held)
    rows = np.random.default_rng(seed).choice(len(index), min(n_windows, len(index)), replace=False)
    psnrs: dict[str, list[float]] = {"anchored": [], "raw": [], "copy": [], "vae": []}
    inv_err, inv_err_norm, policy_err, hold_err = [], [], [], []
    norm = policy.action_norm.normalize
    several = cfg.n_cameras > 1
    source = buf.images if several else {cfg.cameras[0]: buf.img}
    # several cameras: frames compared over all cameras at once (stacked camera after camera)
    joined = (lambda per_camera: np.concatenate([per_camera[c] for c in cfg.cameras])) \
        if several else (lambda frames: frames)
    for r in tqdm(rows, desc="dynamics metrics"):
        history = {c: source[c][index.history[r]] for c in cfg.cameras}
        obs = ({"images": history} if several else {"image": history[cfg.cameras[0]]})
        obs["state"] = buf.state[index.history[r]]
        actions = buf.action[index.actions[r]].astype(np.float64)
        future_frames = {c: source[c][index.future[r]] for c in cfg.cameras}
        future = joined(future_frames) if several else future_frames[cfg.cameras[0]]
        policy.reset()
        raw, anchored = map(joined, policy.predict_video_variants(obs, actions=actions,
                                                                  seed=int(r)))
        psnrs["raw"].append(psnr_uint8(raw, future))
        psnrs["anchored"].append(psnr_uint8(anchored, future))
        psnrs["copy"].append(psnr_uint8(joined({c: np.repeat(history[c][-1:], cfg.n_frames, 0)
                                                for c in cfg.cameras}) if several else
                                        np.repeat(obs["image"][-1:], cfg.n_frames, 0), future))
        psnrs["vae"].append(psnr_uint8(policy.reconstruct(future), future))
        inv = policy.inverse_dynamics(future_frames if several else future, seed=int(r))
        inv_err.append(np.abs(inv - actions).mean())
        inv_err_norm.append(np.abs(norm(inv) - norm(actions)).mean())
        policy_err.append(np.abs(norm(policy.predict_action(obs, seed=int(r))) - norm(actions)).mean())
        if cfg.proprio_dim == cfg.action_dim:
            hold = np.repeat(obs["state"][-1:].astype(np.float64), len(actions), 0)
            hold_err.append(np.abs(norm(hold) - norm(actions)).mean())
    return {"windows": len(rows), "episodes": len(held),
            "forward_dynamics_psnr_db": float(np.mean(psnrs["anchored"])),
            "forward_dynamics_raw_psnr_db": float(np.mean(psnrs["raw"])),
            "copy_last_frame_psnr_db": float(np.mean(psnrs["copy"])),
            "vae_reconstruction_psnr_db": float(np.mean(psnrs["vae"])),
            "inverse_dynamics_mae": float(np.mean(inv_err)),
            "inverse_dynamics_mae_normalized": float(np.mean(inv_err_norm)),
            "policy_open_loop_mae_normalized": float(np.mean(policy_err)),
            "hold_state_mae_normalized": float(np.mean(hold_err)) if hold_err else None}


def evaluate(ckpt: str, env_name: str, episodes: int, out: str, seed: int = 100000,
             device: str = "cpu", n_gifs: int = 3, data: str | None = None,
             n_action_steps: int | None = None, action_temperature: float | None = None,
             dynamics_windows: int = 64, precision: str = "auto") -> dict:
    """Closed-loop rollouts on fixed seeds (+ dynamics metrics on `dynamics_windows` held-out
    windows with `data`); episodes=0 with `data` measures the dynamics metrics alone."""
    from .envs import make_env_for

    if episodes < 0 or (episodes == 0 and not data):
        raise ValueError("evaluate needs episodes > 0, or episodes = 0 with held-out data")
    policy = load_policy(ckpt, device, precision=precision)
    if action_temperature is not None:  # replace() re-runs the config's checks
        policy.cfg = dataclasses.replace(policy.cfg, action_temperature=action_temperature)
    env = make_env_for(env_name, policy.cfg.cameras)  # every camera the checkpoint names
    if (env.action_dim, env.proprio_dim) != (policy.cfg.action_dim, policy.cfg.proprio_dim):
        raise ValueError(f"checkpoint {ckpt} has action/proprio dims "
                         f"{policy.cfg.action_dim}/{policy.cfg.proprio_dim}, env '{env_name}' "
                         f"needs {env.action_dim}/{env.proprio_dim}")
    n_exec = n_action_steps or policy.cfg.n_action_steps
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for i in tqdm(range(episodes), desc=f"eval {env_name}", unit="ep"):
        res, frames = rollout(policy, env, seed + i, n_exec, record=i < n_gifs)
        if frames:
            write_gif(out_dir / f"episode_{seed + i}.gif", frames)
        results.append(res)
    env.close()
    summary = {"ckpt": str(ckpt), "env": env_name, "episodes": episodes, "first_seed": seed,
               "n_action_steps": n_exec, "action_temperature": policy.cfg.action_temperature,
               "action_inference_steps": policy.cfg.action_inference_steps,
               "training_steps": total_steps(policy.meta), "precision": policy.precision}
    if results:
        lat = np.concatenate([r.pop("latency_s") for r in results]) * 1000
        summary.update({
            "score": float(np.mean([r["score"] for r in results])),
            "success_rate": float(np.mean([r["success"] for r in results])),
            "predict_action_ms_p50": float(np.percentile(lat, 50)),
            "predict_action_ms_p95": float(np.percentile(lat, 95)),
            "per_episode": results,
        })
    if data:
        summary["dynamics"] = dynamics_metrics(policy, data, n_windows=dynamics_windows)
    atomic_write_json(out_dir / "eval.json", summary)
    return summary


def _se(v: np.ndarray) -> float | None:
    return float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else None


def paired_scores(reference: list[dict], other: list[dict]) -> dict:
    """Two runs' per-episode rows ({seed, score, success}, as eval.json's `per_episode`) paired
    on the seeds both played: each one's mean score ± s.e. and successes, and the paired
    difference other - reference ± s.e. (the seed draw cancels out of it)."""
    by_seed = [{r["seed"]: r for r in rows} for rows in (reference, other)]
    seeds = sorted(set(by_seed[0]) & set(by_seed[1]))
    if not seeds:
        raise ValueError("the two runs share no seed")
    ref, oth = (np.array([b[s]["score"] for s in seeds], dtype=np.float64) for b in by_seed)
    d = oth - ref
    side = lambda b, v: {"score": float(v.mean()), "score_se": _se(v),
                         "successes": int(sum(bool(b[s]["success"]) for s in seeds))}
    return {"episodes": len(seeds), "seeds": [seeds[0], seeds[-1]],
            "reference": side(by_seed[0], ref), "other": side(by_seed[1], oth),
            "paired_diff": float(d.mean()), "paired_diff_se": _se(d),
            "identical_episodes": int(np.sum(np.abs(d) < 1e-9))}


def paired_rollouts(policies: dict, env_name: str, episodes: int, first_seed: int = 100000,
                    log=print) -> dict:
    """Every seed rolled out with each policy under the same env and torch seed, so score
    differences are the policies', not the seed draw's (A/B of an inference change, a sampler,
    a precision). The first policy is the reference of the paired differences (mean ± s.e.)."""
    from .envs import make_env_for
    names = list(policies)
    cameras = {tuple(p.cfg.cameras) for p in policies.values()}
    if len(cameras) != 1:
        raise ValueError(f"paired rollouts need policies with the same cameras, not {sorted(cameras)}")
    env = make_env_for(env_name, cameras.pop())
    rows = []
    try:
        for i in range(episodes):
            row = {"seed": first_seed + i}
            for name, policy in policies.items():
                r, _ = rollout(policy, env, first_seed + i, policy.cfg.n_action_steps)
                row[name] = {"score": float(r["score"]), "success": bool(r["success"])}
            rows.append(row)
            log(f"  {env_name} {row['seed']}: " + " ".join(f"{n} {row[n]['score']:.3f}"
                                                            for n in names))
    finally:
        env.close()
    return {"env": env_name, "episodes": episodes, "first_seed": first_seed,
            "reference": names[0], "variants": paired_variants(rows, names), "per_episode": rows}


def paired_variants(rows: list[dict], names: list[str]) -> dict:
    """Per policy, its score summary and paired difference against names[0] (mean ± s.e.):
    rows are paired_rollouts' per-episode rows ({"seed", name: {"score", "success"}, ...})."""
    per_policy = {n: [{"seed": r["seed"], **r[n]} for r in rows] for n in names}
    variants = {}
    for name in names:
        p = paired_scores(per_policy[names[0]], per_policy[name])
        variants[name] = {**p["other"], "paired_diff_vs_reference": p["paired_diff"],
                          "paired_diff_se": p["paired_diff_se"],
                          "identical_episodes": p["identical_episodes"]}
    return variants
