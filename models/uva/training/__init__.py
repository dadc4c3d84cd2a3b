"""Training: the reference UVA recipe on CPU budgets, and unchanged under torchrun/accelerate.

Stages: `vae` (frame autoencoder, then frozen) -> `video` (video_model only) -> `joint` (all five
task modes, from the video stage's weights). `all` runs the three in order. `head` (asked for by
name, beyond the paper's recipe) refits only the action head on a trained model's frozen
policy- and inverse-mode latents, optionally as a different head (--config action-head fields).
Every stage uses AdamW (betas 0.9/0.95, wd 0.02), cosine LR with warmup, EMA weights (diffusers
EMAModel), validation losses per mode, PNG loss curves, and atomic resumable checkpoints.

Resume is exact: every random draw of step k (batch order, task mode, mask ratio, masks, noise,
dropout) is derived from (seed, k), so a run killed at any moment and resumed from its last
checkpoint replays no step and skips none. Under a launcher (WORLD_SIZE > 1) each rank takes its
slice of the same global batch and DDP averages gradients; only rank 0 writes files.

Modules: `args` (TrainArgs, the stage names), `run` (`train()`: checks, run lock, stages in
order), `stages` (vae, video/joint, --vae-from), `head_refit` (the head stage), `loop` (the
resumable loop, per-step randomness, EMA), `selection` (which validation's weights a head
stage keeps), `caches` (content-keyed frame and head latents),
`checks` (which fields a stage may change, dataset fit), `state` (resumable state on disk),
`distributed` (ranks, batch slices), `plots` (loss curves).
"""
from .args import HEAD_STAGE, STAGES, TrainArgs
from .run import train

__all__ = ["HEAD_STAGE", "STAGES", "TrainArgs", "train"]
