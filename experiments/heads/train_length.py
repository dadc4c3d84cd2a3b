"""Does UVA's policy head play better from 200 demos when it trains far past its validation minimum?

Every head refit on 200 PushT demos saw its validation loss turn up after 5-6 k steps, and the
fresh-head probes stop at 5 000. Diffusion Policy reports the opposite habit: on small demo sets
its action-prediction validation loss rises while the closed-loop score keeps climbing, so it
trains for thousands of epochs and takes the last checkpoint. The shipped head_200 refit (10 k
steps from the joint-trained head) scored 0.395, the 5 k-step fresh heads 0.20-0.26. This asks
whether training length is the lever, with everything else fixed: the frozen backbone of `--ckpt`
(VAE, transformer; its own head is not used), its policy-mode latents of the training episodes of
`--data`, fresh heads from the same init, batches and seed (experiments/augment/head_shift.py's
`train_head`: AdamW, warmup + cosine to each arm's own length, EMA) that differ only in their
number of steps. Each arm also reports its EMA weights' loss on the held-out episodes (same
noise draw for every arm). Scored closed loop on the same seeds (uva.evaluate.paired_rollouts).

    python experiments/heads/train_length.py --data data/pusht200.zarr --lengths 5000 20000 \
        --episodes 100 --first-seed 900000 --out experiments/heads/train_length.json

On 2 cores, one process per core, joined at the end (the first file's first arm is the
reference):

    python experiments/heads/train_length.py --data D --lengths 5000 15000 --threads 1 --out a.json &
    python experiments/heads/train_length.py --data D --lengths 45000 --threads 1 --out b.json
    python experiments/heads/train_length.py --join a.json b.json --out train_length.json
    python experiments/heads/train_length.py --pool train_length.json seed1.json --out pooled.json
    python experiments/heads/train_length.py --plot train_length.json seed1.json \
        --out docs/media/pusht_head_steps.png    # score and losses vs steps, one line per run
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "augment"))
from head_shift import (build_windows, pair_with, probe_args, probe_start,  # noqa: E402
                        train_head)


@torch.no_grad()
def held_out_loss(head, cfg, z, actions, index, batch: int = 512, seed: int = 12345) -> float:
    """Mean training loss of `head` over every held-out window, one fixed noise draw."""
    gen = torch.Generator().manual_seed(seed)
    head.eval()
    total, n = 0.0, 0
    for i in range(0, len(index), batch):
        rows = np.arange(i, min(i + batch, len(index)))
        loss = head.loss(z[rows].float(), actions[index.actions[rows]], cfg.diffusion_batch_mul,
                         gen)
        total, n = total + loss.item() * len(rows), n + len(rows)
    return total / n


def join(paths: list[str], out: str) -> None:
    """Several runs' JSON on the same seeds as one paired table (the first run's first arm is
    the reference)."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    result = {**runs[0], "arms": {}, "joined": paths}
    for run in runs:
        result["arms"].update(run["arms"])
    ev = runs[0]["eval"]
    for run in runs[1:]:
        ev = pair_with(run["eval"], {"eval": ev})
    ev.pop("paired_with", None)  # the arms are in result["arms"]
    result["eval"] = ev
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"arms": result["arms"], "eval": ev["variants"]}, indent=1))


def pool(paths: list[str], out: str) -> None:
    """Runs on different seeds (other training seeds, other evaluation seeds) pooled: every arm
    all of them trained, paired with the first arm over all their episodes."""
    from uva.evaluate import paired_scores
    runs = [json.loads(Path(p).read_text())["eval"] for p in paths]
    arms = [a for a in runs[0]["variants"] if all(a in r["variants"] for r in runs)]
    rows = lambda arm: [{"seed": e["seed"], **e[arm]} for r in runs for e in r["per_episode"]]
    result = {"question": "training length of a fresh policy head on a frozen backbone, runs "
                          "pooled", "runs": paths, "reference": arms[0],
              "pooled": {arm: paired_scores(rows(arms[0]), rows(arm)) for arm in arms[1:]}}
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=1))


