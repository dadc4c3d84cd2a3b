"""What a training run is asked to do: the stages, and every option of `uva train` (TrainArgs)."""
from __future__ import annotations

from dataclasses import dataclass, field

STAGES = ("vae", "video", "joint")
HEAD_STAGE = "head"


@dataclass
class TrainArgs:
    data: str
    out: str
    stage: str = "all"
    steps: dict = field(default_factory=lambda: {"vae": 1500, "video": 1000, "joint": 4000,
                                                 "head": 5000})
    batch_size: int = 32
    lr: float = 1e-4
    vae_lr: float = 5e-4
    weight_decay: float = 0.02
    warmup_steps: int = 100
    ema_decay: float = 0.999
    ckpt_every: int = 250
    eval_every: int = 250
    seed: int = 0
    resume: bool = False
    device: str = "cpu"
    bf16: bool = False
    init: str | None = None  # checkpoint to start a stage from (default: previous stage's output)
    vae_from: str | None = None  # reuse this checkpoint's trained VAE instead of the vae stage
    modes: list[str] | None = None  # joint-stage task modes (default: all five)
    config_overrides: dict = field(default_factory=dict)
    val_fraction: float = 0.05
    max_minutes: float | None = None  # stop (with a checkpoint) after this wall time
    keep_every: int | None = None  # keep EMA snapshots under <stage>/milestones/ (learning curves)
    overwrite: bool = False  # replace stages `out` already holds (else refused unless resume)
