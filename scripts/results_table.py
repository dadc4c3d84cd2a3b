"""Print the README results tables from the JSON files the runs wrote (no number typed by hand)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def load(path):
    p = ROOT / path
    return json.loads(p.read_text()) if p.is_file() else None


def score_stats(r) -> tuple[float, float]:
    """Mean score of an eval JSON's episodes and its standard error."""
    scores = np.array([e["score"] for e in r["per_episode"]])
    return scores.mean(), scores.std(ddof=1) / np.sqrt(len(scores))


def steps(run):
    cfg = load(f"runs/{run}/joint/final/config.json")
    return cfg.get("steps") if cfg else None


def policy_rows():
    print("| env | policy | joint-stage steps | episodes | score | success | predict_action p50 / p95 (ms) |")
    print("|---|---|---|---|---|---|---|")
    for env in ("pusht", "panda"):
        for ref in ("expert", "random"):
            e = load(f"outputs/{ref}_{env}/eval.json")
            if e:
                print(f"| {env} | {e['policy']} | – | {e['episodes']} | {e['score']:.3f} | {e['success_rate']:.2f} | – |")
        for run, name in POLICY_RUNS[env]:
            r = load(f"outputs/eval_{run}/eval.json")
            if r:
                print(f"| {env} | {name} | {training_steps(r) or steps(run)} | {r['episodes']} | "
                      f"{r['score']:.3f} | {r['success_rate']:.2f} | "
                      f"{r['predict_action_ms_p50']:.1f} / {r['predict_action_ms_p95']:.1f} |")


POLICY_RUNS = {
    "pusht": (("pusht", "UVA (all five modes)"), ("pusht_action", "UVA-action (policy mode only)"),
              ("pusht_shipped_v2", "UVA, recipe 2 on the CPU (shipped in session 3)"),
              ("pusht_shipped_v3", "UVA, recipe 2 on a GPU, 4 of 8 actions executed (shipped in "
                                   "sessions 4–5)"),
              ("pusht_shipped_v4", "the same with its action head refitted (session 6)"),
              ("pusht_shipped_v5", "the same with inverse dynamics in their own head (session 7)"),
              ("pusht_shipped_v6", "the same with its policy head refitted on 600 demos (session 8)"),
              ("pusht_shipped_v7", "the same, continued on 1 200 demos (session 8)"),
              ("pusht_shipped_v8", "the same, inverse head refitted on 1 200 demos (session 8)"),
              ("pusht_shipped_v9", "the same, policy head continued on 2 400 demos (session 9, "
                                   "shipped)")),
    "panda": (("panda", "UVA (all five modes)"), ("panda_action", "UVA-action (policy mode only)"),
              ("gpu_panda2", "UVA, recipe 2 on a GPU (shipped)")),
}
"""outputs/eval_<run>/ of each policy row (a missing file drops its row)."""


def training_steps(r) -> str | None:
    """Joint-stage steps of an eval's checkpoint; `backbone + head` for a head-stage refit."""
    cfg = load(f"{r['ckpt']}/config.json") or {}
    if cfg.get("stage") == "head":
        return f"{cfg['backbone_total_steps']} + {cfg['total_steps']}"
    return r.get("training_steps")


