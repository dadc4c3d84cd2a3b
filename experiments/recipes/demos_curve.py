"""Score against demonstrations along one recipe run: every policy head refit of the chain (each
trained on the demos collected so far), shipped the way the run's final file was and played on
that file's evaluation seeds.

A recipe such as configs/pusht.yaml refits its policy head each time its data grows (at
`--budget cpu`: 50, 100, 150, then 250 demos, the backbone trained on the first 50). Each head
refit's final weights are shipped like the run's last ship stage (its executed steps, DDIM steps
and fp16) and scored by `uva eval` on the seeds of that stage's evaluation and of every eval stage
of the shipped file; the final file's own evaluations are read, not replayed. With several runs
(e.g. a variant of variant.py beside the plain run), each point is paired seed by seed with the
first run's at the same number of demos. Writes JSON (every point's per-episode scores) and a
PNG. Resumable: an evaluation already written is read, not played again.

`--fill` adds a point at every collection the chain grows its data through without refitting a
head on it (at `--budget cpu`, the 200 demos of `demos_1800`): a head refit trained beside the
run with the spec and init of the chain's next policy head refit, only its data changed, so the
point differs from the next one by the demos alone. It trains under `--work`, resumable.

`--peer NAME=EVAL_JSON[,...]` adds another policy's evaluations on the same seeds (LeRobot's
Diffusion Policy scored by experiments/lerobot_peer/run.py eval), each trained on one of the first
run's collections: its points sit at those demos and are paired with the first run's like a run's.

    python experiments/recipes/demos_curve.py --run UVA=runs/pusht_cpu6k \
        --run UVA-action=runs/pusht_cpu6k_action --fill \
        --peer "LeRobot DP=dp200_seeds100000.json,dp200_seeds200000.json,dp250_..." \
        --out experiments/recipes/demos_curve_cpu.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def final_ship(doc: dict) -> tuple[dict, list[tuple[str, int, int]]]:
    """The run's last evaluated ship stage and the (folder, first seed, episodes) of its
    evaluations: the stage's own and every eval stage of the file it ships."""
    ships = [s for s in doc["stages"] if s["kind"] == "ship" and s.get("eval")]
    if not ships:
        raise SystemExit("the run's recipe has no evaluated ship stage")
    ship = ships[-1]
    blocks = [(f"{ship['name']}.eval", ship["eval"].get("seed", 100000), ship["eval"]["episodes"])]
    blocks += [(s["name"], s.get("seed", 100000), s["episodes"]) for s in doc["stages"]
               if s["kind"] == "eval" and s["ckpt"] == ship["name"]]
    return ship, blocks


def policy_heads(doc: dict) -> list[dict]:
    """The chain's policy head refits, in order."""
    return [s for s in doc["stages"] if s.get("stage") == "head"
            and list(s.get("modes") or []) == ["policy_model"]]


def fills(doc: dict) -> list[dict]:
    """A head refit for every collection no policy head of the chain trains on: the next policy
    head refit's spec (its init, steps, batch, lr, selection) with that collection as its data."""
    heads, out = policy_heads(doc), []
    for i, st in enumerate(doc["stages"]):
        if st["kind"] != "collect" or any(h["data"] == st["name"] for h in heads):
            continue
        later = [h for h in heads if doc["stages"].index(h) > i]
        if later:
            out.append({**later[0], "name": f"{later[0]['name']}_on_{st['name']}",
                        "data": st["name"], "filled": True})
    return out


def train_fill(run: Path, doc: dict, state: dict, head: dict, work: Path,
               device: str = "cpu") -> tuple[str, float]:
    """Train a filled-in head refit under `work` (resumable); its final checkpoint and wall s.
    `doc` and `state` are the run's recipe.json and recipe_state.json."""
    from uva.fsutil import atomic_write_json
    from uva.recipe import Recipe, Stage
    from uva.recipe_run import run_train_stage

    root = work / f"{head['name']}.train"
    done = root / "fill.json"
    if done.exists():
        rec = json.loads(done.read_text())
        return rec["final"], rec["wall_s"]
    missing = [head["init"], head["data"]]
    if any(m not in state["stages"] for m in missing):
        raise SystemExit(f"{run} has not finished {missing}")
    stage = lambda s: Stage(s["name"], s["kind"], {k: v for k, v in s.items()
                                                   if k not in ("name", "kind", "filled")})
    recipe = Recipe(name=state["recipe"],
                    env=doc["env"], path=Path(doc["file"]), model=doc.get("model") or {},
                    stages=[stage(s) for s in doc["stages"]] + [stage(head)], budgets={},
                    budget=doc.get("budget"))
    t0 = time.time()
    final = run_train_stage(recipe, recipe.stage(head["name"]), run, device, root=root)["final"]
    wall = round(time.time() - t0, 1)
    atomic_write_json(done, {"final": str(final), "wall_s": wall, "spec": head})
    return str(final), wall