def plot(paths: list[str], out: str) -> None:
    """Score (+- s.e.) and the train / held-out losses against training steps, one line per
    run (training seed and evaluation seeds)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax_s, ax_l) = plt.subplots(1, 2, figsize=(10, 4))
    for path in paths:
        r = json.loads(Path(path).read_text())
        arms = sorted(r["arms"], key=lambda k: r["arms"][k]["steps"])
        steps = [r["arms"][k]["steps"] for k in arms]
        ev = r["eval"]["variants"]
        label = (f"training seed {r['seed']}, eval seeds {r['eval']['first_seed']}+"
                 f"{r['eval']['episodes']}")
        line = ax_s.errorbar(steps, [ev[k]["score"] for k in arms],
                             yerr=[ev[k]["score_se"] for k in arms], marker="o", capsize=3,
                             label=label)
        color = line[0].get_color()
        ax_l.plot(steps, [r["arms"][k]["held_out_loss"] for k in arms], "o-", color=color,
                  label=f"held-out (EMA weights), seed {r['seed']}")
        ax_l.plot(steps, [r["arms"][k]["final_loss_500"] for k in arms], "s--", color=color,
                  label=f"training, last 500 steps (live weights), seed {r['seed']}")
    ax_s.axhline(0.156, color="grey", ls=":", label="random policy")
    ax_s.set(xlabel="head training steps (batch 256)", ylabel="PushT score (mean, +- s.e.)",
             title="Fresh policy head on the frozen backbone, 200 demos")
    ax_l.set(xlabel="head training steps (batch 256)", ylabel="diffusion loss (epsilon MSE)",
             title="Training and held-out loss")
    ticks = sorted({a["steps"] for p_ in paths
                    for a in json.loads(Path(p_).read_text())["arms"].values()})
    for ax in (ax_s, ax_l):
        ax.set_xscale("log")
        ax.set_xticks(ticks, [f"{t // 1000}k" if t % 1000 == 0 else str(t) for t in ticks])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    from uva.fsutil import atomic_write
    atomic_write(Path(out), lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    print(f"wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    for verb, fn in (("--join", join), ("--pool", pool), ("--plot", plot)):
        if verb in sys.argv:
            ap.add_argument(verb, nargs="+", required=True)
            ap.add_argument("--out", required=True)
            a = ap.parse_args()
            return fn(getattr(a, verb[2:]), a.out)
    probe_args(ap, steps=5000, first_seed=900000)
    ap.add_argument("--lengths", type=int, nargs="+", default=[5000, 20000],
                    help="training steps of each arm (the first is the reference)")
    a = ap.parse_args()
    from uva import load_policy
    from uva.evaluate import paired_rollouts

    w, result = probe_start(a, "training length of a fresh policy head on a frozen backbone")
    model, cfg, actions, zs, index = (w[k] for k in ("model", "cfg", "actions", "zs", "index"))
    val_z, val_index, _ = build_windows(model, cfg, w["buf"], w["normalizers"], w["val_eps"],
                                        0, 0, a.seed)
    result.update({"held_out_episodes": len(w["val_eps"]), "held_out_windows": len(val_index)})
    policies = {}
    for steps in a.lengths:
        arm = f"steps{steps}"
        state, info = train_head(model, cfg, zs, actions, index, steps, a.batch, a.lr, a.seed,
                                 use_copies=False)
        policy = load_policy(a.ckpt, precision="fp32")
        policy.model.action_head.load_state_dict(state)  # in place: the traced sampler follows
        info["steps"] = steps
        info["held_out_loss"] = held_out_loss(policy.model.action_head, cfg, val_z[0], actions,
                                              val_index)
        policies[arm] = policy
        result["arms"][arm] = info
        print(arm, info, flush=True)
    result["eval"] = paired_rollouts(policies, "pusht", a.episodes, a.first_seed)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({**result, "eval": result["eval"]["variants"]}, indent=1))


if __name__ == "__main__":
    main()
