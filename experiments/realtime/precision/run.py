"""bf16 vs fp32 on the fast path: paired closed-loop scores and predict_action latency.

Each checkpoint is loaded once per precision (uva.fastpath: bf16 runs the VAE encoder and the
policy transformer in bfloat16, the action head stays fp32); every seed is rolled out with each
precision under the same env and torch seed, so the differences are the precision's. Latency:
predict_action calls alternated between the precisions and the eager reference path (only
meaningful on an idle machine). A benchmark, not a test.

    python experiments/realtime/precision/run.py --ckpt models/checkpoints/pusht --env pusht \
        --ckpt models/checkpoints/panda --env panda --episodes 50 --repeats 100 \
        --out experiments/realtime/precision/scores.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def load(ckpt: str) -> dict:
    from uva import load_policy
    return {"fp32": load_policy(ckpt, precision="fp32"), "bf16": load_policy(ckpt, precision="bf16")}


def latency(ckpt: str, policies: dict, repeats: int) -> dict:
    from uva import load_policy
    from uva.bench import compare_predict_action
    return compare_predict_action({**policies, "reference": load_policy(ckpt, fast=False)},
                                  repeats)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", action="append", required=True)
    ap.add_argument("--env", action="append", required=True, help="one per --ckpt")
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--first-seed", type=int, default=100000)
    ap.add_argument("--repeats", type=int, default=0, help="latency calls per path (0: skip)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)
    from uva.bench import machine_info
    from uva.evaluate import paired_rollouts
    from uva.fastpath import native_bf16
    result = {"machine": {**machine_info("cpu"), "native_bf16": native_bf16("cpu")},
              "checkpoints": {}}
    for ckpt, env_name in zip(a.ckpt, a.env):
        policies = load(ckpt)
        entry = {"env": env_name}
        if a.repeats:
            entry["predict_action_ms"] = latency(ckpt, policies, a.repeats)
            print(ckpt, entry["predict_action_ms"], flush=True)
        if a.episodes:
            entry["closed_loop"] = paired_rollouts(policies, env_name, a.episodes, a.first_seed)
        result["checkpoints"][ckpt] = entry
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(result, indent=2))
    print(json.dumps({c: e.get("closed_loop", {}).get("variants", {})
                      for c, e in result["checkpoints"].items()}, indent=1))


if __name__ == "__main__":
    main()