def dynamics_rows():
    """From `uva eval --episodes 0 --data …` runs written to outputs/dynamics_<run>/."""
    print("| env | model | forward dynamics (anchored) | raw decode | copy-last-frame | VAE ceiling "
          "| inverse dynamics MAE (env units) | MAE normalised [-1,1] | policy open-loop MAE "
          "normalised | hold-state MAE normalised |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for env in ("pusht", "panda"):
        shipped = " (shipped in sessions 4–5)" if env == "pusht" else " (shipped)"
        for run, name in ((f"gpu_{env}2", "UVA recipe 2 on a GPU" + shipped),
                          (f"{env}_shipped_v4", "the same, action head refitted (session 6)"),
                          (f"{env}_shipped_v5", "the same, inverse dynamics in their own head "
                                                "(session 7)"),
                          (f"{env}_shipped_v6", "the same, policy head refitted on 600 demos "
                                                "(session 8; 30 held-out episodes)"),
                          (f"{env}_shipped_v7", "the same, continued on 1 200 demos "
                                                "(session 8; 60 held-out episodes)"),
                          (f"{env}_shipped_v8", "the same, inverse head refitted on 1 200 demos "
                                                "(session 8; 60 held-out episodes)"),
                          (f"{env}_shipped_v9", "the same, policy head continued on 2 400 demos "
                                                "(session 9, shipped; 120 held-out episodes)"),
                          (env, "UVA recipe 1"),
                          (f"{env}_shipped_v2", "UVA recipe 2 on the CPU"),
                          (f"{env}_long", "UVA continued (not shipped)"),
                          (f"{env}_more", "UVA continued (not shipped)"), (f"{env}_action", "UVA-action")):
            r = load(f"outputs/dynamics_{run}/eval.json") or load(f"outputs/eval_{run}/eval.json")
            if r and "dynamics" in r:
                d = r["dynamics"]
                print(f"| {env} | {name} | {d['forward_dynamics_psnr_db']:.2f} dB | "
                      f"{d['forward_dynamics_raw_psnr_db']:.2f} dB | {d['copy_last_frame_psnr_db']:.2f} dB | "
                      f"{d['vae_reconstruction_psnr_db']:.2f} dB | {d['inverse_dynamics_mae']:.4g} | "
                      f"{d['inverse_dynamics_mae_normalized']:.3f} | "
                      f"{d['policy_open_loop_mae_normalized']:.3f} | {d['hold_state_mae_normalized']:.3f} |")


ARCHITECTURE_RUNS = (
    ("pusht_flat", "flatten readout"),
    ("pusht_vae2k", "flatten readout + VAE 2000 steps"),
    ("panda_vae2k", "flatten readout + VAE 2000 steps (fp16 file, joint capped at 21 min)"),
)
"""Variants of the first recipe (VAE 300 + video 200 + joint 3500 steps), one change at a time."""


def architecture_rows():
    print("| run | change vs first recipe | joint steps | score (50 seeds) | success "
          "| policy open-loop MAE normalised (hold-state) | forward dynamics vs copy-last |")
    print("|---|---|---|---|---|---|---|")
    for run, change in ARCHITECTURE_RUNS:
        r, d = load(f"outputs/eval_{run}/eval.json"), load(f"outputs/dynamics_{run}/eval.json")
        if not r:
            continue
        dyn = d["dynamics"] if d else None
        print(f"| {run} | {change} | {r['training_steps']} | {r['score']:.3f} | {r['success_rate']:.2f} | "
              + (f"{dyn['policy_open_loop_mae_normalized']:.3f} ({dyn['hold_state_mae_normalized']:.3f}) | "
                 f"{dyn['forward_dynamics_psnr_db']:.2f} vs {dyn['copy_last_frame_psnr_db']:.2f} dB |"
                 if dyn else "– | – |"))


def curve_rows():
    """From scripts/learning_curve.py's outputs/learning_curve_pusht/learning_curve.json."""
    r = load("outputs/learning_curve_pusht/learning_curve.json")
    if not r:
        return
    print(f"| series | joint steps | score ({r['episodes']} seeds, ± s.e.) | success |")
    print("|---|---|---|---|")
    for label, points in r["curves"].items():
        for p in points:
            print(f"| {label} | {p['total_steps']} | {p['score']:.3f} ± {p['score_sem']:.3f} | "
                  f"{p['success_rate']:.2f} |")


GPU_RUNS = (
    ("pusht", "UVA (all five modes)", ("pusht", "pusht2")),
    ("pusht", "UVA-action (policy mode only)", ("pusht_action", "pusht_action2")),
    ("pusht", "UVA, 64 tokens per frame (patch_size 1; session 5)", ("pusht_fine", "pusht_fine2")),
    ("panda", "UVA (all five modes)", ("panda", "panda2")),
    ("panda", "UVA-action (policy mode only; session 5)", ("panda_action2",)),
)
"""scripts/gpu_recipe.sh runs (one H200, batch 128): first command, then its continuation."""


def evals_of(name) -> list[dict]:
    """A run's eval JSONs: outputs/eval_<name>/ and its _exec4/_exec8 variants."""
    evals = [load(f"outputs/eval_{name}{tag}/eval.json") for tag in ("", "_exec4", "_exec8")]
    return [r for r in evals if r]


def gpu_evals(run) -> list[dict]:
    return evals_of(f"gpu_{run}")


def gpu_rows():
    """From `uva eval --episodes 50` of each GPU run: outputs/eval_gpu_<run>/ (with `--data`, so
    it holds the dynamics metrics) and outputs/eval_gpu_<run>_exec<N>/ (another number of
    actions executed per chunk). One row per (run, actions executed)."""
    print("| env | model | joint steps (batch 128) | actions executed | score (50 seeds, ± s.e.) "
          "| success | policy open-loop MAE normalised (hold-state) "
          "| inverse dynamics MAE normalised | forward dynamics vs copy-last |")
    print("|---|---|---|---|---|---|---|---|---|")
    for env, name, runs in GPU_RUNS:
        for run in runs:
            evals = gpu_evals(run)
            dyn = next((r["dynamics"] for r in evals if "dynamics" in r), None)
            for r in sorted(evals, key=lambda r: -r["n_action_steps"]):
                mean, sem = score_stats(r)
                print(f"| {env} | {name} | {r['training_steps']} | {r['n_action_steps']} | "
                      f"{mean:.3f} ± {sem:.3f} | "
                      f"{r['success_rate']:.2f} | " + (
                          f"{dyn['policy_open_loop_mae_normalized']:.3f} "
                          f"({dyn['hold_state_mae_normalized']:.3f}) | "
                          f"{dyn['inverse_dynamics_mae_normalized']:.3f} | "
                          f"{dyn['forward_dynamics_psnr_db']:.2f} vs "
                          f"{dyn['copy_last_frame_psnr_db']:.2f} dB |" if dyn else "– | – | – |"))


HEAD_RUNS = (("gpu_pusht2", "none: the session-4 GPU file (joint stage only)", "tune_pusht_exec4"),
             ("pusht_head_unet", "fresh U-Net head (width 64), policy latents", None),
             ("pusht_head_mlp", "its MLP head continued, policy latents",
              "tune_pusht_head_mlp_exec4"),
             ("pusht_shipped_v4", "the same, as the shipped fp16 file", None),
             ("pusht_head_mlp2", "its MLP head continued, policy + inverse latents",
              "tune_pusht_head_mlp2_exec4"),
             ("pusht_head_attn", "fresh MLP head with the attention readout (128 wide; session 7), "
              "policy latents", "tune_pusht_head_attn_exec4"),
             ("pusht_head_dagger", "the shipped (session-6) head continued on the demos + 160 "
              "DAgger episodes (session 7), policy latents", None),
             ("pusht_head_proprio", "fresh MLP head that also takes the proprio directly "
              "(`action_proprio`; session 7), policy latents", "tune_pusht_head_proprio_exec4"),
             ("pusht_head_600", "the session-7 head continued on 600 demos (200 + 400 new; "
              "session 8), policy latents", "tune_pusht_head_600_exec4"),
             ("pusht_shipped_v6", "the same, as the shipped fp16 file", None),
             ("pusht_head_1200", "that head continued on 1 200 demos (600 more; session 8), "
              "policy latents", "tune_pusht_head_1200_exec4"),
             ("pusht_shipped_v7", "the same, as the shipped fp16 file", "tune_pusht_shipped_v7_exec4"),
             ("pusht_head_2400", "that head continued on 2 400 demos (1 200 more; session 9), "
              "policy latents", "tune_pusht_head_2400_exec4"),
             ("pusht_shipped_v9", "the same, as the shipped fp16 file", "tune_pusht_shipped_v9_exec4"))
"""`uva train --stage head` refits of the session-4 PushT backbone (the DAgger and 600-demo
rows continue the session-6/7 head): (run, name, fresh-seed eval), scored in
outputs/eval_<run>[_exec8] and, on seeds 200000-, outputs/<fresh>."""


def head_rows():
    print("| head refit on the frozen GPU-trained backbone | head-stage steps (batch 256) "
          "| actions executed | score (50 seeds, ± s.e.) | success | fresh seeds: score, success "
          "| policy open-loop MAE normalised | inverse dynamics MAE normalised |")
    print("|---|---|---|---|---|---|---|---|")
    for run, name, fresh_run in HEAD_RUNS:
        evals = evals_of(run)
        dyn = next((r["dynamics"] for r in evals if "dynamics" in r), None)
        fresh = load(f"outputs/{fresh_run}/eval.json") if fresh_run else None
        for r in sorted(evals, key=lambda r: r["n_action_steps"]):
            mean, sem = score_stats(r)
            cfg = load(f"{r['ckpt']}/config.json") or {}
            head_steps = cfg["steps"] if cfg.get("stage") == "head" else 0
            other = ("{:.3f} ± {:.3f}, ".format(*score_stats(fresh)) + f"{fresh['success_rate']:.2f}"
                     if fresh and fresh["n_action_steps"] == r["n_action_steps"] else "–")
            print(f"| {name} | {head_steps} | {r['n_action_steps']} | "
                  f"{mean:.3f} ± {sem:.3f} | {r['success_rate']:.2f} | {other} | " + (
                      f"{dyn['policy_open_loop_mae_normalized']:.3f} | "
                      f"{dyn['inverse_dynamics_mae_normalized']:.3f} |" if dyn else "– | – |"))


def finish_pusht_plot(fig, ax, out: str, legend_size: float) -> None:
    """What every PushT score plot shares: the expert's score and the issue's 0.6 aim as
    reference lines, a 0–1 score axis, the legend, and the PNG written under docs/media."""
    expert = load("outputs/expert_pusht/eval.json")
    if expert:
        ax.axhline(expert["score"], color="k", lw=1, label="scripted expert")
    ax.axhline(0.6, color="tab:red", lw=0.8, ls="-.", label="issue's aim 0.6")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=legend_size, loc="upper left")
    fig.tight_layout()
    fig.savefig(ROOT / out, dpi=110)
    print("wrote", out)


