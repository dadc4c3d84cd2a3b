"""Does random-shift augmentation in the transformer stages help PushT at 200 demos?

The head-only version (head_shift.py) could not teach the frozen backbone anything; this one
trains the backbone itself with `augment_shift_px` / `augment_shift_copies` (uva.training.augment):
two arms from the same frozen VAE (the shipped PushT file's, trained on these 200 demos), same
data, seed, steps and batch, differing only in the augmentation; both play the same fresh seeds.

    uva --threads 1 train --data data/pusht200.zarr --out runs/aug/plain --vae-from \
        models/checkpoints/pusht --video-steps 200 --joint-steps 2000 --batch-size 32 \
        --ckpt-every 500 --eval-every 500
    uva --threads 1 train ... --out runs/aug/shift \
        --config '{"augment_shift_px": 4, "augment_shift_copies": 4}'
    uva --threads 1 eval --env pusht --ckpt runs/aug/<arm>/joint/final --episodes 100 \
        --seed 300000 --gifs 0 --out runs/aug/eval_<arm>
    python experiments/augment/joint_shift.py --work runs/aug --out experiments/augment/joint_shift.json

where data/pusht200.zarr is `uva collect --env pusht --episodes 200 --seed 0` (the first stage of
configs/pusht.yaml). The report pairs the two arms seed by seed. On a GPU the two arms are
`experiments/gpu_recipe.sh augment` (batch 128, joint steps sized to the budget): untar its logs
and checkpoints into --work, evaluate each fp16 final with --out <work>/eval_aug_<arm>, and
report each arm against the plain one: --arms aug_plain aug_shift, --arms aug_plain aug_schedule
(the action head's 100-step schedule, the script's third arm).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def _arm(work: Path, arm: str) -> dict:
    ev = json.loads((work / f"eval_{arm}" / "eval.json").read_text())
    rows = [json.loads(line) for line in (work / arm / "joint" / "log.jsonl").read_text().splitlines()]
    cfg = json.loads((Path(ev["ckpt"]) / "config.json").read_text())  # the checkpoint evaluated
    return {"eval": ev, "joint_steps": rows[-1]["step"], "joint_wall_s": rows[-1]["time_s"],
            "val": {k: v for k, v in rows[-1].items() if k.startswith("val/")},
            "augment": {k: v for k, v in cfg["uva_config"].items()
                        if k.startswith("augment_")}}


def main() -> None:
    from uva.evaluate import paired_scores
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", required=True, type=Path)
    ap.add_argument("--arms", nargs=2, default=["plain", "shift"])
    ap.add_argument("--out", required=True, type=Path)
    a = ap.parse_args()
    arms = {name: _arm(a.work, name) for name in a.arms}
    pair = paired_scores(*(arms[n]["eval"]["per_episode"] for n in a.arms))
    result = {
        "question": "random-shift augmentation in the video and joint stages, PushT, 200 demos",
        "seeds": pair["seeds"], "episodes": pair["episodes"],
        "arms": {n: {**pair[side], "joint_steps": arms[n]["joint_steps"],
                     "joint_wall_s": arms[n]["joint_wall_s"], "final_val": arms[n]["val"],
                     "augment": arms[n]["augment"]}
                 for n, side in zip(a.arms, ("reference", "other"))},
        "paired_difference": {"mean": pair["paired_diff"], "se": pair["paired_diff_se"],
                              "of": f"{a.arms[1]} - {a.arms[0]}"},
    }
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
