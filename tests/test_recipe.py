"""Recipes (configs/*.yaml): they validate, they describe the shipped files, and the PushT one
runs every stage end to end on its tiny budget, resumably."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from uva import UVAConfig
from uva.checkpoint import read_config
from uva.cli import main as uva_main
from uva.recipe import RecipeError, load_recipe, plan, with_budget
from uva.recipe_run import run_recipe

ROOT = Path(__file__).resolve().parents[1]
RECIPES = {env: ROOT / "configs" / f"{env}.yaml" for env in ("pusht", "panda")}
ARCH_FIELDS_SET_BY_DATA = ("latent_scale", "action_dim", "proprio_dim", "image_size")


def _experiment(rel: str):
    """A script of experiments/ as a module."""
    spec = importlib.util.spec_from_file_location(Path(rel).stem, ROOT / "experiments" / rel)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _chain(recipe, name):
    """The checkpoint stages the named stage descends from, oldest first."""
    st = recipe.stage(name)
    src = st.spec.get("ckpt") or st.spec.get("init") or st.spec.get("vae_from")
    return (_chain(recipe, src) if src else []) + [st]


@pytest.mark.parametrize("env", ["pusht", "panda"])
def test_recipe_rebuilds_the_shipped_architecture(env):
    """Following the recipe's chain from UVAConfig's defaults (+ its `model:`) through every
    stage's config overrides and the ship step gives the shipped file's config, field by field."""
    recipe = load_recipe(RECIPES[env])
    shipped_cfg, _, meta = read_config(ROOT / "models" / "checkpoints" / env)
    ship = [s for s in recipe.stages if s.kind == "ship"][-1]
    chain = _chain(recipe, ship.name)
    assert chain[0].spec["stage"] == "vae"
    fields = {**recipe.model}
    for st in chain:
        fields.update(st.spec.get("config") or {})
        if st.kind == "ship":  # what a ship stage stores in the config
            fields.update({k: st.spec[k] for k in ("n_action_steps", "action_inference_steps")
                           if st.spec.get(k)})
    data = {k: getattr(shipped_cfg, k) for k in ARCH_FIELDS_SET_BY_DATA}
    rebuilt = UVAConfig(**{**fields, **data})
    assert rebuilt == shipped_cfg, {k: (getattr(rebuilt, k), getattr(shipped_cfg, k))
                                    for k in rebuilt.to_dict()
                                    if getattr(rebuilt, k) != getattr(shipped_cfg, k)}
    joint_steps = sum(s.spec["steps"] for s in chain if s.kind == "train" and
                      s.spec["stage"] == "joint")
    assert joint_steps == meta.get("backbone_total_steps", meta["total_steps"])
    # the last head refit is the one the shipped file records
    heads = [s for s in chain if s.kind == "train" and s.spec["stage"] == "head"]
    if heads:  # the shipped file records the last refit of its chain (paths are not shipped)
        assert "head_of" not in meta and meta["stage"] == "head"
        assert heads[-1].spec["steps"] == meta["steps"]
        assert {h.spec["modes"][0] for h in heads} == {"policy_model", "inverse_model"}
    # the data the last stage trained on holds as many episodes as the shipped split implies
    data_stage = recipe.stage(chain[-2].spec["data"])
    episodes = data_stage.spec["episodes"]
    while data_stage.spec.get("base"):
        data_stage = recipe.stage(data_stage.spec["base"])
        episodes += data_stage.spec["episodes"]
    assert max(meta["val_episodes"]) < episodes <= max(meta["val_episodes"]) + 10


def test_recipe_errors_name_the_key_and_the_file(tmp_path):
    good = RECIPES["pusht"].read_text()
    cases = {
        "top.yaml": (good + "\nepochs: 3\n", "unknown key 'epochs'"),
        "stage.yaml": (good.replace("steps: 200,", "stpes: 200,", 1), "unknown key 'stpes'"),
        "model.yaml": (good.replace("model: {}", "model: {widht: 3}"), "unknown key 'widht'"),
        "ref.yaml": (good.replace("init: backbone", "init: nowhere"), "init 'nowhere'"),
        "kind.yaml": (good.replace("kind: ship", "kind: deploy", 1), "unknown kind 'deploy'"),
        "steps.yaml": (good.replace("steps: 4642", "steps: -1"), "steps must be a positive"),
        "budget.yaml": (good.replace("batch_size: {vae: 32,", "batch_size: {vea: 32,"),
                        "budgets.cpu.batch_size: keys must be train stages"),
        "ddim.yaml": (good.replace("action_inference_steps: 20", "action_inference_steps: 0"),
                      "action_inference_steps must be a positive integer"),
        "minutes.yaml": (good.replace("max_minutes: 60", "max_minutes: 0"),
                         "budgets.cpu.max_minutes: a positive number"),
        "cams.yaml": (good.replace("episodes: 200, seed: 0}", "episodes: 200, seed: 0, cameras: scene}"),
                      "cameras must be a list"),
        "wrist.yaml": (good.replace("episodes: 200, seed: 0}", "episodes: 200, seed: 0, cameras: [scene, wrist]}"),
                       "stage 'demos_200': env 'pusht' renders cameras ['scene']"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(RecipeError) as e:
            load_recipe(path)
        assert str(path) in str(e.value) and message in str(e.value), (name, e.value)
    with pytest.raises(RecipeError, match="no budget 'huge'"):
        with_budget(load_recipe(RECIPES["pusht"]), "huge")
    # the command line reports it as an error, with no traceback
    (tmp_path / "bad.yaml").write_text(good + "\nepochs: 3\n")
    assert uva_main(["train", "--recipe", str(tmp_path / "bad.yaml"), "--plan"]) == 2


def test_budget_caps_every_stage_and_plan_tracks_state(tmp_path):
    full = load_recipe(RECIPES["pusht"])
    tiny = with_budget(full, "tiny")
    assert [s.name for s in tiny.stages] == [s.name for s in full.stages]
    for st in tiny.stages:
        if st.kind == "collect":
            assert st.spec["episodes"] == 2 and st.spec.get("workers", 1) == 1
        if st.kind == "train":
            assert st.spec["steps"] == 2 and st.spec.get("batch_size", 4) <= 4
    assert tiny.model["width"] == 64 and full.model == {}
    # per-stage caps: the cpu budget shrinks the backbone's batch but not the heads', and its
    # wall-time cap replaces the recipe's (a GPU's minutes)
    cpu = {st.name: st.spec for st in with_budget(full, "cpu").stages}
    written = {st.name: st.spec for st in full.stages}
    assert written["vae"]["max_minutes"] < 2 and cpu["vae"]["max_minutes"] == 60
    assert cpu["joint"]["batch_size"] == 32 and cpu["joint"]["steps"] == 1500
    assert cpu["head_200"]["batch_size"] == written["head_200"]["batch_size"] == 256
    assert cpu["video"]["steps"] == written["video"]["steps"] == 200
    out = tmp_path / "run"
    rows = plan(tiny, out)
    assert {r["status"] for r in rows} == {"todo"}
    # a finished stage is skipped; one whose spec changed since is refused
    state = {"recipe": "pusht", "budget": "tiny",
             "stages": {rows[0]["name"]: {"spec": rows[0]["spec"]}}}
    out.mkdir()
    (out / "recipe_state.json").write_text(json.dumps(state))
    (out / "vae" / "vae").mkdir(parents=True)  # checkpoints of an interrupted train stage
    status = {r["name"]: r["status"] for r in plan(tiny, out)}
    assert status["demos_200"] == "done" and status["vae"] == "resume" and status["video"] == "todo"
    changed = dataclasses.replace(tiny.stages[0], spec={**tiny.stages[0].spec, "seed": 5})
    with pytest.raises(RecipeError, match="another spec"):
        plan(dataclasses.replace(tiny, stages=[changed] + tiny.stages[1:]), out)
    with pytest.raises(RecipeError, match="budget"):
        plan(full, out)  # a tiny run's folder is not the full recipe's
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x").write_text("x")
    with pytest.raises(RecipeError, match="not a run of a recipe"):
        plan(tiny, tmp_path / "junk")


def test_a_two_camera_recipe_collects_trains_and_ships_both_cameras(tmp_path):
    """A collect stage records the cameras it names; the model takes both; the ship stage's
    evaluation, closed-loop check and open-loop check run on both (its stored check reproduces)."""
    from PIL import Image
    from uva import load_policy
    from uva.checks import compare_open_loop, strip_to_frames
    from uva.data import read_replay_buffer
    from uva.envs import make_env_for
    path = tmp_path / "two_cameras.yaml"
    path.write_text("""recipe: two_cameras
