"""Recipes: the whole chain that produces a shipped model, as data (configs/*.yaml).

A recipe names an environment, the model architecture (the fields that differ from UVAConfig's
defaults) and an ordered list of stages, each one call of an existing tool:

  dataset  an existing replay buffer (`path`), used as is
  collect  `uva collect`: expert demos (`episodes`, `seed`, `workers`), or `base` + new ones
  train    `uva train --stage vae|video|joint|head` on a dataset stage's buffer, from `init`
  eval     `uva eval`: closed-loop rollouts on fixed seeds (+ held-out dynamics with `data`)
  ship     an fp16 copy with `n_action_steps`, its own evaluation and a seed check (uva.ship)

Stages refer to earlier stages by name. Everything is written under one output folder: a
collect stage to `<out>/<name>.zarr`, a train stage's run to `<out>/<name>/` (its checkpoint is
`<out>/<name>/<stage>/final`), an eval to `<out>/<name>/eval.json`, a ship stage's checkpoint to
`<out>/<name>/`. `<out>/recipe_state.json` records each finished stage with the exact spec it
ran, so a rerun skips finished stages, an interrupted train stage resumes through the trainer's
own resume, and an interrupted collect/eval/ship stage is redone (they are deterministic).

A `budgets:` section names reduced budgets (caps on episodes, steps, batch, evaluation episodes,
check seeds, plus model-size overrides) so every stage of a recipe can run in minutes.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from .checkpoint import atomic_write_json
from .config import TASK_MODES, UVAConfig

STATE_FILE = "recipe_state.json"
TOP_KEYS = {"recipe", "env", "description", "model", "budgets", "stages"}
COMMON_KEYS = {"name", "kind", "note"}
KIND_KEYS = {
    "dataset": {"path"},
    "collect": {"episodes", "seed", "workers", "base", "image_size", "keep_failures"},
    "train": {"stage", "data", "steps", "init", "vae_from", "modes", "config", "batch_size", "lr",
              "seed", "max_minutes", "ckpt_every", "eval_every", "keep_every"},
    "eval": {"ckpt", "data", "episodes", "seed", "action_steps", "gifs", "action_temperature"},
    "ship": {"ckpt", "n_action_steps", "dtype", "eval", "check_seeds"},
}
REQUIRED = {"dataset": {"path"}, "collect": {"episodes"}, "train": {"stage", "data", "steps"},
            "eval": {"ckpt", "episodes"}, "ship": {"ckpt"}}
SHIP_EVAL_KEYS = {"episodes", "seed", "gifs", "data"}
BUDGET_KEYS = {"description", "episodes", "workers", "steps", "batch_size", "eval_episodes",
               "gifs", "check_seeds", "model"}
TRAIN_STAGES = ("vae", "video", "joint", "head")
DATA_KINDS = ("dataset", "collect")
CKPT_KINDS = ("train", "ship")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class RecipeError(ValueError):
    """A recipe file that cannot run: the message names the file and the offending key."""


@dataclass
class Stage:
    name: str
    kind: str
    spec: dict  # the stage's keys other than name/kind/note


@dataclass
class Recipe:
    name: str
    env: str
    path: Path
    model: dict
    stages: list[Stage]
    budgets: dict
    budget: str | None = None

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)


# ------------------------------------------------------------------------------ loading
def load_recipe(path: str | Path) -> Recipe:
    """Parse and validate a recipe file; every problem is a RecipeError naming the file."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise RecipeError(f"recipe {path} does not exist") from None
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(doc, dict):
        raise RecipeError(f"{path}: a recipe is a mapping with keys {sorted(TOP_KEYS)}")
    _no_unknown(doc, TOP_KEYS, path, "the top level")
    for key in ("recipe", "env", "stages"):
        if key not in doc:
            raise RecipeError(f"{path}: missing top-level key '{key}'")
    model = doc.get("model") or {}
    _check_model(model, path, "model")
    budgets = doc.get("budgets") or {}
    if not isinstance(budgets, dict):
        raise RecipeError(f"{path}: 'budgets' maps a budget name to its caps")
    for bname, b in budgets.items():
        if not isinstance(b, dict):
            raise RecipeError(f"{path}: budgets.{bname} must be a mapping")
        _no_unknown(b, BUDGET_KEYS, path, f"budgets.{bname}")
        _check_model(b.get("model") or {}, path, f"budgets.{bname}.model")
    if not isinstance(doc["stages"], list) or not doc["stages"]:
        raise RecipeError(f"{path}: 'stages' must be a non-empty list")
    stages: list[Stage] = []
    for i, raw in enumerate(doc["stages"]):
        stages.append(_parse_stage(raw, i, stages, path))
    return Recipe(name=str(doc["recipe"]), env=str(doc["env"]), path=path, model=dict(model),
                  stages=stages, budgets=budgets)


