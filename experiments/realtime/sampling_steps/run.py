"""Fewer DDIM steps in the action head: paired closed-loop scores and predict_action latency.

Each checkpoint is loaded once per step count (the head's DDIM scheduler set to K steps, the
rest untouched); every seed is rolled out with every K under the same env and torch seed, so
the differences are the sampler's. Latency: predict_action calls alternated across K (only
meaningful on an idle machine). A benchmark, not a test.

    python experiments/realtime/sampling_steps/run.py --ckpt models/checkpoints/pusht --env pusht \
        --ckpt models/checkpoints/panda --env panda --steps 10 5 3 --episodes 50 \
        --out experiments/realtime/sampling_steps/scores.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def with_steps(ckpt: str, k: int):
    from uva import load_policy
    policy = load_policy(ckpt)
    policy.model.action_head.diffusion.sample_scheduler.set_timesteps(k)
    policy.warm_up()
    return policy


def latency(policies: dict, repeats: int) -> dict:
    from uva.bench import interleaved
    cfg = next(iter(policies.values())).cfg
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (cfg.n_frames + repeats + 4, cfg.image_size, cfg.image_size, 3),
                          dtype=np.uint8)
    state = np.zeros((cfg.n_frames, cfg.proprio_dim))

    def step(policy):
        counter = iter(range(10**9))
        return lambda: policy.predict_action(
            {"image": frames[(i := next(counter) % (repeats + 4)):i + cfg.n_frames],
             "state": state}, seed=0)
    ms = interleaved({k: step(p) for k, p in policies.items()}, repeats, "cpu")
    return {str(k): {"p50": float(np.median(v)), "p95": float(np.percentile(v, 95))}
            for k, v in ms.items()}


def paired(policies: dict, env_name: str, episodes: int, first_seed: int) -> dict:
    from uva.envs import make_env
    from uva.rollout import rollout
    env = make_env(env_name)
    ks = list(policies)
    rows = []
    for i in range(episodes):
        seed = first_seed + i
        row = {"seed": seed}
        for k, p in policies.items():
            r, _ = rollout(p, env, seed, p.cfg.n_action_steps)
            row[str(k)] = {"score": float(r["score"]), "success": bool(r["success"])}
        rows.append(row)
        print(f"  {env_name} {seed}: " + " ".join(f"K={k} {row[str(k)]['score']:.3f}" for k in ks),
              flush=True)
    env.close()
    ref = str(ks[0])
    out = {"episodes": episodes, "first_seed": first_seed, "reference_steps": ks[0], "by_steps": {}}
    for k in ks:
        s = np.array([r[str(k)]["score"] for r in rows])
        d = s - np.array([r[ref]["score"] for r in rows])
        out["by_steps"][str(k)] = {
            "score": float(s.mean()), "score_se": float(s.std(ddof=1) / np.sqrt(len(s))),
            "successes": int(sum(r[str(k)]["success"] for r in rows)),
            "paired_diff_vs_reference": float(d.mean()),
            "paired_diff_se": float(d.std(ddof=1) / np.sqrt(len(d))),
            "identical_episodes": int(np.sum(np.abs(d) < 1e-9))}
    out["per_episode"] = rows
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", action="append", required=True)
    ap.add_argument("--env", action="append", required=True, help="one per --ckpt")
    ap.add_argument("--steps", type=int, nargs="+", default=[10, 5, 3],
                    help="DDIM step counts; the first is the reference")
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--first-seed", type=int, default=100000)
    ap.add_argument("--repeats", type=int, default=0, help="latency calls per K (0: skip)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)
    from uva.bench import machine_info
    result = {"machine": machine_info("cpu"), "checkpoints": {}}
    for ckpt, env_name in zip(a.ckpt, a.env):
        policies = {k: with_steps(ckpt, k) for k in a.steps}
        entry = {"env": env_name}
        if a.repeats:
            entry["predict_action_ms"] = latency(policies, a.repeats)
            print(ckpt, entry["predict_action_ms"], flush=True)
        if a.episodes:
            entry["closed_loop"] = paired(policies, env_name, a.episodes, a.first_seed)
        result["checkpoints"][ckpt] = entry
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(result, indent=2))
    print(json.dumps({c: {k: v for k, v in e.get("closed_loop", {}).get("by_steps", {}).items()}
                      for c, e in result["checkpoints"].items()}, indent=1))


if __name__ == "__main__":
    main()
