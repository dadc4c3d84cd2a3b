"""Recipes: the whole chain that produces a shipped model, as data (configs/*.yaml).

A recipe names an environment, the model architecture (the fields that differ from UVAConfig's
defaults) and an ordered list of stages, each one call of an existing tool:

  dataset  an existing replay buffer (`path`), used as is
  collect  `uva collect`: expert demos (`episodes`, `seed`, `workers`), or `base` + new ones
  train    `uva train --stage vae|video|joint|head` on a dataset stage's buffer, from `init`
  eval     `uva eval`: closed-loop rollouts on fixed seeds (+ held-out dynamics with `data`)
  ship     an fp16 copy with `n_action_steps` (and `action_inference_steps`), its own evaluation
           and a seed check (uva.ship)

Stages refer to earlier stages by name. Everything is written under one output folder: a
collect stage to `<out>/<name>.zarr`, a train stage's run to `<out>/<name>/` (its checkpoint is
`<out>/<name>/<stage>/final`), an eval to `<out>/<name>/eval.json`, a ship stage's checkpoint to
`<out>/<name>/`. `<out>/recipe_state.json` records each finished stage with the exact spec it
ran, so a rerun skips finished stages, an interrupted train stage resumes through the trainer's
own resume, and an interrupted collect/eval/ship stage is redone (they are deterministic).

The format, its validation, budgets and planning live here; uva.recipe_run runs the stages.
A `budgets:` section names reduced budgets (caps on episodes, steps, batch, evaluation episodes,
check seeds, plus model-size overrides) so every stage of a recipe can run in minutes.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from .config import TASK_MODES, UVAConfig

STATE_FILE = "recipe_state.json"
TOP_KEYS = {"recipe", "env", "description", "model", "budgets", "stages"}
COMMON_KEYS = {"name", "kind", "note"}
KIND_KEYS = {
    "dataset": {"path"},
    "collect": {"episodes", "seed", "workers", "base", "image_size", "keep_failures", "cameras"},
    "train": {"stage", "data", "steps", "init", "vae_from", "modes", "config", "batch_size", "lr",
              "seed", "max_minutes", "ckpt_every", "eval_every", "keep_every"},
    "eval": {"ckpt", "data", "episodes", "seed", "action_steps", "gifs", "action_temperature",
             "dynamics_windows"},
    "ship": {"ckpt", "n_action_steps", "action_inference_steps", "dtype", "eval", "check_seeds"},
}
REQUIRED = {"dataset": {"path"}, "collect": {"episodes"}, "train": {"stage", "data", "steps"},
            "eval": {"ckpt", "episodes"}, "ship": {"ckpt"}}
SHIP_EVAL_KEYS = {"episodes", "seed", "gifs", "data", "dynamics_windows"}
BUDGET_KEYS = {"description", "episodes", "workers", "steps", "batch_size", "max_minutes",
               "eval_episodes", "gifs", "dynamics_windows", "check_seeds", "model"}
PER_STAGE_BUDGET_KEYS = ("steps", "batch_size", "max_minutes")  # a number, or {train stage: number}
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
        for key in PER_STAGE_BUDGET_KEYS:
            _check_per_stage(b.get(key), path, f"budgets.{bname}.{key}")
        _check_model(b.get("model") or {}, path, f"budgets.{bname}.model")
    if not isinstance(doc["stages"], list) or not doc["stages"]:
        raise RecipeError(f"{path}: 'stages' must be a non-empty list")
    stages: list[Stage] = []
    for i, raw in enumerate(doc["stages"]):
        stages.append(_parse_stage(raw, i, stages, path))
    for st in stages:  # the cameras a collection asks for must be ones the env renders
        if st.kind == "collect" and st.spec.get("cameras") is not None:
            from .envs import env_cameras
            try:
                env_cameras(str(doc["env"]), st.spec["cameras"])
            except ValueError as err:
                raise RecipeError(f"{path}: stage '{st.name}': {err}") from None
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
                "keep_every", "action_steps", "gifs", "n_action_steps", "action_inference_steps",
                "image_size", "dynamics_windows"):
        if key in spec and (not isinstance(spec[key], int) or isinstance(spec[key], bool)
                            or spec[key] < (0 if key in ("seed", "gifs") else 1)):
            raise RecipeError(f"{path}: {where}: {key} must be a positive integer, "
                              f"not {spec[key]!r}")
    if kind == "collect":
        ref("base", DATA_KINDS)
        cams = spec.get("cameras")  # which names the env renders: checked in load_recipe
        if cams is not None and not (isinstance(cams, list) and all(isinstance(c, str) for c in cams)):
            raise RecipeError(f"{path}: {where}: cameras must be a list of camera names, "
                              f"not {cams!r}")
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
        if seeds is not None and (not isinstance(seeds, list)
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
            kind = spec["stage"]
            _cap(spec, "steps", _for_stage(b.get("steps"), kind))
            batch = _for_stage(b.get("batch_size"), kind)
            if batch is not None:
                spec["batch_size"] = min(spec.get("batch_size", batch), batch)
            minutes = _for_stage(b.get("max_minutes"), kind)
            if minutes is not None:  # replaces the recipe's: those are wall times of its device
                spec["max_minutes"] = minutes
            for key in ("ckpt_every", "eval_every", "keep_every"):
                _cap(spec, key, spec["steps"] if key in spec else None)
        elif st.kind == "eval":
            _cap_eval(spec, b)
        elif st.kind == "ship":
            if spec.get("eval"):
                _cap_eval(spec["eval"], b)
            if "check_seeds" in b:
                from .ship import CHECK_SEEDS
                spec["check_seeds"] = list(spec.get("check_seeds", CHECK_SEEDS))[:b["check_seeds"]]
        stages.append(Stage(st.name, st.kind, spec))
    return dataclasses.replace(recipe, stages=stages, budget=budget,
                               model={**recipe.model, **(b.get("model") or {})})


def _cap_eval(spec: dict, b: dict) -> None:
    _cap(spec, "episodes", b.get("eval_episodes"))
    _cap(spec, "gifs", b.get("gifs"))
    if spec.get("data") and "dynamics_windows" in b:
        spec["dynamics_windows"] = min(spec.get("dynamics_windows", 64), b["dynamics_windows"])


def _for_stage(value, stage: str):
    """A budget's per-stage value: one number for every train stage, or {stage: number}."""
    return value.get(stage) if isinstance(value, dict) else value


def _check_per_stage(value, path: Path, where: str) -> None:
    if value is None:
        return
    values = value.values() if isinstance(value, dict) else [value]
    if isinstance(value, dict) and set(value) - set(TRAIN_STAGES):
        raise RecipeError(f"{path}: {where}: keys must be train stages {list(TRAIN_STAGES)}, "
                          f"got {sorted(set(value) - set(TRAIN_STAGES))}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in values):
        raise RecipeError(f"{path}: {where}: a positive number or {{stage: positive number}}")


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


def dependencies(st: Stage) -> set[str]:
    """Names of the earlier stages this stage reads (data, base, init, vae_from, ckpt)."""
    refs = [st.spec.get(k) for k in ("data", "base", "init", "vae_from", "ckpt")]
    refs.append((st.spec.get("eval") or {}).get("data"))
    return {r for r in refs if r}


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
    state = read_state(recipe, out)
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


def read_state(recipe: Recipe, out: Path) -> dict:
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