def _no_unknown(d: dict, allowed: set, path: Path, where: str) -> None:
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise RecipeError(f"{path}: unknown key '{unknown[0]}' in {where}; "
                          f"allowed: {sorted(allowed)}")


def _check_model(model, path: Path, where: str) -> None:
    if not isinstance(model, dict):
        raise RecipeError(f"{path}: {where} must be a mapping of UVAConfig fields")
    fields = {f.name for f in dataclasses.fields(UVAConfig)}
    _no_unknown(model, fields, path, f"{where} (UVAConfig fields)")


def _parse_stage(raw, i: int, earlier: list[Stage], path: Path) -> Stage:
    if not isinstance(raw, dict) or "name" not in raw or "kind" not in raw:
        raise RecipeError(f"{path}: stages[{i}] needs 'name' and 'kind'")
    name, kind = str(raw["name"]), raw["kind"]
    where = f"stage '{name}' (stages[{i}])"
    if not NAME.match(name):
        raise RecipeError(f"{path}: {where}: a name is letters, digits, '_', '-', '.'")
    if any(s.name == name for s in earlier):
        raise RecipeError(f"{path}: {where}: the name is used twice")
    if kind not in KIND_KEYS:
        raise RecipeError(f"{path}: {where}: unknown kind '{kind}'; choose from "
                          f"{sorted(KIND_KEYS)}")
    _no_unknown(raw, KIND_KEYS[kind] | COMMON_KEYS, path, where)
    missing = sorted(REQUIRED[kind] - set(raw))
    if missing:
        raise RecipeError(f"{path}: {where}: missing key '{missing[0]}'")
    spec = {k: v for k, v in raw.items() if k not in COMMON_KEYS}
    kinds = {s.name: s.kind for s in earlier}

    def ref(key: str, allowed: tuple, value=None):
        target = spec.get(key) if value is None else value
        if target is None:
            return
        if kinds.get(target) not in allowed:
            raise RecipeError(f"{path}: {where}: {key} '{target}' must name an earlier "
                              f"{' or '.join(allowed)} stage")

    for key in ("episodes", "steps", "seed", "workers", "batch_size", "ckpt_every", "eval_every",
                "keep_every", "action_steps", "gifs", "n_action_steps", "image_size"):
        if key in spec and (not isinstance(spec[key], int) or isinstance(spec[key], bool)
                            or spec[key] < (0 if key in ("seed", "gifs") else 1)):
            raise RecipeError(f"{path}: {where}: {key} must be a positive integer, "
                              f"not {spec[key]!r}")
    if kind == "collect":
        ref("base", DATA_KINDS)
    elif kind == "train":
        if spec["stage"] not in TRAIN_STAGES:
            raise RecipeError(f"{path}: {where}: stage '{spec['stage']}' is not one of "
                              f"{TRAIN_STAGES}")
        ref("data", DATA_KINDS)
        ref("init", CKPT_KINDS)
        ref("vae_from", CKPT_KINDS)
        if spec["stage"] != "vae" and not (spec.get("init") or spec.get("vae_from")):
            raise RecipeError(f"{path}: {where}: a {spec['stage']} stage needs 'init' "
                              f"(or 'vae_from')")
        modes = spec.get("modes") or []
        if not isinstance(modes, list) or set(modes) - set(TASK_MODES):
            raise RecipeError(f"{path}: {where}: modes must be a list of {TASK_MODES}")
        _check_model(spec.get("config") or {}, path, f"{where}.config")
    elif kind == "eval":
        ref("ckpt", CKPT_KINDS)
        ref("data", DATA_KINDS)
    elif kind == "ship":
        ref("ckpt", CKPT_KINDS)
        ev = spec.get("eval") or {}
        if not isinstance(ev, dict):
            raise RecipeError(f"{path}: {where}: eval must be a mapping")
        _no_unknown(ev, SHIP_EVAL_KEYS, path, f"{where}.eval")
        if ev and "episodes" not in ev:
            raise RecipeError(f"{path}: {where}.eval: missing key 'episodes'")
        ref("eval.data", DATA_KINDS, ev.get("data"))
        seeds = spec.get("check_seeds")
        if seeds is not None and (not isinstance(seeds, list) or not seeds
                                  or not all(isinstance(s, int) for s in seeds)):
            raise RecipeError(f"{path}: {where}: check_seeds must be a list of integers")
        if spec.get("dtype", "fp16") not in ("fp16", "fp32"):
            raise RecipeError(f"{path}: {where}: dtype must be fp16 or fp32")
    return Stage(name=name, kind=kind, spec=spec)


