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
    from uva.bench import compare_predict_action
    return compare_predict_action(policies, repeats)


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
    from uva.evaluate import paired_rollouts
    result = {"machine": machine_info("cpu"), "checkpoints": {}}
    for ckpt, env_name in zip(a.ckpt, a.env):
        policies = {k: with_steps(ckpt, k) for k in a.steps}
        entry = {"env": env_name}
        if a.repeats:
            entry["predict_action_ms"] = latency(policies, a.repeats)
            print(ckpt, entry["predict_action_ms"], flush=True)
        if a.episodes:
            entry["closed_loop"] = paired_rollouts({str(k): p for k, p in policies.items()},
                                                   env_name, a.episodes, a.first_seed)
        result["checkpoints"][ckpt] = entry
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(result, indent=2))
    print(json.dumps({c: {k: v for k, v in e.get("closed_loop", {}).get("variants", {}).items()}
                      for c, e in result["checkpoints"].items()}, indent=1))


if __name__ == "__main__":
    main()
