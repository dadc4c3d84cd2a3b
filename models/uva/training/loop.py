"""The generic resumable training loop every stage runs (AdamW, cosine LR with warmup, EMA
weights, validation, checkpoints), and the per-step randomness that makes a resume exact."""
from __future__ import annotations

import json
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from diffusers.optimization import get_cosine_schedule_with_warmup
from diffusers.training_utils import EMAModel
from tqdm import tqdm

from ..checkpoint import load_checkpoint, save_checkpoint
from ..config import UVAConfig
from ..data import dataset_facts
from ..model import UVAModel
from .args import TrainArgs
from .distributed import DistInfo, rank_slice
from .plots import plot_curves
from .selection import BestHeldOut
from .state import RunState


def step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def batch_indices(n: int, batch: int, seed: int, step: int) -> np.ndarray:
    """Global batch of step `step`: consecutive slices of a per-epoch permutation, so every
    sample is seen once per epoch and the data position is a function of the step alone."""
    per_epoch = max(n // batch, 1)
    epoch, pos = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    return perm[pos * batch:(pos + 1) * batch] if n >= batch else perm


def run_stage(stage: str, model: UVAModel, cfg: UVAConfig, normalizers, args: TrainArgs,
              out: Path, info: DistInfo, loss_fn, val_fn, params, extra: dict,
              prior_steps: int = 0, trained: torch.nn.Module | None = None,
              select: BestHeldOut | None = None) -> Path:
    """Generic resumable loop. loss_fn(module, step, gen, slice) -> (loss, logs).
    prior_steps: steps of this stage already in the init checkpoint, so `total_steps` in every
    saved checkpoint counts the whole training history of a chain of continued runs.
    trained: the submodule loss_fn calls when it is not the whole model (DDP wraps that one).
    select: the final checkpoint gets, per head, the EMA weights of its lowest validation loss
    (val_fn's {mode: loss}) instead of the last EMA weights."""
    total = args.steps[stage]
    device = torch.device(args.device)
    optimizer = torch.optim.AdamW(params, lr=args.vae_lr if stage == "vae" else args.lr,
                                  betas=(0.9, 0.95), weight_decay=args.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, min(args.warmup_steps, total // 10 + 1),
                                                total)
    ema = EMAModel(params, decay=args.ema_decay, use_ema_warmup=True)
    state = RunState(out, info)
    start = 0
    latest = state.latest() if args.resume else None
    if latest is not None:
        resumed, _, _, _ = load_checkpoint(latest, args.device)
        model.load_state_dict(resumed.state_dict())
        ts = torch.load(latest / "train_state.pt", map_location=device, weights_only=False)
        optimizer.load_state_dict(ts["optimizer"])
        scheduler.load_state_dict(ts["scheduler"])
        ema.load_state_dict(ts["ema"])
        if select is not None and ts.get("selection"):
            select.load_state_dict(ts["selection"])
        start = ts["step"]
        if info.is_main:
            print(f"[{stage}] resumed from {latest} at step {start}", flush=True)
    elif info.is_main and (out / "log.jsonl").exists():
        (out / "log.jsonl").unlink()
    module = trained or model
    if info.world > 1:
        module = torch.nn.parallel.DistributedDataParallel(module, find_unused_parameters=True)
    log_path = out / "log.jsonl"
    extra = {**extra, "stage": stage, **dataset_facts(args.data)}
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if args.bf16
                else nullcontext())
    t0 = time.time()
    bar = tqdm(range(start, total), initial=start, total=total, desc=f"train {stage}",
               disable=not info.is_main)
    step, validated_at = start, None
    for step in bar:
        torch.manual_seed(args.seed * 7919 + step * 131 + info.rank)  # dropout, per rank
        module.train()
        with autocast:
            loss, logs = loss_fn(module, step, step_generator(args.seed, step),
                                 rank_slice(args.batch_size, info))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        ema.step(params)
        done = step + 1
        if info.is_main:
            bar.set_postfix(loss=f"{loss.item():.4f}")
            row = {"step": done, "lr": scheduler.get_last_lr()[0],
                   "time_s": round(time.time() - t0, 3),  # wall clock: throughput, loss vs time
                   **{f"train/{k}": v for k, v in logs.items()}}
            if done % args.eval_every == 0 or done == total:
                with ema_weights(ema, params):
                    val = val_fn(model)
                    if select is not None:
                        select.update(done, val)
                validated_at = done
                row.update({f"val/{k}": v for k, v in val.items()})
                tqdm.write(f"[{stage}] step {done}: " + ", ".join(
                    f"{k}={v:.4f}" for k, v in row.items() if k.startswith("val/")))
            with open(log_path, "a") as f:
                f.write(json.dumps(row) + "\n")
        out_of_time = args.max_minutes is not None and (time.time() - t0) > 60 * args.max_minutes
        if done % args.ckpt_every == 0 or done == total or out_of_time:
            state.save(done, model, cfg, normalizers, optimizer, scheduler, ema, extra,
                       {"selection": select.state_dict()} if select is not None else None)
        if args.keep_every and done % args.keep_every == 0 and info.is_main:
            with ema_weights(ema, params):
                save_checkpoint(out / "milestones" / f"step_{done:08d}", model, cfg, normalizers,
                                {**extra, "steps": done, "total_steps": prior_steps + done,
                                 "weights": "ema"})
        if out_of_time:
            if info.is_main:
                print(f"[{stage}] stopping at step {done}: --max-minutes reached", flush=True)
            break
    bar.close()
    final = out / "final"
    if info.is_main:
        with ema_weights(ema, params):
            steps = step + 1 if total > start else start
            weights = {"weights": "ema"}
            if select is not None:
                if validated_at != steps:  # stopped by --max-minutes, or resumed at the end
                    select.update(steps, val_fn(model))
                select.apply()
                weights = {"weights": "ema, lowest held-out loss per head",
                           "selected": select.summary()}
                print(f"[{stage}] final weights: " + ", ".join(
                    f"{name} from step {s['step']} (held-out loss {s['val_loss']:.4f})"
                    for name, s in weights["selected"].items()), flush=True)
            save_checkpoint(final, model, cfg, normalizers,
                            {**extra, "steps": steps, "total_steps": prior_steps + steps,
                             **weights})
        plot_curves(log_path, out / "loss_curves.png", f"UVA {stage} stage")
    if info.world > 1:
        dist.barrier()
    return final


class ema_weights:
    """Context manager: temporarily swap EMA weights into the live parameters."""

    def __init__(self, ema: EMAModel, params):
        self.ema, self.params = ema, list(params)

    def __enter__(self):
        self.ema.store(self.params)
        self.ema.copy_to(self.params)

    def __exit__(self, *exc):
        self.ema.restore(self.params)
