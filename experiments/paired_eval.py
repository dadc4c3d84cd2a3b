"""Two or more checkpoints of one environment, closed loop on the same seeds, paired.

Every seed is rolled out by every checkpoint under the same env and torch seed, so the score
differences are the checkpoints', not the seed draw's. The first --arm is the reference of the
paired differences (mean ± s.e.). Each arm plays with its own file's executed steps. Writes
JSON (paired_rollouts' layout plus the arms' paths) and prints the summary.

    python experiments/paired_eval.py --env panda --episodes 100 --first-seed 920000 \
        --arm shipped=models/checkpoints/panda --arm refit=runs/panda_head/head/final \
        --out outputs/panda_head.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arm", action="append", required=True, metavar="NAME=CKPT",
                    help="a named checkpoint; the first is the reference")
    ap.add_argument("--env", required=True)
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--first-seed", type=int, required=True,
                    help="seeds nothing was chosen on, for a result that decides something")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    arms = {}
    for spec in a.arm:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            ap.error(f"--arm wants NAME=CKPT, got {spec!r}")
        if name in arms:
            ap.error(f"--arm name {name!r} given twice")
        arms[name] = path
    if len(arms) < 2:
        ap.error("give at least two --arm")
    torch.set_num_threads(a.threads)
    from uva import load_policy
    from uva.evaluate import paired_rollouts
    policies = {name: load_policy(path) for name, path in arms.items()}
    result = {"arms": arms,
              **paired_rollouts(policies, a.env, a.episodes, a.first_seed)}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result["variants"], indent=1))


if __name__ == "__main__":
    main()