# ------------------------------------------------------------------------------ budgets
def with_budget(recipe: Recipe, budget: str | None) -> Recipe:
    """The recipe with a named budget's caps applied to every stage (None: as written)."""
    if budget is None:
        return recipe
    if budget not in recipe.budgets:
        raise RecipeError(f"{recipe.path}: no budget '{budget}'; it defines "
                          f"{sorted(recipe.budgets) or 'none'}")
    b = recipe.budgets[budget]
    stages = []
    for st in recipe.stages:
        spec = copy.deepcopy(st.spec)
        if st.kind == "collect":
            _cap(spec, "episodes", b.get("episodes"))
            if "workers" in b:
                spec["workers"] = b["workers"]
        elif st.kind == "train":
            _cap(spec, "steps", b.get("steps"))
            if "batch_size" in b:
                spec["batch_size"] = min(spec.get("batch_size", b["batch_size"]), b["batch_size"])
            for key in ("ckpt_every", "eval_every", "keep_every"):
                _cap(spec, key, spec["steps"] if key in spec else None)
        elif st.kind == "eval":
            _cap(spec, "episodes", b.get("eval_episodes"))
            _cap(spec, "gifs", b.get("gifs"))
        elif st.kind == "ship":
            if spec.get("eval"):
                _cap(spec["eval"], "episodes", b.get("eval_episodes"))
                _cap(spec["eval"], "gifs", b.get("gifs"))
            if "check_seeds" in b:
                from .ship import CHECK_SEEDS
                spec["check_seeds"] = list(spec.get("check_seeds", CHECK_SEEDS))[:b["check_seeds"]]
        stages.append(Stage(st.name, st.kind, spec))
    return dataclasses.replace(recipe, stages=stages, budget=budget,
                               model={**recipe.model, **(b.get("model") or {})})


def _cap(spec: dict, key: str, cap) -> None:
    if cap is not None and key in spec:
        spec[key] = min(spec[key], cap)


# ------------------------------------------------------------------------------ planning
def outputs(recipe: Recipe, out: Path) -> dict[str, Path]:
    """Where each stage's product lies: a dataset, a run folder, an eval folder, a checkpoint."""
    paths = {}
    for st in recipe.stages:
        if st.kind == "dataset":
            paths[st.name] = Path(st.spec["path"])
        elif st.kind == "collect":
            paths[st.name] = out / f"{st.name}.zarr"
        else:
            paths[st.name] = out / st.name
    return paths


def checkpoint_of(recipe: Recipe, out: Path, name: str) -> Path:
    st, path = recipe.stage(name), outputs(recipe, out)[name]
    return path / st.spec["stage"] / "final" if st.kind == "train" else path


def effective_spec(recipe: Recipe, st: Stage) -> dict:
    """What decides a stage's result (compared on rerun): its spec, plus the architecture for a
    stage that creates the model."""
    spec = dict(st.spec)
    if st.kind == "train" and st.spec["stage"] == "vae":
        spec["config"] = {**recipe.model, **(st.spec.get("config") or {})}
    return json.loads(json.dumps(spec, sort_keys=True))


