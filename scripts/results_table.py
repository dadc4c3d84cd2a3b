"""Print the shipped models' results table (markdown) from models/checkpoints/*/metrics.json.

    python scripts/results_table.py [--checkpoints DIR]

One row per shipped checkpoint; every number is read from the evaluation stored beside the file
(`uva eval` of that exact file, written when it was shipped), none is typed by hand.
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
        f"{ev['training_steps']}",
        f"{size_mb:.1f} MB",
    ]
    return "| " + " | ".join(cells) + " |"


def table(checkpoints: Path) -> str:
    header = ("| checkpoint | task | score | successes | actions executed "
              "per chunk | forward dynamics vs copy-last-frame | inverse dynamics MAE, normalised "
              "(hold-state) | predict_action p50 / p95 (ms, CPU) | training steps | weights |")
    lines = [header, "|" + "---|" * header.count(" | ") + "---|"]
    for ckpt in sorted(p.parent for p in checkpoints.glob("*/metrics.json")):
        lines.append(row(ckpt))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", type=Path, default=ROOT / "models" / "checkpoints")
    print(table(ap.parse_args().checkpoints.resolve()))


if __name__ == "__main__":
    main()
