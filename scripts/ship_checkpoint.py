"""Copy a trained checkpoint into models/checkpoints/<env>/ with the metrics it reached.

metrics.json holds the full evaluation summary (`uva eval` JSON, per-episode rows dropped) and a
3-seed check that tests re-run to prove the shipped file still behaves as measured.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from uva import load_policy
from uva.checkpoint import CONFIG, NORMALIZER, WEIGHTS, atomic_write_json
from uva.envs import make_env
from uva.evaluate import rollout


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--env", required=True)
    ap.add_argument("--eval-json", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--extra", default=None, help="JSON file merged into metrics.json")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in (WEIGHTS, CONFIG, NORMALIZER):
        shutil.copyfile(Path(a.ckpt) / name, out / name)
    torch.set_num_threads(1)
    policy = load_policy(out)
    env = make_env(a.env)
    seeds = [100000, 100001, 100002]
    n_exec = policy.cfg.n_action_steps
    scores = [rollout(policy, env, s, n_exec)[0]["score"] for s in seeds]
    env.close()
    summary = json.loads(Path(a.eval_json).read_text())
    summary.pop("per_episode", None)
    metrics = {"eval": summary, "check_3_seeds": {"seeds": seeds, "scores": scores,
                                                  "n_action_steps": n_exec}}
    if a.extra:
        metrics.update(json.loads(Path(a.extra).read_text()))
    atomic_write_json(out / "metrics.json", metrics)
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