def plan(recipe: Recipe, out: str | Path) -> list[dict]:
    """Each stage with its status in `out`: done (finished with this spec), resume (a train
    stage with checkpoints), todo; a finished stage whose spec changed is an error."""
    out = Path(out)
    state = _read_state(recipe, out)
    paths = outputs(recipe, out)
    rows = []
    for st in recipe.stages:
        spec = effective_spec(recipe, st)
        done = state["stages"].get(st.name)
        if done is not None and done["spec"] != spec:
            raise RecipeError(f"{out}: stage '{st.name}' finished with another spec than "
                              f"{recipe.path} now gives; use a new --out")
        status = "done" if done is not None else "todo"
        if status == "todo" and st.kind == "train" and (paths[st.name] / st.spec["stage"]).is_dir():
            status = "resume"
        if st.kind == "dataset" and not paths[st.name].exists():
            raise RecipeError(f"{recipe.path}: stage '{st.name}': dataset {paths[st.name]} "
                              f"does not exist")
        rows.append({"name": st.name, "kind": st.kind, "status": status,
                     "output": str(paths[st.name]), "spec": spec})
    return rows


def _read_state(recipe: Recipe, out: Path) -> dict:
    path = out / STATE_FILE
    fresh = {"recipe": recipe.name, "budget": recipe.budget, "stages": {}}
    if not path.is_file():
        if out.is_dir() and any(out.iterdir()):
            raise RecipeError(f"{out} exists and is not a run of a recipe; pass another --out "
                              f"(or --overwrite)")
        return fresh
    state = json.loads(path.read_text())
    if (state.get("recipe"), state.get("budget")) != (recipe.name, recipe.budget):
        raise RecipeError(f"{out} holds recipe '{state.get('recipe')}' (budget "
                          f"{state.get('budget')}), not '{recipe.name}' (budget {recipe.budget}); "
                          f"pass another --out")
    return state


# ------------------------------------------------------------------------------ running
def run_recipe(path: str | Path, out: str | Path | None = None, device: str = "cpu",
               budget: str | None = None, dry_run: bool = False,
               overwrite: bool = False) -> dict:
    """Run (or with dry_run only plan) every stage of the recipe at `path` in order."""
    recipe = with_budget(load_recipe(path), budget)
    out = Path(out) if out else Path("runs") / (recipe.name + (f"_{budget}" if budget else ""))
    if overwrite and out.exists() and not dry_run:
        shutil.rmtree(out)
    rows = plan(recipe, out)
    if dry_run:
        return {"recipe": recipe.name, "budget": budget, "out": str(out), "plan": rows}
    out.mkdir(parents=True, exist_ok=True)
    state = _read_state(recipe, out)
    atomic_write_json(out / "recipe.json", {"file": str(recipe.path), "budget": budget,
                                            "env": recipe.env, "model": recipe.model,
                                            "stages": [{"name": r["name"], "kind": r["kind"],
                                                        **r["spec"]} for r in rows]})
    for i, row in enumerate(rows, 1):
        tag = f"[recipe {recipe.name}] {i}/{len(rows)} {row['kind']} '{row['name']}'"
        if row["status"] == "done":
            print(f"{tag}: done, skipped", flush=True)
            continue
        print(f"{tag}: {'resuming' if row['status'] == 'resume' else 'running'}", flush=True)
        t0 = time.time()
        result = RUNNERS[row["kind"]](recipe, recipe.stage(row["name"]), out, device)
        state["stages"][row["name"]] = {"kind": row["kind"], "spec": row["spec"],
                                        "output": row["output"], "result": result,
                                        "wall_s": round(time.time() - t0, 1)}
        atomic_write_json(out / STATE_FILE, state)
        print(f"{tag}: finished in {time.time() - t0:.0f} s", flush=True)
    ships = [r["output"] for r in rows if r["kind"] == "ship"]
    return {"recipe": recipe.name, "budget": budget, "out": str(out),
            "stages": {r["name"]: r["output"] for r in rows},
            "shipped": ships[-1] if ships else None}


def _run_dataset(recipe, st, out, device) -> dict:
    return {"path": st.spec["path"]}


def _run_collect(recipe, st, out, device) -> dict:
    from .data import collect
    s, target = st.spec, outputs(recipe, out)[st.name]
    if target.exists():  # an interrupted collection: collected again from its seeds
        shutil.rmtree(target)
    base = str(outputs(recipe, out)[s["base"]]) if s.get("base") else None
    summary = collect(recipe.env, s["episodes"], target, image_size=s.get("image_size", 64),
                      keep_failures=s.get("keep_failures", False), seed=s.get("seed", 0),
                      base=base, workers=s.get("workers", 1))
    atomic_write_json(Path(str(target) + ".json"), summary)
    return {k: v for k, v in summary.items() if k != "seeds"}


