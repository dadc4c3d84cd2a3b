"""Print the results tables of README.md and docs/few-demos.md (markdown) from the runs' JSON.

    python scripts/results_table.py [--checkpoints DIR]     # the shipped models
    python scripts/results_table.py --few-demos              # PushT: UVA, UVA-action, LeRobot DP
    python scripts/results_table.py --few-demos panda        # Panda: UVA, LeRobot DP

The shipped table has one row per checkpoint, every number read from the evaluation stored beside
the file (`uva eval` of that exact file, written when it was shipped). The few-demos table reads
the equal-data, equal-budget comparison's files under experiments/ (the recipe run's state, the
UVA-action report of experiments/recipes/variant.py, the peer's evaluation and its paired report
of experiments/lerobot_peer/run.py). No number is typed by hand.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TASKS = {"pusht": "PushT (push the T home)", "panda": "Franka Panda pick-and-place"}


def row(ckpt: Path) -> str:
    metrics = json.loads((ckpt / "metrics.json").read_text())
    ev, dyn = metrics["eval"], metrics["eval"].get("dynamics", {})
    size_mb = (ckpt / "model.safetensors").stat().st_size / 1e6
    meta = json.loads((ckpt / "config.json").read_text())
    cfg = meta["uva_config"]
    steps = (f"{meta['backbone_total_steps']} + {ev['training_steps']} head"
             if "backbone_total_steps" in meta else f"{ev['training_steps']}")
    cells = [
        f"`{ckpt.relative_to(ROOT) if ckpt.is_relative_to(ROOT) else ckpt}`",
        TASKS.get(ev["env"], ev["env"]),
        f"{ev['score']:.3f}",
        f"{round(ev['success_rate'] * ev['episodes'])}/{ev['episodes']} (seeds "
        f"{ev['first_seed']}–{ev['first_seed'] + ev['episodes'] - 1})",
        f"{ev['n_action_steps']}",
        f"{ev.get('action_inference_steps', cfg['action_inference_steps'])}",
        f"{dyn['forward_dynamics_psnr_db']:.2f} vs {dyn['copy_last_frame_psnr_db']:.2f} dB"
        if dyn else "–",
        f"{dyn['inverse_dynamics_mae_normalized']:.3f} ({dyn['hold_state_mae_normalized']:.3f})"
        if dyn else "–",
        f"{ev['predict_action_ms_p50']:.1f} / {ev['predict_action_ms_p95']:.1f}"
        + (f" ({ev['precision']})" if "precision" in ev else " (fp32)"),
        steps,
        f"{size_mb:.1f} MB",
    ]
    return "| " + " | ".join(cells) + " |"


def table(checkpoints: Path) -> str:
    header = ("| checkpoint | task | score | successes | actions executed "
              "per chunk | action head DDIM steps | forward dynamics vs copy-last-frame | inverse dynamics MAE, normalised "
              "(hold-state) | predict_action p50 / p95 (ms, CPU, precision) | training steps (backbone + head refits) | "
              "weights |")
    lines = [header, "|" + "---|" * header.count(" | ") + "---|"]
    for ckpt in sorted(p.parent for p in checkpoints.glob("*/metrics.json")):
        lines.append(row(ckpt))
    return "\n".join(lines)


# the comparison at equal data and budget on the CPU: UVA's recipe run as the recipe is written,
# its UVA-action twin (variant.py --variant action) and LeRobot's Diffusion Policy on the same
# demos, scored on the same 100 seeds; the score along the run's head refits (demos_curve.py)
FEW_DEMOS = {
    "recipe_state": "experiments/recipes/pusht_cpu_6000heads_state.json",
    "uva_action": "experiments/recipes/uva_action_cpu_6000heads.json",
    "peer": "experiments/lerobot_peer/results/lerobot_dp_250demos_8000steps_ddim10_seeds100000.json",
    "peer_paired": "experiments/lerobot_peer/results/uva_cpu_6000heads_vs_lerobot_dp_8000steps.json",
    "curve": "experiments/recipes/demos_curve_cpu.json",
    # earlier runs of the recipe, on the same seeds: head refits of 1 500 steps (its state, its
    # UVA-action twin, its pairing with the peer of its budget), and the same backbone with every
    # head refit 4x as long ending on its last weights (variant.py --variant head-steps)
    "before_state": "experiments/recipes/pusht_cpu_state.json",
    "before_action": "experiments/recipes/uva_action_cpu.json",
    "before_peer": "experiments/lerobot_peer/results/uva_vs_lerobot_dp_cpu_budget.json",
    "before_peer_eval": "experiments/lerobot_peer/results/lerobot_dp_250demos_4500steps_ddim10_seeds100000.json",
    "long_heads_state": "experiments/recipes/pusht_cpu_head_steps_state.json",
    "long_heads": "experiments/recipes/head_steps_cpu.json",
    "long_heads_peer": "experiments/lerobot_peer/results/uva_head_steps_vs_lerobot_dp_cpu.json",
}


def _ms(values: list[float]) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:.1f}" if hi - lo < 0.05 else f"{lo:.1f}–{hi:.1f}"


def _score(side: dict, episodes: int) -> tuple[str, str]:
    return (f"{side['score']:.3f} ± {side['score_se']:.3f}", f"{side['successes']}/{episodes}")


def _pm(report: dict, sign: int = 1) -> str:
    """A paired report's difference (times `sign`) ± s.e., in bold."""
    return f"**{sign * report['paired_diff']:+.3f} ± {report['paired_diff_se']:.3f}**"


