"""A shipped recipe with one change, against the same recipe without it, on one budget:
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
* `chunk`: longer action chunks, Diffusion Policy's: `--actions-per-frame 8` (history frames 8
  steps apart, 16-action chunks; the shipped PushT uses 4 and 8) and `--action-steps` of each
  chunk executed, in every ship and eval stage. The video stage starts from the shared VAE with
  the new spacing (`vae_from`), so it and everything after it train again; shares the demos and
  the VAE.
* `policy-weight`: both joint stages sample the policy mode `--policy-weight` times as often as
  each other mode (`task_weights`; 1 = the recipe's uniform five). Shares the demos, the VAE and
  the video stage.
* `action-schedule`: the action head trains on its own `--action-diffusion-steps`-step DDPM
  schedule (`action_train_diffusion_steps`; Diffusion Policy's 100) instead of the video head's
  1 000, set on the first joint stage (the continuation and every head refit inherit it). Shares
  the demos, the VAE and the video stage (whose action head never trains).
* `head-steps`: every head refit (`stage: head`, policy and inverse) trains `--head-factor`
  times as many steps, in the recipe and in every budget's own head cap (each with its own cosine
  to its end; a budget with one cap for all stages, like `tiny`, keeps it). Shares the demos,
  the VAE, the video stage and both joint stages: only the heads change.
* `backbone-data`: one more joint stage, as long as the last one, continues the backbone on the
  demos of the chain's last policy head refit (at `--budget cpu` all 250; the chain's joint
  stages saw only the first collection's 50), and that refit starts from it instead of from the
  head refit before it. `--joint-data NAME` trains the added stage on another collection: on
  the backbone's own (`demos_200`) it is the control with the same steps and no new demos, so
  the two variants' paired difference is what the demos alone did. Shares everything before
  the last head refit.
* `wrist` (configs/panda.yaml, `--recipe configs/panda.yaml`): scene + wrist camera against the
  scene camera alone. Every collection records both cameras (the same seeds, so the same
  episodes and the same scene frames) and the model takes both (`cameras: [scene, wrist]`): the
  VAE stage trains on both cameras' frames. Shares nothing, since the demos change.

`prepare` writes the variant recipe (from `--recipe`, configs/pusht.yaml by default) and seeds
the variant's run folder with what the change cannot touch, copied from the plain run: every
stage the plain run finished with the spec the variant gives it (at the plain run's budget) and
whose inputs are shared too (the video stage is copied for UVA-action, which never reads it); a
stage the plain run has not finished yet is left for the variant's run to do itself. `uva train
--recipe` then runs the rest (the changed stages, what follows them, the ship and its
evaluations). `report` pairs the two runs' evaluations seed by seed (the ship stage's 50 seeds
from 100000 and `fresh_seeds`' 50; `--more-evals` adds further seeds both shipped files played
with `uva eval`).

    uva --threads 2 train --recipe configs/pusht.yaml --budget cpu --out runs/pusht_cpu
    python experiments/recipes/variant.py prepare --variant shift --plain runs/pusht_cpu \
        --out runs/pusht_cpu_shift --recipe-out runs/pusht_shift.yaml
    uva --threads 2 train --recipe runs/pusht_shift.yaml --budget cpu --out runs/pusht_cpu_shift
    python experiments/recipes/variant.py report --variant shift --plain runs/pusht_cpu \
        --other runs/pusht_cpu_shift --out experiments/augment/recipe_shift_cpu.json

`--variant backbone-data` beside its control (the same added steps on the backbone's own demos),
each run like the shift variant above, each reported against the plain run
(experiments/recipes/backbone_data_cpu.json: the first against runs/pusht_cpu6k), then the two
paired with each other:

    python experiments/recipes/variant.py prepare --variant backbone-data --plain runs/pusht_cpu \
        --out runs/pusht_cpu_backbone_all --recipe-out runs/pusht_backbone_all.yaml
    python experiments/recipes/variant.py prepare --variant backbone-data --joint-data demos_200 \
        --plain runs/pusht_cpu --out runs/pusht_cpu_backbone_own \
        --recipe-out runs/pusht_backbone_own.yaml
    python experiments/recipes/variant.py report --variant backbone-data \
        --plain runs/pusht_cpu_backbone_own --other runs/pusht_cpu_backbone_all \
        --question "the added joint stage on all demos vs on the backbone's own" \
        --out experiments/recipes/backbone_data_control_cpu.json

(`--variant action`: runs/pusht_cpu_action, experiments/recipes/uva_action_cpu.json. `--variant
wrist --recipe configs/panda.yaml` is a GPU comparison: `uva train --recipe configs/panda.yaml
--device cuda --out runs/panda` beside the variant recipe's run; the report pairs the `panda`
ship stage's evaluation and `fresh_seeds`.)
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
QUESTIONS = {"shift": "random-shift augmentation in the joint stages of the PushT recipe",
             "action": "UVA-action (joint stages on the policy mode alone, no video) vs UVA, "
                       "the PushT recipe",
             "wrist": "scene + wrist camera vs the scene camera alone, the Panda recipe",
             "chunk": "another chunk length (actions_per_frame and the actions executed) vs "
                      "the shipped 8-action chunks, the PushT recipe",
             "policy-weight": "the policy mode sampled more often in the joint stages "
                              "(task_weights) vs the five modes uniformly, the PushT recipe",
             "action-schedule": "the action head's own, shorter training schedule "
                                "(action_train_diffusion_steps) vs the shared 1 000, the PushT "
                                "recipe",
             "head-steps": "the head refits trained several times longer vs as written, the "
                           "PushT recipe",
             "backbone-data": "the backbone continued by one more joint stage on the last head "
                              "refit's demos before that refit vs the chain as written, the "
                              "PushT recipe"}


def evaluations(doc: dict) -> dict:
    """{run subfolder holding an eval.json: what it is}: each ship stage's evaluation, each eval
    stage."""
    out = {}
    for s in doc["stages"]:
        if s["kind"] == "ship" and s.get("eval"):
            out[f"{s['name']}.eval"] = f"evaluation seeds (ship stage {s['name']})"
        elif s["kind"] == "eval":
            out[s["name"]] = f"{s['name']} (seeds from {s.get('seed', 100000)})"
    return out


def change(doc: dict, a) -> None:
    """Apply the variant to the recipe document."""
    joints = [s for s in doc["stages"] if s.get("stage") == "joint"]
    if a.variant == "shift":
        joints[0]["config"] = {**(joints[0].get("config") or {}), "augment_shift_px": a.shift_px,
                               "augment_shift_copies": a.copies}
        doc["description"] = (f"configs/pusht.yaml with random-shift augmentation ({a.shift_px} "
                              f"px, {a.copies} copies) in the joint stages")
    elif a.variant == "policy-weight":
        for s in joints:
            s["config"] = {**(s.get("config") or {}),
                           "task_weights": {"policy_model": a.policy_weight}}
        doc["description"] = (f"{doc['recipe']} with the policy mode weighted {a.policy_weight}:1 "
                              f"against each other mode in the joint stages")
    elif a.variant == "action-schedule":
        joints[0]["config"] = {**(joints[0].get("config") or {}),
                               "action_train_diffusion_steps": a.action_diffusion_steps}
        doc["description"] = (f"{doc['recipe']} with the action head trained on a "
                              f"{a.action_diffusion_steps}-step diffusion schedule")
    elif a.variant == "head-steps":
        for s in doc["stages"]:
            if s.get("stage") == "head":
                s["steps"] = int(s["steps"] * a.head_factor)
        for b in (doc.get("budgets") or {}).values():
            caps = b.get("steps")
            if isinstance(caps, dict) and "head" in caps:  # one cap for every stage stays
                caps["head"] = int(caps["head"] * a.head_factor)
        doc["description"] = (f"{doc['recipe']} with every head refit {a.head_factor:g}x as "
                              f"long")
    elif a.variant == "chunk":
        video = next(s for s in doc["stages"] if s.get("stage") == "video")
        video.pop("init", None)
        video["vae_from"] = "vae"
        video["config"] = {**(video.get("config") or {}), "actions_per_frame": a.actions_per_frame}
        for s in doc["stages"]:
            if s["kind"] == "ship":
                s["n_action_steps"] = a.action_steps
            elif s["kind"] == "eval":
                s["action_steps"] = a.action_steps
        doc["description"] = (f"{doc['recipe']} with actions_per_frame {a.actions_per_frame} "
                              f"({a.action_steps} actions executed per chunk)")
    elif a.variant == "backbone-data":
        heads = [s for s in doc["stages"] if s.get("stage") == "head"
                 and list(s.get("modes") or []) == ["policy_model"]]
        last, prev = heads[-1], joints[-1]
        at = doc["stages"].index(last)
        data = a.joint_data or last["data"]
        earlier = [s["name"] for s in doc["stages"][:at] if s["kind"] in ("collect", "dataset")]
        if data not in earlier:
            raise SystemExit(f"--joint-data {data}: not a collection before the last head refit "
                             f"'{last['name']}' ({earlier})")
        ship = next(s for s in doc["stages"] if s["kind"] == "ship" and s["ckpt"] == prev["name"])
        joint = {**{k: v for k, v in prev.items() if k not in ("name", "note", "init", "seed")},
                 "name": f"{prev['name']}_on_{data}", "data": data, "init": prev["name"],
                 "seed": int(prev.get("seed", 0)) + 1,
                 "note": f"the backbone continued on {data} before the last head refit"}
        shipped = {**{k: v for k, v in ship.items() if k not in ("name", "note")},
                   "name": f"{ship['name']}_on_{data}", "ckpt": joint["name"]}
        doc["stages"][at:at] = [joint, shipped]
        last["init"] = shipped["name"]
        doc["description"] = (f"{doc['recipe']} with the backbone continued "
                              f"{prev['steps']} joint steps on {data} before its last head refit")
    elif a.variant == "wrist":
        for s in doc["stages"]:
            if s["kind"] == "collect":
                s["cameras"] = ["scene", "wrist"]
        doc["model"] = {**(doc.get("model") or {}), "cameras": ["scene", "wrist"]}
        doc["description"] = f"{doc['recipe']} with a wrist camera beside the scene camera"
    else:
        first = joints[0]
        first.pop("init", None)
        first["vae_from"] = "vae"
        for s in joints:
            s["modes"] = ["policy_model"]
            s["note"] = "UVA-action: the policy mode alone"
        doc["description"] = ("configs/pusht.yaml as UVA-action: the joint stages train the "
                              "policy mode alone (no video loss), from the VAE")


def shared_stages(recipe_out: Path, state: dict) -> dict:
    """{stage: its entry in `state`, the plain run's recipe_state.json} for every stage of the
    variant recipe at `recipe_out` that the plain run already holds: finished there with the spec
    the variant gives it (at the plain run's budget), every stage it reads shared too."""
    from uva.recipe import dependencies, effective_spec, load_recipe, with_budget

    recipe = with_budget(load_recipe(recipe_out), state.get("budget"))
    kept = {}
    for st in recipe.stages:  # in order: a stage's inputs come before it
        done = state["stages"].get(st.name)
        if (done is not None and done["spec"] == effective_spec(recipe, st)
                and dependencies(st) <= set(kept)):
            kept[st.name] = done
    return kept


def prepare(a) -> None:
    doc = yaml.safe_load(a.recipe.read_text())
    change(doc, a)
    a.recipe_out.parent.mkdir(parents=True, exist_ok=True)
    a.recipe_out.write_text(yaml.safe_dump(doc, sort_keys=False))
    a.out.mkdir(parents=True, exist_ok=False)
    if a.plain is None:
        print(f"wrote {a.recipe_out}; {a.out} starts empty (no --plain run to share stages with)")
        return
    state = json.loads((a.plain / "recipe_state.json").read_text())
    kept = shared_stages(a.recipe_out, state)
    for name in kept:
        for src in a.plain.glob(f"{name}*"):  # name.zarr + name.zarr.json, or the run folder
            if src.name in (name, f"{name}.zarr", f"{name}.zarr.json"):
                (shutil.copytree if src.is_dir() else shutil.copy2)(src, a.out / src.name)
    (a.out / "recipe_state.json").write_text(json.dumps({**state, "stages": kept}, indent=1))
    print(f"wrote {a.recipe_out}; {a.out} holds {list(kept) or 'nothing'} from {a.plain}")


def report(a) -> None:
    from uva.evaluate import paired_scores
    evals = evaluations(yaml.safe_load(a.recipe.read_text()))
    runs = {folder: [json.loads((r / folder / "eval.json").read_text())["per_episode"]
                     for r in (a.plain, a.other)] for folder in evals}
    if a.more_evals:  # the same further seeds played by each run's shipped file (`uva eval`)
        docs = [json.loads((d / "eval.json").read_text()) for d in a.more_evals]
        key = f"more seeds (from {docs[0]['first_seed']}, {docs[0]['ckpt']} and {docs[1]['ckpt']})"
        runs[key], evals[key] = [d["per_episode"] for d in docs], key
    out = {"question": a.question or QUESTIONS[a.variant], "plain": str(a.plain),
           a.variant: str(a.other),
           "difference_of": f"{a.variant} - plain",
           "evaluations": {what: paired_scores(*runs[folder]) for folder, what in evals.items()},
           # the two evaluations play different seeds: together, one paired set of both
           "all": paired_scores(*(sum((runs[f][k] for f in evals), []) for k in (0, 1)))}
    state = json.loads((a.other / "recipe_state.json").read_text())
    out[f"{a.variant}_wall_s"] = {k: v.get("wall_s") for k, v in state["stages"].items()}
    a.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--variant", choices=sorted(QUESTIONS), required=True)
    p.add_argument("--recipe", type=Path, default=ROOT / "configs" / "pusht.yaml")
    p.add_argument("--plain", type=Path, default=None,
                   help="a finished run of --recipe (what the variant shares is copied from it)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--recipe-out", type=Path, required=True)
    p.add_argument("--shift-px", type=int, default=4)
    p.add_argument("--copies", type=int, default=4)
    p.add_argument("--policy-weight", type=float, default=3.0, help="--variant policy-weight")
    p.add_argument("--action-diffusion-steps", type=int, default=100,
                   help="--variant action-schedule")
    p.add_argument("--head-factor", type=float, default=4.0,
                   help="--variant head-steps: times the recipe's head steps")
    p.add_argument("--actions-per-frame", type=int, default=8, help="--variant chunk")
    p.add_argument("--action-steps", type=int, default=8,
                   help="--variant chunk: actions executed per chunk")
    p.add_argument("--joint-data", default=None,
                   help="--variant backbone-data: the collection the added joint stage trains on "
                        "(default: the last head refit's)")
    r = sub.add_parser("report")
    r.add_argument("--variant", choices=sorted(QUESTIONS), required=True)
    r.add_argument("--recipe", type=Path, default=ROOT / "configs" / "pusht.yaml")
    r.add_argument("--plain", type=Path, required=True)
    r.add_argument("--other", type=Path, required=True, help="the variant's finished run")
    r.add_argument("--more-evals", type=Path, nargs=2, metavar=("PLAIN_EVAL", "OTHER_EVAL"),
                   help="two `uva eval --out` folders: the same further seeds played by the plain "
                        "and the variant run's shipped checkpoints, paired and added to 'all'")
    r.add_argument("--question", default=None,
                   help="what the pair answers, when --plain is not the recipe as written (e.g. "
                        "the same variant on other data)")
    r.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    prepare(a) if a.cmd == "prepare" else report(a)


if __name__ == "__main__":
    main()