def gpu_plot(out="docs/media/pusht_gpu_scores.png"):
    """PushT score vs joint steps of the GPU runs, beside the state-based probes and the expert."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for _, name, runs in (r for r in GPU_RUNS if r[0] == "pusht"):
        for n_exec, marker in ((4, "o-"), (8, "s--")):
            pts = [(r["training_steps"], *score_stats(r)) for run in runs
                   for r in gpu_evals(run) if r["n_action_steps"] == n_exec]
            if pts:
                x, y, e = map(np.array, zip(*sorted(pts)))
                ax.errorbar(x, y, e, fmt=marker, capsize=3, label=f"{name}, {n_exec} executed")
    for probe, label, color in (("state_probe_pusht", "true state, MLP head", "tab:gray"),
                                ("state_probe_pusht_unet", "true state, U-Net head", "tab:cyan")):
        r = load(f"outputs/{probe}/probe.json")
        if r:
            ax.axhline(r["by_action_steps"]["4"]["score"], color=color, ls=":",
                       label=f"{label} ({r['train_steps']} steps, 4 executed)")
    ax.set_xlabel("joint-stage steps (batch 128, one H200)")
    ax.set_ylabel("PushT score, 50 seeds (± s.e.)")
    finish_pusht_plot(fig, ax, out, legend_size=6.5)


DEMO_RUNS = ((200, ("eval_pusht_shipped_v5", "tune_pusht_head_mlp_exec4")),
             (600, ("eval_pusht_head_600", "tune_pusht_head_600_exec4")),
             (1200, ("eval_pusht_head_1200", "tune_pusht_head_1200_exec4")),
             (2400, ("eval_pusht_head_2400", "tune_pusht_head_2400_exec4")))
"""The PushT policy head on the same frozen backbone vs the demos it was fitted on: the 50
evaluation seeds and the 50 fresh seeds of each (the 200-demo head's fresh run is its fp32 twin)."""


def demos_plot(out="docs/media/pusht_score_vs_demos.png"):
    """Score (100 seeds) and success rate vs demonstrations, with the 0.6 aim and the expert."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = []
    for n, runs in DEMO_RUNS:
        evals = [load(f"outputs/{r}/eval.json") for r in runs]
        if all(evals):
            episodes = [e for r in evals for e in r["per_episode"]]
            mean, sem = score_stats({"per_episode": episodes})
            success = np.mean([e["success"] for e in episodes])
            rows.append((n, mean, sem, success))
            print(f"| {n} | {len(episodes)} | {mean:.3f} ± {sem:.3f} | {success:.2f} |")
    n, mean, sem, success = map(np.array, zip(*rows))
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.errorbar(n, mean, sem, fmt="o-", capsize=3, label="score, 100 seeds (± s.e.)")
    ax.plot(n, success, "s--", label="success rate")
    ax.set_xscale("log")
    ax.set_xticks(n, [str(v) for v in n])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel("demonstrations the action head was fitted on (frozen backbone)")
    ax.set_ylabel("PushT")
    finish_pusht_plot(fig, ax, out, legend_size=7)


if __name__ == "__main__":
    {"policy": policy_rows, "dynamics": dynamics_rows, "curve": curve_rows,
     "architecture": architecture_rows, "gpu": gpu_rows, "gpu-plot": gpu_plot,
     "head": head_rows, "demos-plot": demos_plot}[sys.argv[1]]()
