"""PNG loss curves of a stage, from its log.jsonl."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np


def plot_curves(log_path: Path, png_path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    fig, ax = plt.subplots(figsize=(7, 4))
    series: dict[str, list] = {}
    for r in rows:
        for k, v in r.items():
            if k.startswith(("train/", "val/")) and isinstance(v, (int, float)):
                series.setdefault(k, []).append((r["step"], v))
    for k, pts in sorted(series.items()):
        xs, ys = zip(*pts)
        if k.startswith("train/") and len(ys) > 20:  # smooth noisy per-step losses
            w = max(len(ys) // 50, 5)
            ys = np.convolve(ys, np.ones(w) / w, mode="valid")
            xs = xs[w - 1:]
        ax.plot(xs, ys, label=k, linestyle="--" if k.startswith("val/") else "-")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = png_path.with_name(png_path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, png_path)
