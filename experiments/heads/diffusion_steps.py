"""Does UVA's policy head learn more from 200 demos with a 100-step diffusion schedule?

UVA's action head trains on a 1 000-step DDPM schedule (squaredcos, epsilon; the shipped files'
`train_diffusion_steps`, shared with the video head; `action_train_diffusion_steps` now sets it
apart, and `uva train --stage head --config '{"action_train_diffusion_steps": 100}'` is this
probe's arm as a product command) and samples with 10 DDIM steps. Diffusion Policy trains on 100. On the
simulator's true state (experiments/state_policy_probe.py, 200 demos, 100 seeds) 100 steps scored
0.631 +- 0.037 against 0.551 +- 0.041. This asks the same of UVA itself, with everything else fixed:
the frozen backbone of `--ckpt` (VAE, transformer; its own head is not used), its policy-mode
latents of the training episodes of `--data` computed once, and two fresh heads from the same
init, batch, seed and schedule (experiments/augment/head_shift.py's `train_head`) that differ only
in the training schedule's length. Both sample with the checkpoint's DDIM step count through the
product's traced sampler, and play the same seeds (uva.evaluate.paired_rollouts).

    python experiments/heads/diffusion_steps.py --data data/pusht200.zarr --steps 5000 \
        --episodes 100 --first-seed 500000 --out experiments/heads/diffusion_steps.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "augment"))
from head_shift import probe_args, probe_start, train_head  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    probe_args(ap, steps=5000, first_seed=500000)
    ap.add_argument("--schedules", type=int, nargs="+", default=[1000, 100],
                    help="training diffusion steps of each arm (the first is the reference)")
    a = ap.parse_args()
    from uva import load_policy
    from uva.evaluate import paired_rollouts
    from uva.fastpath import ActionSampler
    from uva.heads import DiffusionSampler

    w, result = probe_start(a, "training diffusion steps of a fresh policy head on a frozen "
                               "backbone")
    model, cfg, actions, zs, index = (w[k] for k in ("model", "cfg", "actions", "zs", "index"))
    result.update({"steps": a.steps, "inference_steps": cfg.action_inference_steps})
    policies = {}
    for T in a.schedules:
        arm = f"T{T}"
        model.action_head.diffusion = DiffusionSampler(T, cfg.action_inference_steps)
        state, info = train_head(model, cfg, zs, actions, index, a.steps, a.batch, a.lr, a.seed,
                                 use_copies=False)
        policy = load_policy(a.ckpt, precision="fp32")
        head = policy.model.action_head
        head.diffusion = DiffusionSampler(T, cfg.action_inference_steps)
        head.load_state_dict(state)
        policy.action_sampler = ActionSampler(head, policy.device, True)  # traced on this schedule
        policies[arm] = policy
        result["arms"][arm] = {**info, "train_diffusion_steps": T,
                               "sampler": policy.action_sampler.reason or "traced"}
        print(arm, result["arms"][arm], flush=True)
    result["eval"] = paired_rollouts(policies, "pusht", a.episodes, a.first_seed)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({**result, "eval": result["eval"]["variants"]}, indent=1))


if __name__ == "__main__":
    main()
