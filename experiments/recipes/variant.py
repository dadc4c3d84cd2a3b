"""The PushT recipe with one change, against the same recipe without it, on one budget:
everything the change cannot touch is shared, and the two runs' evaluations are paired seed by
seed.

Variants (`prepare --variant`):

* `shift`: random-shift augmentation (`augment_shift_px` / `augment_shift_copies`) on the first
  joint stage (the continuation inherits it from its init). Shares the demos, the VAE and the
  video stage.
* `action`: UVA-action, the paper's ablation: both joint stages train the policy mode alone
  (`modes: [policy_model]`, no video loss) and start from the VAE (`vae_from`) instead of the
  video stage. Shares the demos and the VAE; the head refits, the ship and its evaluations run
  as written.

`prepare` writes the variant recipe (from configs/pusht.yaml) and seeds the variant's run folder
with what the change cannot touch, copied from a finished plain run (the video stage is copied
for both: UVA-action never reads it). `uva train --recipe` then runs the rest (both joint stages,
every head refit, the ship and its evaluations). `report` pairs the two runs' evaluations seed by
seed (the ship stage's 50 seeds from 100000 and `fresh_seeds`' 50).

    uva --threads 2 train --recipe configs/pusht.yaml --budget cpu --out runs/pusht_cpu
    python experiments/recipes/variant.py prepare --variant shift --plain runs/pusht_cpu \
        --out runs/pusht_cpu_shift --recipe-out runs/pusht_shift.yaml
    uva --threads 2 train --recipe runs/pusht_shift.yaml --budget cpu --out runs/pusht_cpu_shift
    python experiments/recipes/variant.py report --variant shift --plain runs/pusht_cpu \
        --other runs/pusht_cpu_shift --out experiments/augment/recipe_shift_cpu.json

(`--variant action`: runs/pusht_cpu_action, experiments/recipes/uva_action_cpu.json.)
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
EVALS = {"pusht.eval": "evaluation seeds (ship stage)", "fresh_seeds": "fresh seeds"}
QUESTIONS = {"shift": "random-shift augmentation in the joint stages of the PushT recipe",
             "action": "UVA-action (joint stages on the policy mode alone, no video) vs UVA, "
                       "the PushT recipe"}


def change(doc: dict, a) -> None:
    """Apply the variant to the recipe document."""
    joints = [s for s in doc["stages"] if s.get("stage") == "joint"]
    if a.variant == "shift":
        joints[0]["config"] = {**(joints[0].get("config") or {}), "augment_shift_px": a.shift_px,
                               "augment_shift_copies": a.copies}
        doc["description"] = (f"configs/pusht.yaml with random-shift augmentation ({a.shift_px} "
                              f"px, {a.copies} copies) in the joint stages")
    else:
        first = joints[0]
        first.pop("init", None)
        first["vae_from"] = "vae"
        for s in joints:
            s["modes"] = ["policy_model"]
            s["note"] = "UVA-action: the policy mode alone"
        doc["description"] = ("configs/pusht.yaml as UVA-action: the joint stages train the "
                              "policy mode alone (no video loss), from the VAE")


def prepare(a) -> None:
    doc = yaml.safe_load((ROOT / "configs" / "pusht.yaml").read_text())
    change(doc, a)
    a.recipe_out.write_text(yaml.safe_dump(doc, sort_keys=False))
    state = json.loads((a.plain / "recipe_state.json").read_text())
    before = {s["name"] for s in doc["stages"] if s["kind"] == "collect"} | {
        s["name"] for s in doc["stages"] if s.get("stage") in ("vae", "video")}
    a.out.mkdir(parents=True, exist_ok=False)
    kept = {}
    for name in sorted(before):
        for src in a.plain.glob(f"{name}*"):  # name.zarr + name.zarr.json, or the run folder
            if src.name in (name, f"{name}.zarr", f"{name}.zarr.json"):
                (shutil.copytree if src.is_dir() else shutil.copy2)(src, a.out / src.name)
        kept[name] = state["stages"][name]
    (a.out / "recipe_state.json").write_text(json.dumps({**state, "stages": kept}, indent=1))
    print(f"wrote {a.recipe_out}; {a.out} holds {sorted(kept)} from {a.plain}")


def report(a) -> None:
    from uva.evaluate import paired_scores
    runs = {folder: [json.loads((r / folder / "eval.json").read_text())["per_episode"]
                     for r in (a.plain, a.other)] for folder in EVALS}
    out = {"question": QUESTIONS[a.variant], "plain": str(a.plain), a.variant: str(a.other),
           "difference_of": f"{a.variant} - plain",
           "evaluations": {what: paired_scores(*runs[folder]) for folder, what in EVALS.items()},
           # the two evaluations play different seeds: together, one paired set of both
           "all": paired_scores(*(sum((runs[f][k] for f in EVALS), []) for k in (0, 1)))}
    state = json.loads((a.other / "recipe_state.json").read_text())
    out[f"{a.variant}_wall_s"] = {k: v.get("wall_s") for k, v in state["stages"].items()}
    a.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--variant", choices=sorted(QUESTIONS), required=True)
    p.add_argument("--plain", type=Path, required=True, help="a finished run of configs/pusht.yaml")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--recipe-out", type=Path, required=True)
    p.add_argument("--shift-px", type=int, default=4)
    p.add_argument("--copies", type=int, default=4)
    r = sub.add_parser("report")
    r.add_argument("--variant", choices=sorted(QUESTIONS), required=True)
    r.add_argument("--plain", type=Path, required=True)
    r.add_argument("--other", type=Path, required=True, help="the variant's finished run")
    r.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    prepare(a) if a.cmd == "prepare" else report(a)


if __name__ == "__main__":
    main()