def _seed_blocks(report: dict) -> str:
    """A paired report's seeds: one range, or its two 50-seed blocks."""
    (a, b), n = report["seeds"], report["episodes"]
    return f"{a}–{b}" if b - a + 1 == n else f"{a}–{a + n // 2 - 1} and {b - n // 2 + 1}–{b}"


def _peer_row(peer: dict, side: dict, episodes: int, ms: list[float],
              name: str = "LeRobot Diffusion Policy") -> tuple[str, ...]:
    """LeRobot DP's row: its version, size and sampler, its paired score, its training budget."""
    t, inf = peer["training"], peer["inference"]
    return (name, f"lerobot {peer['versions']['lerobot']}, down_dims "
            f"{'/'.join(map(str, inf['down_dims']))}, DDIM {inf['denoising_steps']}",
            *_score(side, episodes), f"{t['wall_s'] / 60:.0f} min, {t['steps']} steps at batch "
            f"{t['batch_size']} (CPU, {t['threads']} thread{'s' if t['threads'] > 1 else ''})",
            _ms(ms))


def _train_stages(state: dict) -> tuple[dict, float, int]:
    """A recipe run's train stages (recipe_state.json), their wall minutes and steps in all."""
    train = {k: v for k, v in state["stages"].items() if v["kind"] == "train"}
    return (train, sum(v["wall_s"] for v in train.values()) / 60,
            sum(v["spec"]["steps"] for v in train.values()))


def _heads(train: dict) -> str:
    """The head refits' steps: '6000' or '6000/3000'."""
    steps = sorted({v["spec"]["steps"] for v in train.values() if v["spec"]["stage"] == "head"},
                   reverse=True)
    return "/".join(map(str, steps))


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    header = ("| policy | how | score ± s.e. | successes | training (wall, steps, device) | "
              "predict_action p50 (ms, 1 thread) |")
    return ([header, "|" + "---|" * header.count(" | ") + "---|"]
            + ["| " + " | ".join(r) + " |" for r in rows])


