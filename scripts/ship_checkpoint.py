"""Store a trained checkpoint (fp16 weights) in models/checkpoints/<env>/ with its metrics.

metrics.json holds the full evaluation summary (`uva eval` JSON, per-episode rows dropped) and a
the checks tests re-run (uva.checks: an open-loop chunk and prediction, and a 3-seed closed loop) to prove the shipped file still behaves as measured. The usual
order: ship, `uva eval` the shipped file, ship again with --eval-json (or let a recipe's ship
stage do all three: docs/training.md).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from uva.ship import save_shipped, store_open_loop_check, write_metrics


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
    ap.add_argument("--action-inference-steps", type=int, default=None,
                    help="DDIM steps of the action head, stored in the shipped config; the eval "
                         "JSON must have used the same")
    ap.add_argument("--checks-only", action="store_true",
                    help="only (re)compute the open-loop check of the shipped --out directory")
    a = ap.parse_args()
    if a.checks_only:
        torch.set_num_threads(1)
        print(json.dumps(store_open_loop_check(a.out, a.env)))
        return
    summary = json.loads(Path(a.eval_json).read_text()) if a.eval_json else None
    if summary and a.n_action_steps and summary["n_action_steps"] != a.n_action_steps:
        raise SystemExit(f"{a.eval_json} executed {summary['n_action_steps']} actions per chunk, "
                         f"not {a.n_action_steps}")  # checked before anything is written
    k_eval = (summary or {}).get("action_inference_steps")
    if k_eval is not None and a.action_inference_steps and k_eval != a.action_inference_steps:
        raise SystemExit(f"{a.eval_json} sampled actions in {k_eval} DDIM steps, "
                         f"not {a.action_inference_steps}")
    save_shipped(a.ckpt, a.out, a.n_action_steps, dtype="fp16",
                 action_inference_steps=a.action_inference_steps)
    torch.set_num_threads(1)
    extra = json.loads(Path(a.extra).read_text()) if a.extra else None
    print(json.dumps(write_metrics(a.out, a.env, summary, extra=extra), indent=2))


if __name__ == "__main__":
    main()