def _point(rows: list[dict], **fields) -> dict:
    """One point of a curve: its fields, then the score of its episodes (mean, s.e., successes)
    and the episodes themselves."""
    scores = torch.tensor([r["score"] for r in rows], dtype=torch.float64)
    return {**fields, "episodes": len(rows), "score": float(scores.mean()),
            "score_se": float(scores.std() / len(rows) ** 0.5),
            "successes": int(sum(bool(r["success"]) for r in rows)),
            "per_episode": [{k: r[k] for k in ("seed", "score", "success")} for r in rows]}


def peer_points(run: Path, evals: list[Path]) -> list[dict]:
    """Another policy's points from its evaluation JSONs (experiments/lerobot_peer/run.py eval):
    grouped by the demos each trained on, which must be one of `run`'s collections, every group
    one checkpoint scored on exactly the seed blocks of `run`'s final file."""
    doc = json.loads((run / "recipe.json").read_text())
    state = json.loads((run / "recipe_state.json").read_text())["stages"]
    want = sorted((seed, n) for _, seed, n in final_ship(doc)[1])
    groups: dict[str, list[tuple[Path, dict]]] = {}
    for path in evals:
        r = json.loads(path.read_text())
        data = Path((r.get("training") or {}).get("data") or "")
        name = data.name.removesuffix(".zarr")
        if (data.parent.resolve() != run.resolve() or name not in state
                or state[name]["kind"] != "collect"):
            raise SystemExit(f"{path} trained on {data or 'unnamed data'}, not on one of {run}'s "
                             "collections")
        groups.setdefault(name, []).append((path, r))
    points = []
    for name, group in groups.items():
        group.sort(key=lambda g: g[1]["first_seed"])
        got = [(r["first_seed"], r["episodes"]) for _, r in group]
        if got != want:
            raise SystemExit(f"the evaluations of the policy trained on {name} cover seeds "
                             f"(first, episodes) {got}, the curve's are {want}")
        if len({r["ckpt"] for _, r in group}) != 1:
            raise SystemExit(f"the evaluations of the policy trained on {name} are of different "
                             f"checkpoints: {sorted({r['ckpt'] for _, r in group})}")
        t = group[0][1].get("training") or {}
        points.append(_point([e for _, r in group for e in r["per_episode"]], stage=name,
                             demos=state[name]["result"]["episodes"],
                             training_steps=t.get("steps"), wall_s=t.get("wall_s"),
                             seeds=[s for s, _ in want], evals=[str(p) for p, _ in group]))
    return sorted(points, key=lambda p: p["demos"])


def curve(run: Path, work: Path, fill: bool = False, device: str = "cpu") -> list[dict]:
    from uva.evaluate import evaluate
    from uva.ship import save_shipped

    doc = json.loads((run / "recipe.json").read_text())
    run_state = json.loads((run / "recipe_state.json").read_text())
    state = run_state["stages"]
    ship, blocks = final_ship(doc)
    missing = [s["name"] for s in policy_heads(doc) + [ship] if s["name"] not in state]
    if missing:
        raise SystemExit(f"{run} has not finished {missing}")
    heads = policy_heads(doc) + (fills(doc) if fill else [])
    points = []
    for head in sorted(heads, key=lambda h: state[h["data"]]["result"]["episodes"]):
        rows, extra = [], {}
        if head["name"] == ship["ckpt"]:  # the final file: its own evaluations
            for folder, _, _ in blocks:
                rows += json.loads((run / folder / "eval.json").read_text())["per_episode"]
        else:
            target = work / head["name"]
            if head.get("filled"):
                final, wall = train_fill(run, doc, run_state, head, work, device)
                extra = {"filled": True, "init": head["init"], "wall_s": wall}
            else:
                final = state[head["name"]]["result"]["final"]
            if not (target / "config.json").exists():
                save_shipped(final, target,
                             ship.get("n_action_steps"), ship.get("dtype", "fp16"),
                             ship.get("action_inference_steps"))
            for _, seed, episodes in blocks:
                out = work / f"{head['name']}.seed{seed}"
                if not (out / "eval.json").exists():
                    evaluate(str(target), doc["env"], episodes, str(out), seed=seed, n_gifs=0)
                rows += json.loads((out / "eval.json").read_text())["per_episode"]
        points.append(_point(rows, stage=head["name"],
                             demos=state[head["data"]]["result"]["episodes"],
                             head_steps=head["steps"], seeds=[b[1] for b in blocks], **extra))
        print(f"{run} {head['name']}: {points[-1]['demos']} demos, score "
              f"{points[-1]['score']:.3f} ± {points[-1]['score_se']:.3f}")
    return points