def few_demos_table(root: Path = ROOT) -> str:
    """UVA, UVA-action and LeRobot DP at equal data and training budget, the score along the
    run's head refits, and the earlier runs of the recipe, all from their JSON."""
    doc = {k: json.loads((root / v).read_text()) for k, v in FEW_DEMOS.items()}
    stages = doc["recipe_state"]["stages"]
    train, uva_min, uva_steps = _train_stages(doc["recipe_state"])
    demos = max(v["result"].get("episodes", 0) for v in stages.values() if v["kind"] == "collect")
    backbone_demos = stages[train["joint"]["spec"]["data"]]["result"]["episodes"]
    action, paired = doc["uva_action"]["all"], doc["peer_paired"]
    before, before_peer = doc["before_action"]["all"], doc["before_peer"]
    longer, long_peer = doc["long_heads"]["all"], doc["long_heads_peer"]
    n = action["episodes"]
    if any(r["episodes"] != n or r["seeds"] != action["seeds"]
           for r in (paired, before, before_peer, longer, long_peer)):
        raise ValueError("the UVA-action, earlier-run and peer reports were scored on different seeds")
    if abs(paired["reference"]["score"] - action["reference"]["score"]) > 1e-9:
        raise ValueError("the peer report's UVA is not the UVA-action report's plain run")
    for key, report in (("peer", paired), ("before_peer_eval", before_peer)):
        if (doc[key]["first_seed"] != report["seeds"][0]
                or doc[key]["training_steps"] != doc[key]["training"]["steps"]
                or doc[key]["predict_action_ms_p50"]
                not in report["predict_action_ms_p50"][report["names"]["other"]]):
            raise ValueError(f"{FEW_DEMOS[key]} is not an evaluation of the paired report's peer")
    if (abs(longer["reference"]["score"] - before["reference"]["score"]) > 1e-9
            or abs(before_peer["reference"]["score"] - before["reference"]["score"]) > 1e-9
            or abs(long_peer["other"]["score"] - before_peer["other"]["score"]) > 1e-9):
        raise ValueError("the long-head and peer reports' plain run is not the earlier UVA run, "
                         "or their peer is not the same")
    ship = next(v for v in stages.values() if v["kind"] == "ship" and v["spec"].get("eval"))
    ddim = ship["spec"].get("action_inference_steps")
    uva_ms = paired["predict_action_ms_p50"][paired["names"]["reference"]]
    peer_ms = paired["predict_action_ms_p50"][paired["names"]["other"]]
    action_min = sum(doc["uva_action"]["action_wall_s"][k] for k in train) / 60
    budget = doc["recipe_state"]["budget"]
    rows = [
        ("UVA", f"`uva train --recipe configs/pusht.yaml --budget {budget}`: head refits of "
         f"{_heads(train)} steps, each ending on its lowest held-out loss"
         + (f", {ddim} DDIM steps" if ddim else ""), *_score(action["reference"], n),
         f"{uva_min:.1f} min, {uva_steps} steps over {len(train)} stages (CPU)", _ms(uva_ms)),
        ("UVA-action", "the same recipe, joint stages on the policy mode alone "
         "(`experiments/recipes/variant.py --variant action`)", *_score(action["other"], n),
         f"{action_min:.1f} min, {uva_steps} steps (CPU)", f"{_ms(uva_ms)} (same network)"),
        _peer_row(doc["peer"], paired["other"], n, peer_ms),
    ]
    lines = [f"PushT, {demos} demos (the backbone's stages on the first {backbone_demos}, each "
             f"head refit on the demos collected so far, up to all {demos}); seeds "
             f"{_seed_blocks(action)}, {n} episodes, none used to choose anything:", ""]
    lines += _table(rows)
    lines += ["", f"Paired over the same seeds: UVA − UVA-action {_pm(action, -1)}, UVA − "
              f"LeRobot DP {_pm(paired, -1)}."]
    curve = doc["curve"]
    last = max(next(iter(curve["runs"].values()))["points"], key=lambda p: p["demos"])
    if abs(last["score"] - action["reference"]["score"]) > 1e-9:
        raise ValueError("the curve's first run is not the tabled UVA run")
    peers = [name for name, r in curve["runs"].items() if r.get("peer")]
    for name in peers:
        at = {p["demos"]: p for p in curve["runs"][name]["points"]}.get(last["demos"])
        if at is not None and abs(at["score"] - paired["other"]["score"]) > 1e-9:
            raise ValueError(f"the curve's {name} at {last['demos']} demos is not the tabled peer")
    lines += ["", "Along the same runs, each policy head refit shipped like the final file and "
              f"scored on the same {curve['episodes']} seeds"
              + (f", beside {' and '.join(peers)} trained at the recipe's budget on the same "
                 "demos where it has run" if peers else "")
              + f" ([{Path(FEW_DEMOS['curve']).with_suffix('.png').name}]"
              f"(../{Path(FEW_DEMOS['curve']).with_suffix('.png').as_posix()})):", "",  # from docs/
              "| demos | " + " | ".join(curve["runs"]) + " | " + " | ".join(
                  f"paired {k}" for k in curve["paired"]) + " |",
              "|---|" + "---|" * (len(curve["runs"]) + len(curve["paired"]))]
    points = {name: {p["demos"]: p for p in r["points"]} for name, r in curve["runs"].items()}
    pairs = {k: {r["demos"]: r for r in v} for k, v in curve["paired"].items()}
    filled = sorted({p["demos"] for r in curve["runs"].values() for p in r["points"]
                     if p.get("filled")})
    for d in sorted(set().union(*points.values())):
        cells = [f"{points[r][d]['score']:.3f} ± {points[r][d]['score_se']:.3f}"
                 if d in points[r] else "–" for r in points]
        cells += [f"{pairs[k][d]['paired_diff']:+.3f} ± {pairs[k][d]['paired_diff_se']:.3f}"
                  if d in pairs[k] else "–" for k in pairs]
        lines.append(f"| {d}{' *' if d in filled else ''} | " + " | ".join(cells) + " |")
    if filled:
        lines += ["", "\\* the UVA heads at these demos are refits beside the run "
                  "(`demos_curve.py --fill`): the chain collects these demos without refitting "
                  "on them, so the next refit's spec and init trained on them, its data alone "
                  "changed."]
    b_train, b_min, b_steps = _train_stages(doc["before_state"])
    b_ms = _ms(before_peer["predict_action_ms_p50"][before_peer["names"]["reference"]])
    l_train, l_min, l_steps = _train_stages(doc["long_heads_state"])
    rows = [
        ("UVA", f"head refits of {_heads(b_train)} steps, ending on their last weights, "
         "10 DDIM steps", *_score(before["reference"], n),
         f"{b_min:.1f} min, {b_steps} steps (CPU)", b_ms),
        ("UVA, longer head refits", f"the same backbone, head refits of {_heads(l_train)} steps "
         "ending on their last weights (`variant.py --variant head-steps`), 10 DDIM steps",
         *_score(longer["other"], n), f"{l_min:.1f} min, {l_steps} steps (CPU)",
         f"{b_ms} (same network)"),
        ("UVA-action", "the first row's recipe, joint stages on the policy mode alone",
         *_score(before["other"], n),
         f"{sum(doc['before_action']['action_wall_s'][k] for k in b_train) / 60:.1f} min, "
         f"{b_steps} steps (CPU)", f"{b_ms} (same network)"),
        _peer_row(doc["before_peer_eval"], before_peer["other"], n,
                  before_peer["predict_action_ms_p50"][before_peer["names"]["other"]],
                  "LeRobot Diffusion Policy, shorter"),
    ]
    lines += ["", "Earlier runs of the recipe, and the peer's at the first row's budget, on the "
              "same demos and seeds:", ""]
    lines += _table(rows)
    lines += ["", f"Paired: UVA − UVA-action {_pm(before, -1)}, UVA − the shorter LeRobot DP "
              f"{_pm(before_peer, -1)}; longer head refits − UVA {_pm(longer)}, longer head "
              f"refits − the shorter LeRobot DP {_pm(long_peer, -1)}."]
    return "\n".join(lines)


