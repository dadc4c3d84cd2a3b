"""Store a trained checkpoint (fp16 weights) in models/checkpoints/<env>/ with its metrics.

metrics.json holds the full evaluation summary (`uva eval` JSON, per-episode rows dropped) and
the checks tests re-run to prove the shipped file still behaves as measured (uva.checks): an
open-loop check (one chunk + one forward-dynamics prediction, predicted frames in
check_video.png) compared tightly on any machine, and a 3-seed closed-loop check compared as
behaviour. `--checks-only` recomputes the checks of an already shipped directory.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from uva import load_policy
from uva.checkpoint import load_checkpoint, save_checkpoint
from uva.checks import frames_to_strip, open_loop_check
from uva.fsutil import atomic_write_json
from uva.envs import make_env
from uva.evaluate import rollout

LOCAL_PATH_KEYS = ("head_of", "vae_from", "correction_policy")
"""config.json fields naming paths of the training machine: not shipped."""


def store_open_loop_check(out: Path, policy, env) -> dict:
    from PIL import Image
    check = open_loop_check(policy, env)
    Image.fromarray(frames_to_strip(check.pop("frames"))).save(out / "check_video.png")
    return check


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--env", required=True)
    ap.add_argument("--eval-json", default=None,
                    help="`uva eval` JSON of the shipped (fp16) file (ship, eval it, ship again)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--extra", default=None, help="JSON file merged into metrics.json")
    ap.add_argument("--n-action-steps", type=int, default=None,
                    help="actions executed per chunk, stored in the shipped config (the policy node "
                         "and `uva eval` default to it); the eval JSON must have used the same")
    ap.add_argument("--checks-only", action="store_true",
                    help="only (re)compute the open-loop check of the shipped --out directory")
    a = ap.parse_args()
    out = Path(a.out)
    if a.checks_only:
        torch.set_num_threads(1)
        metrics = json.loads((out / "metrics.json").read_text())
        env = make_env(a.env)
        metrics["check_open_loop"] = store_open_loop_check(out, load_policy(out), env)
        env.close()
        atomic_write_json(out / "metrics.json", metrics)
        print(json.dumps(metrics["check_open_loop"]))
        return
    model, cfg, normalizers, meta = load_checkpoint(a.ckpt)
    if a.n_action_steps:
        cfg = dataclasses.replace(cfg, n_action_steps=a.n_action_steps)  # re-runs the checks
    n_exec = cfg.n_action_steps
    summary = json.loads(Path(a.eval_json).read_text()) if a.eval_json else None
    if summary and summary["n_action_steps"] != n_exec:  # checked before anything is written
        raise SystemExit(f"{a.eval_json} executed {summary['n_action_steps']} actions per chunk, "
                         f"the shipped config {n_exec}: pass --n-action-steps")
    for key in LOCAL_PATH_KEYS:  # where it was trained means nothing on another machine
        meta.pop(key, None)
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out, model, cfg, normalizers, meta, dtype=torch.float16)  # fits the 25 MB cap
    torch.set_num_threads(1)
    policy = load_policy(out)
    env = make_env(a.env)
    seeds = [100000, 100001, 100002]
    scores = [rollout(policy, env, s, n_exec)[0]["score"] for s in seeds]
    open_loop = store_open_loop_check(out, policy, env)
    env.close()
    if summary:
        summary.pop("per_episode", None)
    metrics = {"eval": summary, "check_3_seeds": {"seeds": seeds, "scores": scores,
                                                  "n_action_steps": n_exec},
               "check_open_loop": open_loop}
    if a.extra:
        metrics.update(json.loads(Path(a.extra).read_text()))
    atomic_write_json(out / "metrics.json", metrics)
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