def plot(result: dict, png: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    runs = result["runs"]
    span = max(p["demos"] for r in runs.values() for p in r["points"])
    for i, (name, r) in enumerate(runs.items()):
        pts, dx = r["points"], (i - (len(runs) - 1) / 2) * 0.01 * span  # side by side, not hidden
        line = ax.errorbar([p["demos"] + dx for p in pts], [p["score"] for p in pts],
                           yerr=[p["score_se"] for p in pts], marker="s" if r.get("peer") else "o",
                           capsize=3, label=name,
                           markevery=[j for j, p in enumerate(pts) if not p.get("filled")])
        fill = [p for p in pts if p.get("filled")]
        if fill:  # refits beside the run (--fill): open markers
            ax.plot([p["demos"] + dx for p in fill], [p["score"] for p in fill], "o",
                    color=line[0].get_color(), mfc="white", zorder=3,
                    label="head refit beside the run (--fill)" if i == 0 else None)
    ax.set_xlabel("demonstrations the policy (head) trained on")
    ax.set_ylabel(f"{result['env']} score (mean ± s.e., {result['episodes']} seeds)")
    ax.set_title(f"{result['env']}: score against demos along the recipe run")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", action="append", required=True, metavar="NAME=RUN_DIR",
                    help="a finished recipe run; the first is the reference of the pairs")
    ap.add_argument("--out", type=Path, required=True, help="JSON; the PNG is written beside it")
    ap.add_argument("--work", type=Path, default=Path("outputs/demos_curve"),
                    help="where the shipped head refits and their evaluations go")
    ap.add_argument("--fill", action="store_true",
                    help="also refit a head on every collection the chain does not refit on")
    ap.add_argument("--peer", action="append", default=[], metavar="NAME=EVAL_JSON[,EVAL_JSON...]",
                    help="another policy's evaluations on the final file's seeds, each trained on "
                         "one of the first run's collections; repeatable")
    ap.add_argument("--device", default="cpu", help="where --fill trains")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    from uva.evaluate import paired_scores

    torch.set_num_threads(a.threads)
    runs = dict(r.partition("=")[::2] for r in a.run)
    if any(not k or not v for k, v in runs.items()) or len(runs) != len(a.run):
        ap.error("--run wants distinct NAME=RUN_DIR")
    envs = {json.loads((Path(d) / "recipe.json").read_text())["env"] for d in runs.values()}
    if len(envs) != 1:
        ap.error(f"the runs are of different envs: {sorted(envs)}")
    result = {"question": "score against the demos each policy head refit trained on, along "
                          "the recipe run", "env": envs.pop(), "runs": {}, "paired": {}}
    for name, d in runs.items():
        result["runs"][name] = {"dir": d, "points": curve(Path(d), a.work / Path(d).name,
                                                                a.fill, a.device)}
    for item in a.peer:
        name, _, paths = item.partition("=")
        if not name or not paths or name in result["runs"]:
            ap.error(f"--peer wants NAME=EVAL_JSON[,...] with a name no run has, got {item!r}")
        evals = [Path(p) for p in paths.split(",")]
        result["runs"][name] = {"peer": True, "evals": [str(p) for p in evals],
                                "points": peer_points(Path(runs[next(iter(runs))]), evals)}
    result["episodes"] = min(p["episodes"] for r in result["runs"].values() for p in r["points"])
    ref_name, *others = result["runs"]
    ref = {p["demos"]: p for p in result["runs"][ref_name]["points"]}
    for name in others:
        result["paired"][f"{name} - {ref_name}"] = [
            {"demos": p["demos"], **paired_scores(ref[p["demos"]]["per_episode"], p["per_episode"])}
            for p in result["runs"][name]["points"] if p["demos"] in ref]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    plot(result, a.out.with_suffix(".png"))
    for key, rows in result["paired"].items():
        for r in rows:
            print(f"{key} at {r['demos']} demos: {r['paired_diff']:+.3f} ± {r['paired_diff_se']:.3f}")
    print(f"wrote {a.out} and {a.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
