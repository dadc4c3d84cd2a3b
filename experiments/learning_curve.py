"""Closed-loop score vs training steps: evaluates checkpoints (milestones of a chain of continued
runs) on the same fixed seeds and plots the curve next to the expert and random references.

    uva eval --env pusht --expert --episodes 100 --out outputs/expert_pusht
    python experiments/learning_curve.py --env pusht --episodes 50 --out outputs/learning_curve_pusht \
        --series "UVA=runs/pusht/joint/joint/final,runs/pusht/joint_more/joint/final" \
        --reference expert=outputs/expert_pusht/eval.json
(runs/pusht/…: `uva train --recipe configs/pusht.yaml`; any checkpoints work.)

The x axis is each checkpoint's `total_steps` (its stage's steps summed over the chain of
--init continuations). Evaluations are cached per checkpoint, so re-running only evaluates new
milestones. Each series with 3+ points also gets a log-linear fit, score = a + b ln(steps), and
the steps it would need to reach --target if the trend held (a rough budget estimate, no more).
"""
from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path

import numpy as np


def checkpoint_steps(ckpt: Path) -> int:
    from uva.checkpoint import CONFIG, total_steps
    return int(total_steps(json.loads((ckpt / CONFIG).read_text())))


def evaluate_cached(ckpt: Path, env: str, episodes: int, out_root: Path) -> dict:
    from uva.evaluate import evaluate
    out = out_root / "evals" / str(ckpt).strip("/").replace("/", "_")
    result_file = out / "eval.json"
    if result_file.is_file():
        cached = json.loads(result_file.read_text())
        if cached["episodes"] == episodes and cached["ckpt"] == str(ckpt):
            return cached
    return evaluate(str(ckpt), env, episodes, str(out), n_gifs=0)


def log_linear_fit(points: list[dict], target: float) -> dict | None:
    if len(points) < 3:
        return None
    x = np.log([p["total_steps"] for p in points])
    y = np.array([p["score"] for p in points])
    b, a = np.polyfit(x, y, 1)
    reach = float(np.exp((target - a) / b)) if b > 0 else None
    return {"a": float(a), "b": float(b), "target": target, "steps_to_target": reach}


def plot(curves: dict, fits: dict, references: dict, env: str, episodes: int, png: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for label, points in curves.items():
        xs = [p["total_steps"] for p in points]
        ys = [p["score"] for p in points]
        err = [p["score_sem"] for p in points]
        line = ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=label)
        fit = fits.get(label)
        if fit:
            grid = np.geomspace(min(xs), max(xs), 50)
            ax.plot(grid, fit["a"] + fit["b"] * np.log(grid), linestyle="--", linewidth=1,
                    color=line[0].get_color(), label=f"{label}: {fit['a']:.2f} + {fit['b']:.3f} ln(steps)")
    for (label, score), style in zip(references.items(), (":", "--", "-.")):
        ax.axhline(score, color="gray", linestyle=style, label=f"{label} {score:.2f}")
    ax.set_xlabel("training steps (joint stage, batch 32)")
    ax.set_ylabel(f"{env} score ({episodes} seeds, mean ± s.e.)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", required=True)
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--out", required=True)
    p.add_argument("--series", action="append", required=True,
                   help="LABEL=ckpt[,ckpt-or-glob...]; repeat for several series")
    p.add_argument("--reference", action="append", default=[],
                   help="LABEL=eval.json of a reference policy (expert, random)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--target", type=float, default=0.6, help="score the budget estimate aims at")
    a = p.parse_args()

    import torch
    torch.set_num_threads(a.threads)
    from uva.fsutil import atomic_write_json

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    curves: dict[str, list[dict]] = {}
    for spec in a.series:
        label, _, paths = spec.partition("=")
        # one checkpoint per step count, the first listed (a run's last milestone and its final
        # hold the same EMA weights)
        by_steps: dict[int, Path] = {}
        for pattern in paths.split(","):
            for c in sorted(glob.glob(pattern)):
                by_steps.setdefault(checkpoint_steps(Path(c)), Path(c))
        if not by_steps:
            raise SystemExit(f"series '{label}': no checkpoints match {paths}")
        points = []
        for steps in sorted(by_steps):
            ckpt = by_steps[steps]
            res = evaluate_cached(ckpt, a.env, a.episodes, out)
            scores = [e["score"] for e in res["per_episode"]]
            points.append({"ckpt": str(ckpt), "total_steps": steps, "score": res["score"],
                           "score_sem": float(np.std(scores, ddof=1) / np.sqrt(len(scores))),
                           "success_rate": res["success_rate"]})
            print(f"{label:12s} {points[-1]['total_steps']:6d} steps  score {points[-1]['score']:.3f}"
                  f" ± {points[-1]['score_sem']:.3f}  success {points[-1]['success_rate']:.2f}",
                  flush=True)
        curves[label] = points
    references = {}
    for spec in a.reference:
        label, _, path = spec.partition("=")
        references[label] = json.loads(Path(path).read_text())["score"]
    fits = {label: fit for label, points in curves.items()
            if (fit := log_linear_fit(points, a.target))}
    for label, fit in fits.items():
        print(f"{label}: score = {fit['a']:.3f} + {fit['b']:.4f} ln(steps); "
              f"{a.target} reached at ~{fit['steps_to_target'] or float('inf'):.3g} steps if the trend held")
    atomic_write_json(out / "learning_curve.json", {"env": a.env, "episodes": a.episodes,
                                                    "curves": curves, "fits": fits,
                                                    "references": references})
    plot(curves, fits, references, a.env, a.episodes, out / "learning_curve.png")
    print(f"wrote {out / 'learning_curve.json'} and {out / 'learning_curve.png'}")


if __name__ == "__main__":
    main()