env: panda
model: {cameras: [scene, wrist], n_action_steps: 8, width: 64, encoder_depth: 1, decoder_depth: 1,
        num_heads: 2, video_head_width: 64, video_head_depth: 2, action_head_width: 64,
        action_head_depth: 2, action_conv_channels: 16, vae_block_channels: [16, 16, 16, 16],
        dropout: 0.0}
stages:
  - {name: demos, kind: collect, episodes: 2, seed: 0, cameras: [scene, wrist]}
  - {name: vae, kind: train, stage: vae, data: demos, steps: 2, batch_size: 4}
  - {name: joint, kind: train, stage: joint, data: demos, init: vae, steps: 2, batch_size: 4}
  - name: shipped
    kind: ship
    ckpt: joint
    eval: {episodes: 1, seed: 100000, gifs: 0, data: demos, dynamics_windows: 2}
    check_seeds: [100000]
""")
    out = tmp_path / "run"
    assert uva_main(["train", "--recipe", str(path), "--out", str(out)]) == 0
    buf = read_replay_buffer(out / "demos.zarr")
    assert buf.cameras == ["scene", "wrist"] and buf.n_episodes == 2
    assert not np.array_equal(buf.images["scene"], buf.images["wrist"])
    policy = load_policy(out / "shipped", precision="fp32")
    assert policy.cfg.cameras == ["scene", "wrist"]
    metrics = json.loads((out / "shipped" / "metrics.json").read_text())
    assert metrics["eval"]["episodes"] == 1 and metrics["check_3_seeds"]["seeds"] == [100000]
    strip = np.asarray(Image.open(out / "shipped" / "check_video.png"))
    size = policy.cfg.image_size
    assert strip.shape == (2 * size, policy.cfg.n_frames * size, 3)  # a row per camera
    env = make_env_for("panda", policy.cfg.cameras)
    try:
        again = compare_open_loop(policy, env, metrics["check_open_loop"],
                                  strip_to_frames(strip, policy.cfg.n_frames))
    finally:
        env.close()
    assert again["ok"], again


def test_pusht_recipe_runs_every_stage_on_the_tiny_budget(tmp_path, capsys, monkeypatch):
    """Collect x5 (with --base), vae, video, joint x2, head refits (policy, inverse split),
    intermediate fp16 ships, the final ship with its evaluation and check, the fresh-seed eval."""
    out = tmp_path / "pusht_tiny"
    t0 = time.time()
    result = run_recipe(RECIPES["pusht"], out, budget="tiny")
    first_run_s = time.time() - t0
    recipe = load_recipe(RECIPES["pusht"])
    state = json.loads((out / "recipe_state.json").read_text())
    assert sorted(state["stages"]) == sorted(s.name for s in recipe.stages)
    shipped = Path(result["shipped"])
    assert shipped == out / "pusht"
    cfg, _, meta = read_config(shipped)
    assert cfg.n_action_steps == 4 and cfg.inverse_action_head and cfg.width == 64
    # the ship stage stores the recipe's DDIM steps; the file's own evaluation sampled with them
    final_ship = recipe.stage("pusht").spec
    assert cfg.action_inference_steps == final_ship["action_inference_steps"] != 10
    assert read_config(out / "head_2400" / "head" / "final")[0].action_inference_steps == 10
    assert meta["stage"] == "head" and "head_of" not in meta  # no training-machine paths
    assert "check_open_loop" in json.loads((shipped / "metrics.json").read_text())
    metrics = json.loads((shipped / "metrics.json").read_text())
    assert metrics["eval"]["episodes"] == 1 and "dynamics" in metrics["eval"]
    assert metrics["eval"]["action_inference_steps"] == cfg.action_inference_steps
    assert metrics["check_3_seeds"]["seeds"] == [100000]
    assert 0.0 <= metrics["check_3_seeds"]["scores"][0] <= 1.0
    demos = json.loads((out / "demos_2400.zarr.json").read_text())
    assert demos["episodes"] == 10 and demos["base_episodes"] == 8
    fresh = json.loads((out / "fresh_seeds" / "eval.json").read_text())
    assert fresh["first_seed"] == 200000 and fresh["n_action_steps"] == 4
    # a head refit beside the finished run on the collection the chain grows through without
    # refitting (experiments/recipes/demos_curve.py --fill): the next refit's spec and init, its
    # data alone changed, trained outside the run folder, which stays as it was
    curve = _experiment("recipes/demos_curve.py")
    doc = json.loads((out / "recipe.json").read_text())
    (fill,) = curve.fills(doc)
    nxt = next(s for s in doc["stages"] if s["name"] == "head_2400")
    assert (fill["data"], fill["init"]) == ("demos_1800", nxt["init"])
    assert {k: v for k, v in fill.items() if k not in ("name", "data", "filled")} == \
        {k: v for k, v in nxt.items() if k not in ("name", "data")}
    final, _ = curve.train_fill(out, doc, state, fill, tmp_path / "curve")
    assert (Path(final) / "config.json").is_file() and tmp_path / "curve" in Path(final).parents
    summary = json.loads((Path(final).parents[1] / "train_summary.json").read_text())
    assert summary["data"] == str(out / "demos_1800.zarr")
    assert json.loads((out / "recipe_state.json").read_text()) == state
    assert curve.train_fill(out, doc, state, fill, tmp_path / "curve")[0] == final
    # rerun: everything is finished, nothing runs again
    capsys.readouterr()
    t0 = time.time()
    run_recipe(RECIPES["pusht"], out, budget="tiny")
    log = capsys.readouterr().out
    assert log.count("done, skipped") == len(recipe.stages) and "running" not in log
    assert time.time() - t0 < max(10.0, first_run_s / 5)
    # an interrupted last stage (no state entry) is run again, alone
    del state["stages"]["fresh_seeds"]
    (out / "recipe_state.json").write_text(json.dumps(state))
    (out / "fresh_seeds" / "eval.json").unlink()
    run_recipe(RECIPES["pusht"], out, budget="tiny")
    log = capsys.readouterr().out
    assert log.count("done, skipped") == len(recipe.stages) - 1
    assert json.loads((out / "fresh_seeds" / "eval.json").read_text())["first_seed"] == 200000
    # a train stage stopped before its first checkpoint (only its log written) starts over, and
    # what follows it runs again
    names = [s.name for s in recipe.stages]
    later = names[names.index("head_2400"):]
    state = json.loads((out / "recipe_state.json").read_text())
    for name in later:
        state["stages"].pop(name, None)
    (out / "recipe_state.json").write_text(json.dumps(state))
    shutil.rmtree(out / "head_2400" / "head")
    (out / "head_2400" / "head").mkdir()
    (out / "head_2400" / "head" / "log.jsonl").write_text('{"step": 1}\n')
    run_recipe(RECIPES["pusht"], out, budget="tiny")
    log = capsys.readouterr().out
    assert log.count("done, skipped") == len(recipe.stages) - len(later)
    assert (out / "head_2400" / "head" / "final" / "config.json").is_file()
    assert sorted(json.loads((out / "recipe_state.json").read_text())["stages"]) == sorted(names)
    # a variant of the finished run (experiments/recipes/variant.py): the backbone continued on
    # the last head refit's demos before it. It keeps every stage it cannot touch from the run
    # and runs the rest: the added joint stage, its ship, the last refit and what follows.
    variant = _experiment("recipes/variant.py")
    other, other_recipe = tmp_path / "backbone_data", tmp_path / "backbone_data.yaml"
    args = ["prepare", "--variant", "backbone-data", "--plain", str(out), "--out", str(other),
            "--recipe-out", str(other_recipe)]
    monkeypatch.setattr("sys.argv", ["variant.py", *args])
    variant.main()
    changed = load_recipe(other_recipe)
    assert [s.name for s in changed.stages][names.index("head_2400"):][:3] == \
        ["joint_more_on_demos_2400", "backbone_on_demos_2400", "head_2400"]
    joint = changed.stage("joint_more_on_demos_2400").spec
    assert (joint["data"], joint["init"], joint["steps"]) == \
        ("demos_2400", "joint_more", recipe.stage("joint_more").spec["steps"])
    assert changed.stage("head_2400").spec["init"] == "backbone_on_demos_2400"
    kept = json.loads((other / "recipe_state.json").read_text())["stages"]
    assert sorted(kept) == sorted(names[:names.index("head_2400")])
    run_recipe(other_recipe, other, budget="tiny")
    log = capsys.readouterr().out
    assert log.count("done, skipped") == len(kept)
    summary = json.loads((other / "joint_more_on_demos_2400" / "train_summary.json").read_text())
    assert summary["data"] == str(other / "demos_2400.zarr")
    assert (other / "fresh_seeds" / "eval.json").is_file()
    monkeypatch.setattr("sys.argv", ["variant.py", "prepare", "--variant", "backbone-data",
                                     "--joint-data", "fresh_seeds", "--plain", str(out), "--out",
                                     str(tmp_path / "bad"), "--recipe-out", str(tmp_path / "b.yml")])
    with pytest.raises(SystemExit, match="not a collection before the last head refit"):
        variant.main()


def test_demos_curve_takes_a_peers_evaluations_on_the_runs_demos_and_seeds(tmp_path, monkeypatch):
    """experiments/recipes/demos_curve.py --peer: another policy's evaluations become points at
    the demos of the run's collection each trained on; other data, other seeds or evaluations of
    two checkpoints in one point are refused."""
    curve = _experiment("recipes/demos_curve.py")
    monkeypatch.chdir(tmp_path)
    run = Path("runs/task")
    run.mkdir(parents=True)
    (run / "recipe.json").write_text(json.dumps({"env": "pusht", "stages": [
        {"name": "demos_a", "kind": "collect"}, {"name": "demos_b", "kind": "collect"},
        {"name": "head", "kind": "train", "stage": "head", "modes": ["policy_model"]},
        {"name": "task", "kind": "ship", "ckpt": "head", "eval": {"episodes": 3, "seed": 100}},
        {"name": "fresh", "kind": "eval", "ckpt": "task", "seed": 200, "episodes": 3}]}))
    (run / "recipe_state.json").write_text(json.dumps({"stages": {
        "demos_a": {"kind": "collect", "result": {"episodes": 50}},
        "demos_b": {"kind": "collect", "result": {"episodes": 100}},
        "head": {"kind": "train", "result": {}}}}))
    rng = np.random.default_rng(0)

    def peer_eval(data: str, first: int, ckpt: str = "dp/last", n: int = 3) -> Path:
        rows = [{"seed": first + i, "score": float(rng.random()), "success": bool(i == 0),
                 "steps": 10} for i in range(n)]
        path = tmp_path / f"dp_{Path(data).stem}_{first}_{len(list(tmp_path.glob('dp_*')))}.json"
        path.write_text(json.dumps({"ckpt": ckpt, "first_seed": first, "episodes": n,
                                    "training": {"data": data, "steps": 800, "wall_s": 60.0},
                                    "per_episode": rows}))
        return path

    evals = [peer_eval("runs/task/demos_b.zarr", 200), peer_eval("runs/task/demos_b.zarr", 100),
             peer_eval("runs/task/demos_a.zarr", 100), peer_eval("runs/task/demos_a.zarr", 200)]
    points = curve.peer_points(run, evals)
    assert [p["demos"] for p in points] == [50, 100]
    b = points[1]
    rows = [e for p in (evals[1], evals[0]) for e in json.loads(p.read_text())["per_episode"]]
    assert [e["seed"] for e in b["per_episode"]] == [100, 101, 102, 200, 201, 202]
    assert b["score"] == pytest.approx(np.mean([e["score"] for e in rows]))
    assert b["successes"] == 2 and b["episodes"] == 6 and b["training_steps"] == 800
    assert b["evals"] == [str(evals[1]), str(evals[0])]
    with pytest.raises(SystemExit, match="not on one of"):  # demos of another run
        curve.peer_points(run, [peer_eval("runs/other/demos_a.zarr", 100)])
    with pytest.raises(SystemExit, match="not on one of"):  # a stage that is no collection
        curve.peer_points(run, [peer_eval("runs/task/head.zarr", 100)])
    with pytest.raises(SystemExit, match="cover seeds"):  # one block missing
        curve.peer_points(run, [peer_eval("runs/task/demos_a.zarr", 100)])
    with pytest.raises(SystemExit, match="cover seeds"):  # a block of other length
        curve.peer_points(run, [peer_eval("runs/task/demos_a.zarr", 100),
                                peer_eval("runs/task/demos_a.zarr", 200, n=2)])
    with pytest.raises(SystemExit, match="different checkpoints"):
        curve.peer_points(run, [peer_eval("runs/task/demos_a.zarr", 100),
                                peer_eval("runs/task/demos_a.zarr", 200, ckpt="dp/step_1000")])