# the same comparison on the Panda at 120 demos: the shipped file and LeRobot's Diffusion Policy
# trained on a fresh collection of the recipe's demos, paired on 100 seeds nothing was chosen on,
# and again on the seeds the file was shipped on
FEW_DEMOS_PANDA = {
    "paired": "experiments/lerobot_peer/results/uva_vs_lerobot_dp_panda_120_fresh.json",
    "paired_ship_seeds": "experiments/lerobot_peer/results/uva_vs_lerobot_dp_panda_120.json",
    "peer": "experiments/lerobot_peer/results/lerobot_dp_panda_120demos_ddim10_seeds950000.json",
    "uva": "models/checkpoints/panda/config.json",
}


def few_demos_panda_table(root: Path = ROOT) -> str:
    """The shipped Panda file and LeRobot DP on the same 120 demos and seeds, from their JSON."""
    doc = {k: json.loads((root / v).read_text()) for k, v in FEW_DEMOS_PANDA.items()}
    paired, ship, uva = doc["paired"], doc["paired_ship_seeds"], doc["uva"]
    names, n = paired["names"], paired["episodes"]
    if doc["peer"]["first_seed"] not in paired["seeds"] or doc["peer"]["env"] != "panda":
        raise ValueError("the peer's evaluation is not one of the paired Panda report's")
    ms = paired["predict_action_ms_p50"]
    rows = [
        ("UVA", "`configs/panda.yaml` (the shipped file)", *_score(paired["reference"], n),
         f"{uva['backbone_total_steps']} joint steps at batch 128 (one GPU), then "
         f"{uva['total_steps']} head steps (CPU, 2 cores)", _ms(ms[names["reference"]])),
        _peer_row(doc["peer"], paired["other"], n, ms[names["other"]]),
    ]
    header = ("| policy | how | success rate ± s.e. | successes | training (wall, steps, device) | "
              "predict_action p50 (ms, 1 thread) |")
    lines = [f"Panda pick-and-place, 120 demos (the same {len(uva['val_episodes'])} held out for "
             f"validation by both); seeds {_seed_blocks(paired)}, {n} episodes, none used to "
             "choose anything:", "", header, "|" + "---|" * header.count(" | ") + "---|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", f"Paired over the same seeds: UVA − LeRobot DP **{-paired['paired_diff']:+.2f} ± "
              f"{paired['paired_diff_se']:.2f}**; on the seeds the file was shipped on "
              f"({_seed_blocks(ship)}) {ship['reference']['successes']}/{ship['episodes']} against "
              f"{ship['other']['successes']}/{ship['episodes']}, {-ship['paired_diff']:+.2f} ± "
              f"{ship['paired_diff_se']:.2f}."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", type=Path, default=ROOT / "models" / "checkpoints")
    ap.add_argument("--few-demos", nargs="?", const="pusht", choices=["pusht", "panda"],
                    help="the few-demos comparison of UVA and its peers on this task (default pusht)")
    a = ap.parse_args()
    print({None: lambda: table(a.checkpoints.resolve()), "pusht": few_demos_table,
           "panda": few_demos_panda_table}[a.few_demos]())


if __name__ == "__main__":
    main()