def _run_train(recipe, st, out, device) -> dict:
    from .train import TrainArgs, train
    s, paths = st.spec, outputs(recipe, out)
    root = paths[st.name]
    init = str(checkpoint_of(recipe, out, s["init"])) if s.get("init") else None
    vae_from = str(checkpoint_of(recipe, out, s["vae_from"])) if s.get("vae_from") else None
    source = s.get("init") or s.get("vae_from")
    if source:
        _share_caches(_run_root(recipe, out, source), root)
    config = effective_spec(recipe, st).get("config") or {}
    defaults = TrainArgs(data="", out="")
    args = TrainArgs(data=str(paths[s["data"]]), out=str(root), stage=s["stage"],
                     steps={**defaults.steps, s["stage"]: s["steps"]},
                     batch_size=s.get("batch_size", defaults.batch_size),
                     lr=s.get("lr", defaults.lr), ckpt_every=s.get("ckpt_every", defaults.ckpt_every),
                     eval_every=s.get("eval_every", defaults.eval_every), seed=s.get("seed", 0),
                     resume=True, device=device, init=init, vae_from=vae_from,
                     modes=s.get("modes") or None, config_overrides=config,
                     max_minutes=s.get("max_minutes"), keep_every=s.get("keep_every"))
    return {"final": train(args)[s["stage"]]}


def _run_root(recipe: Recipe, out: Path, name: str) -> Path | None:
    """The training run folder behind a checkpoint stage (a ship stage: its source's)."""
    st = recipe.stage(name)
    if st.kind == "train":
        return outputs(recipe, out)[name]
    return _run_root(recipe, out, st.spec["ckpt"]) if st.kind == "ship" else None


def _share_caches(src: Path | None, dst: Path) -> None:
    """Give a run its source run's latent caches (keyed by content, so only what differs is
    computed again), as hard links where the filesystem allows."""
    if src is None or not src.is_dir():
        return
    dst.mkdir(parents=True, exist_ok=True)
    for cache in src.glob("*latents.pt"):
        if not (dst / cache.name).exists():
            try:
                os.link(cache, dst / cache.name)
            except OSError:
                shutil.copy2(cache, dst / cache.name)


def _run_eval(recipe, st, out, device) -> dict:
    from .evaluate import evaluate
    s, paths = st.spec, outputs(recipe, out)
    summary = evaluate(str(checkpoint_of(recipe, out, s["ckpt"])), recipe.env, s["episodes"],
                       str(paths[st.name]), seed=s.get("seed", 100000), n_gifs=s.get("gifs", 0),
                       data=str(paths[s["data"]]) if s.get("data") else None,
                       n_action_steps=s.get("action_steps"),
                       action_temperature=s.get("action_temperature"))
    return _headline(summary)


def _run_ship(recipe, st, out, device) -> dict:
    from .evaluate import evaluate
    from .ship import CHECK_SEEDS, save_shipped, write_metrics
    s, paths = st.spec, outputs(recipe, out)
    target = paths[st.name]
    if target.exists():
        shutil.rmtree(target)
    save_shipped(checkpoint_of(recipe, out, s["ckpt"]), target, s.get("n_action_steps"),
                 s.get("dtype", "fp16"))
    summary = None
    if s.get("eval"):
        ev = s["eval"]
        summary = evaluate(str(target), recipe.env, ev["episodes"], str(out / f"{st.name}.eval"),
                           seed=ev.get("seed", 100000), n_gifs=ev.get("gifs", 0),
                           data=str(paths[ev["data"]]) if ev.get("data") else None)
    metrics = write_metrics(target, recipe.env, summary, s.get("check_seeds", CHECK_SEEDS))
    return {"eval": _headline(summary or {}), "check": metrics["check_3_seeds"]}


def _headline(summary: dict) -> dict:
    keys = ("episodes", "first_seed", "n_action_steps", "score", "success_rate")
    head = {k: summary[k] for k in keys if k in summary}
    if "dynamics" in summary:
        head["dynamics"] = summary["dynamics"]
    return head


RUNNERS = {"dataset": _run_dataset, "collect": _run_collect, "train": _run_train,
           "eval": _run_eval, "ship": _run_ship}
