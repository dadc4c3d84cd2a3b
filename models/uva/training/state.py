"""Resumable training state on disk (<out>/state/step_N/ + an atomic pointer), and how many steps
of a stage a chain of --init continuations already holds."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from ..checkpoint import CheckpointError, save_checkpoint, total_steps
from ..fsutil import atomic_write, atomic_write_json
from .args import HEAD_STAGE
from .distributed import DistInfo


class RunState:
    """Resumable checkpoints under <out>/state/step_N/, with an atomically updated pointer."""

    def __init__(self, out: Path, info: DistInfo):
        self.dir = out / "state"
        self.info = info

    def latest(self) -> Path | None:
        pointer = self.dir / "latest.json"
        if not pointer.is_file():
            return None
        path = self.dir / json.loads(pointer.read_text())["dir"]
        if not path.is_dir():
            raise CheckpointError(f"{pointer}: points to missing {path}")
        return path

    def save(self, step: int, model, cfg, normalizers, optimizer, scheduler, ema, extra: dict,
             more_state: dict | None = None):
        """`more_state`: anything else a resume needs (merged into train_state.pt)."""
        if not self.info.is_main:
            return
        path = self.dir / f"step_{step:08d}"
        save_checkpoint(path, model, cfg, normalizers, extra)
        state = {"step": step, "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "ema": ema.state_dict(),
                 **(more_state or {})}
        atomic_write(path / "train_state.pt", lambda tmp: torch.save(state, tmp))
        atomic_write_json(self.dir / "latest.json", {"dir": path.name, "step": step})
        for old in self.dir.glob("step_*"):
            if old != path:
                shutil.rmtree(old, ignore_errors=True)


def steps_before(init_meta: dict, stage: str) -> int:
    """Steps of `stage` already in --init's chain, so `total_steps` counts the whole history: the
    init's own total when it is that stage; its backbone's joint steps when the joint stage
    continues a head refit."""
    if init_meta.get("stage") == stage:
        return total_steps(init_meta) or 0
    if stage == "joint" and init_meta.get("stage") == HEAD_STAGE:
        return init_meta.get("backbone_total_steps", 0)
    return 0
