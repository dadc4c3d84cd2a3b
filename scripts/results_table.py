"""Print the README's results tables (markdown) from the JSON the runs wrote.

    python scripts/results_table.py [--checkpoints DIR]     # the shipped models
    python scripts/results_table.py --few-demos              # UVA, UVA-action, LeRobot DP

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
    steps = (f"{meta['backbone_total_steps']} + {ev['training_steps']} head"
             if "backbone_total_steps" in meta else f"{ev['training_steps']}")
    cells = [
        f"`{ckpt.relative_to(ROOT) if ckpt.is_relative_to(ROOT) else ckpt}`",
        TASKS.get(ev["env"], ev["env"]),
        f"{ev['score']:.3f}",
        f"{round(ev['success_rate'] * ev['episodes'])}/{ev['episodes']} (seeds "
        f"{ev['first_seed']}–{ev['first_seed'] + ev['episodes'] - 1})",
        f"{ev['n_action_steps']}",
        f"{dyn['forward_dynamics_psnr_db']:.2f} vs {dyn['copy_last_frame_psnr_db']:.2f} dB"
        if dyn else "–",
        f"{dyn['inverse_dynamics_mae_normalized']:.3f} ({dyn['hold_state_mae_normalized']:.3f})"
        if dyn else "–",
        f"{ev['predict_action_ms_p50']:.1f} / {ev['predict_action_ms_p95']:.1f}",
        steps,
        f"{size_mb:.1f} MB",
    ]
    return "| " + " | ".join(cells) + " |"


def table(checkpoints: Path) -> str:
    header = ("| checkpoint | task | score | successes | actions executed "
              "per chunk | forward dynamics vs copy-last-frame | inverse dynamics MAE, normalised "
              "(hold-state) | predict_action p50 / p95 (ms, CPU) | training steps (backbone + head refits) | "
              "weights |")
    lines = [header, "|" + "---|" * header.count(" | ") + "---|"]
    for ckpt in sorted(p.parent for p in checkpoints.glob("*/metrics.json")):
        lines.append(row(ckpt))
    return "\n".join(lines)


# the comparison at equal data and budget on the CPU: UVA's recipe run, its UVA-action twin and
# LeRobot's Diffusion Policy on the same demos, scored on the same 100 seeds
FEW_DEMOS = {
    "recipe_state": "experiments/recipes/pusht_cpu_state.json",
    "uva_action": "experiments/recipes/uva_action_cpu.json",
    "peer": "experiments/lerobot_peer/results/lerobot_dp_250demos_4500steps_ddim10_seeds100000.json",
    "peer_paired": "experiments/lerobot_peer/results/uva_vs_lerobot_dp_cpu_budget.json",
    # the same recipe with every head refit 4x as long (variant.py --variant head-steps), the
    # backbone shared: its run's state, its pairing with the plain run and with the peer
    "long_heads_state": "experiments/recipes/pusht_cpu_head_steps_state.json",
    "long_heads": "experiments/recipes/head_steps_cpu.json",
    "long_heads_peer": "experiments/lerobot_peer/results/uva_head_steps_vs_lerobot_dp_cpu.json",
}


def _ms(values: list[float]) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:.1f}" if hi - lo < 0.05 else f"{lo:.1f}–{hi:.1f}"


def _score(side: dict, episodes: int) -> tuple[str, str]:
    return (f"{side['score']:.3f} ± {side['score_se']:.3f}", f"{side['successes']}/{episodes}")


def _train_stages(state: dict) -> tuple[dict, float, int]:
    """A recipe run's train stages (recipe_state.json), their wall minutes and steps in all."""
    train = {k: v for k, v in state["stages"].items() if v["kind"] == "train"}
    return (train, sum(v["wall_s"] for v in train.values()) / 60,
            sum(v["spec"]["steps"] for v in train.values()))


