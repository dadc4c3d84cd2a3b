"""Running a recipe (uva.recipe): every stage in order under one output folder, resumable.

Each stage kind maps onto an existing tool: collect -> uva.collect.collect, train ->
uva.training.train (always with resume, so an interrupted stage continues from its last
checkpoint), eval -> uva.evaluate.evaluate, ship -> uva.ship. A finished stage is recorded in
recipe_state.json with the spec it ran and skipped on the next run; an interrupted
collect/eval/ship stage is redone.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from .rundir import stage_resumable
from .fsutil import atomic_write_json
from .recipe import (STATE_FILE, Recipe, checkpoint_of, dependencies, effective_spec,
                     load_recipe, outputs, plan, read_state, with_budget)


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
    state = read_state(recipe, out)
    atomic_write_json(out / "recipe.json", {"file": str(recipe.path), "budget": budget,
                                            "env": recipe.env, "model": recipe.model,
                                            "stages": [{"name": r["name"], "kind": r["kind"],
                                                        **r["spec"]} for r in rows]})
    ran: set[str] = set()
    for i, row in enumerate(rows, 1):
        st = recipe.stage(row["name"])
        tag = f"[recipe {recipe.name}] {i}/{len(rows)} {row['kind']} '{row['name']}'"
        stale = bool(dependencies(st) & ran)  # reads a stage that was just made again
        if row["status"] == "done" and not stale:
            print(f"{tag}: done, skipped", flush=True)
            continue
        if stale and row["kind"] == "train" and Path(row["output"]).exists():
            shutil.rmtree(row["output"])  # its checkpoints came from the old inputs
        resuming = row["status"] == "resume" and not stale
        print(f"{tag}: {'resuming' if resuming else 'running'}", flush=True)
        t0 = time.time()
        result = RUNNERS[row["kind"]](recipe, st, out, device)
        ran.add(row["name"])
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
    from .collect import collect
    s, target = st.spec, outputs(recipe, out)[st.name]
    if target.exists():  # an interrupted collection: collected again from its seeds
        shutil.rmtree(target)
    base = str(outputs(recipe, out)[s["base"]]) if s.get("base") else None
    summary = collect(recipe.env, s["episodes"], target, image_size=s.get("image_size", 64),
                      keep_failures=s.get("keep_failures", False), seed=s.get("seed", 0),
                      base=base, workers=s.get("workers", 1), cameras=s.get("cameras"))
    atomic_write_json(Path(str(target) + ".json"), summary)
    return {k: v for k, v in summary.items() if k != "seeds"}


def run_train_stage(recipe: Recipe, st, out: Path, device: str, root: Path | None = None) -> dict:
    """Run one train stage of `recipe` whose inputs lie in the run folder `out`, into its own
    folder there or into `root` (a stage trained beside the run, e.g. a head refit on a
    collection the chain does not refit on); resumes from the stage's last checkpoint."""
    from .training import TrainArgs, train
    s, paths = st.spec, outputs(recipe, out)
    root = Path(root) if root is not None else paths[st.name]
    init = str(checkpoint_of(recipe, out, s["init"])) if s.get("init") else None
    vae_from = str(checkpoint_of(recipe, out, s["vae_from"])) if s.get("vae_from") else None
    source = s.get("init") or s.get("vae_from")
    if source:
        _share_caches(_run_root(recipe, out, source), root)
    config = effective_spec(recipe, st).get("config") or {}
    defaults = TrainArgs(data="", out="")
    # continue an interrupted stage from its last checkpoint; one stopped before its first
    # checkpoint (a log, a copied VAE) has nothing to continue from and starts over
    resumable = stage_resumable(root / s["stage"])
    args = TrainArgs(data=str(paths[s["data"]]), out=str(root), stage=s["stage"],
                     steps={**defaults.steps, s["stage"]: s["steps"]},
                     batch_size=s.get("batch_size", defaults.batch_size),
                     lr=s.get("lr", defaults.lr), ckpt_every=s.get("ckpt_every", defaults.ckpt_every),
                     eval_every=s.get("eval_every", defaults.eval_every), seed=s.get("seed", 0),
                     resume=resumable, overwrite=not resumable, device=device, init=init,
                     vae_from=vae_from,
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
    if paths[st.name].exists():  # an interrupted evaluation: evaluated again
        shutil.rmtree(paths[st.name])
    summary = evaluate(str(checkpoint_of(recipe, out, s["ckpt"])), recipe.env, s["episodes"],
                       str(paths[st.name]), seed=s.get("seed", 100000), n_gifs=s.get("gifs", 0),
                       data=str(paths[s["data"]]) if s.get("data") else None,
                       n_action_steps=s.get("action_steps"),
                       action_temperature=s.get("action_temperature"),
                       dynamics_windows=s.get("dynamics_windows", 64))
    return _headline(summary)


def _run_ship(recipe, st, out, device) -> dict:
    from .evaluate import evaluate
    from .ship import CHECK_SEEDS, save_shipped, write_metrics
    s, paths = st.spec, outputs(recipe, out)
    target = paths[st.name]
    for stale in (target, out / f"{st.name}.eval"):  # an interrupted ship: shipped again
        if stale.exists():
            shutil.rmtree(stale)
    save_shipped(checkpoint_of(recipe, out, s["ckpt"]), target, s.get("n_action_steps"),
                 s.get("dtype", "fp16"), s.get("action_inference_steps"))
    summary = None
    if s.get("eval"):
        ev = s["eval"]
        summary = evaluate(str(target), recipe.env, ev["episodes"], str(out / f"{st.name}.eval"),
                           seed=ev.get("seed", 100000), n_gifs=ev.get("gifs", 0),
                           data=str(paths[ev["data"]]) if ev.get("data") else None,
                           dynamics_windows=ev.get("dynamics_windows", 64))
    metrics = write_metrics(target, recipe.env, summary, s.get("check_seeds", CHECK_SEEDS))
    return {"eval": _headline(summary or {}), "check": metrics.get("check_3_seeds")}


def _headline(summary: dict) -> dict:
    keys = ("episodes", "first_seed", "n_action_steps", "score", "success_rate")
    head = {k: summary[k] for k in keys if k in summary}
    if "dynamics" in summary:
        head["dynamics"] = summary["dynamics"]
    return head


RUNNERS = {"dataset": _run_dataset, "collect": _run_collect, "train": run_train_stage,
           "eval": _run_eval, "ship": _run_ship}