def few_demos_table(root: Path = ROOT) -> str:
    """UVA, UVA-action and LeRobot DP at equal data and training budget, from their JSON."""
    doc = {k: json.loads((root / v).read_text()) for k, v in FEW_DEMOS.items()}
    stages = doc["recipe_state"]["stages"]
    train, uva_min, uva_steps = _train_stages(doc["recipe_state"])
    demos = max(v["result"].get("episodes", 0) for v in stages.values() if v["kind"] == "collect")
    backbone_demos = stages[train["joint"]["spec"]["data"]]["result"]["episodes"]
    action_min = sum(doc["uva_action"]["action_wall_s"][k] for k in train) / 60
    long_train, long_min, long_steps = _train_stages(doc["long_heads_state"])
    long_head = max(v["spec"]["steps"] for v in long_train.values() if v["spec"]["stage"] == "head")
    both, paired = doc["uva_action"]["all"], doc["peer_paired"]
    longer, long_peer = doc["long_heads"]["all"], doc["long_heads_peer"]
    n = both["episodes"]
    if any(r["episodes"] != n or r["seeds"] != both["seeds"] for r in (paired, longer, long_peer)):
        raise ValueError("the UVA-action, long-head and peer reports were scored on different seeds")
    if abs(longer["reference"]["score"] - both["reference"]["score"]) > 1e-9:
        raise ValueError("the long-head report's plain run is not the tabled UVA run")
    uva_ms = paired["predict_action_ms_p50"][paired["names"]["reference"]]
    peer_ms = paired["predict_action_ms_p50"][paired["names"]["other"]]
    pt = doc["peer"]["training"]
    recipe = f"`uva train --recipe configs/pusht.yaml --budget {doc['recipe_state']['budget']}`"
    rows = [
        ("UVA", recipe, *_score(both["reference"], n),
         f"{uva_min:.1f} min, {uva_steps} steps over {len(train)} stages (CPU, 2 cores)",
         _ms(uva_ms)),
        ("UVA, longer head refits", f"the same recipe, every head refit {long_head} steps "
         "(`experiments/recipes/variant.py --variant head-steps`)", *_score(longer["other"], n),
         f"{long_min:.1f} min, {long_steps} steps (CPU, 2 cores)", f"{_ms(uva_ms)} (same network)"),
        ("UVA-action", "the same recipe, joint stages on the policy mode alone "
         "(`experiments/recipes/variant.py --variant action`)", *_score(both["other"], n),
         f"{action_min:.1f} min, {uva_steps} steps (CPU, 2 cores, beside other jobs)",
         f"{_ms(uva_ms)} (same network)"),
        ("LeRobot Diffusion Policy", f"lerobot {doc['peer']['versions']['lerobot']}, down_dims "
         f"{'/'.join(map(str, doc['peer']['inference']['down_dims']))}, DDIM "
         f"{doc['peer']['inference']['denoising_steps']}", *_score(paired["other"], n),
         f"{pt['wall_s'] / 60:.0f} min, {pt['steps']} steps at batch {pt['batch_size']} "
         f"(CPU, {pt['threads']} thread)", _ms(peer_ms)),
    ]
    header = ("| policy | how | score ± s.e. | successes | training (wall, steps, device) | "
              "predict_action p50 (ms, 1 thread) |")
    lines = [f"PushT, {demos} demos (the backbone's stages on the first {backbone_demos}, each "
             f"head refit on the demos collected so far, up to all {demos}); seeds {both['seeds'][0]}–{both['seeds'][0] + 49} and "
             f"{both['seeds'][1] - 49}–{both['seeds'][1]}, {n} episodes, none used to choose "
             f"anything:", "", header, "|" + "---|" * header.count(" | ") + "---|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", f"Paired over the same seeds: UVA − UVA-action **{-both['paired_diff']:+.3f} ± "
              f"{both['paired_diff_se']:.3f}**, UVA − LeRobot DP **{-paired['paired_diff']:+.3f} "
              f"± {paired['paired_diff_se']:.3f}**; longer head refits − UVA "
              f"**{longer['paired_diff']:+.3f} ± {longer['paired_diff_se']:.3f}**, longer head "
              f"refits − LeRobot DP **{-long_peer['paired_diff']:+.3f} ± "
              f"{long_peer['paired_diff_se']:.3f}**."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", type=Path, default=ROOT / "models" / "checkpoints")
    ap.add_argument("--few-demos", action="store_true",
                    help="the equal-data, equal-budget table of UVA, UVA-action and LeRobot DP")
    a = ap.parse_args()
    print(few_demos_table() if a.few_demos else table(a.checkpoints.resolve()))


if __name__ == "__main__":
    main()
