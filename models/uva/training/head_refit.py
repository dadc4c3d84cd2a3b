"""The `head` stage: refit the action head(s) alone on the frozen backbone's policy- and
inverse-mode latents (optionally as a head of another shape, or splitting off an inverse head)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..checkpoint import CheckpointError, load_checkpoint, total_steps
from ..config import UVAConfig
from ..model import UVAModel
from .args import HEAD_STAGE
from .caches import HEAD_PREFIXES, cached_head_latents, training_windows
from .checks import HEAD_SHAPE_NEUTRAL_FIELDS, check_dataset_fits
from .loop import batch_indices, run_stage
from .selection import BestHeldOut
from .state import steps_before


HEAD_MODES = ("policy_model", "inverse_model")
"""The modes whose action-head input is a fixed function of the window (every future token
hidden, or every one shown), i.e. the head's two uses at inference: the policy and inverse
dynamics. The head stage fits both so the refitted head keeps serving inverse dynamics."""


class HeadsByMode(torch.nn.ModuleDict):
    """The action head(s) the head stage trains, keyed by the mode each decodes (one module,
    possibly listed twice, so DDP can wrap them with a single forward)."""

    def forward(self, mode: str, *args, **kwargs):
        return self[mode](*args, **kwargs)


def train_head(buf, init: Path, args, out, info):
    """Refit the action head(s) alone on the frozen backbone's policy- and inverse-mode latents
    (the HEAD_MODES the checkpoint was trained with, or those in --modes; one mode per step),
    each mode training the head that decodes it (`UVAModel.head_for`). Overriding action-head
    shape fields (e.g. action_head_width) starts fresh heads of that shape; without overrides the
    existing heads continue. `inverse_action_head: true` on a file with one shared head splits
    it: the new inverse head starts as a copy of the shared one. The VAE, transformer and video
    head are unchanged, so the refitted file is still a full UVA model (video, dynamics, inverse
    dynamics). The final file holds each head's EMA weights from the validation where its
    held-out loss was lowest (training.selection)."""
    source, cfg, normalizers, init_meta = load_checkpoint(init, args.device)
    check_dataset_fits(buf, cfg, args.data, init)
    cfg = UVAConfig.from_dict({**cfg.to_dict(), **args.config_overrides})
    model = UVAModel(cfg).to(args.device)
    fresh_head = any(getattr(source.cfg, k) != getattr(cfg, k) for k in args.config_overrides
                     if k not in HEAD_SHAPE_NEUTRAL_FIELDS)
    state = source.state_dict()
    if cfg.inverse_action_head and source.inverse_action_head is None:
        state |= {"inverse_" + k: v for k, v in state.items() if k.startswith("action_head.")}
    keep = {k: v for k, v in state.items()
            if not (fresh_head and k.startswith(HEAD_PREFIXES))
            and not (k.startswith("inverse_action_head.") and not cfg.inverse_action_head)}
    missing, unexpected = model.load_state_dict(keep, strict=False)
    if unexpected or any(not k.startswith(HEAD_PREFIXES) for k in missing):
        raise CheckpointError(f"{init}: weights do not fit the head stage's model")
    wanted = args.modes or cfg.active_modes  # a UVA-action file: the policy only
    modes = [m for m in HEAD_MODES if m in wanted]
    if fresh_head and cfg.inverse_action_head and "inverse_model" not in modes:
        raise ValueError("a new action-head shape replaces the inverse-dynamics head too: "
                         "fit it as well (--modes policy_model inverse_model)")
    latents, actions, proprio, train_idx, val_idx, val_eps = training_windows(
        model, buf, normalizers, args, out, info)
    model.requires_grad_(False)
    heads = HeadsByMode({m: model.head_for(m) for m in modes}).requires_grad_(True)
    params = list(heads.parameters())
    val_rows = np.linspace(0, len(val_idx) - 1, min(128, len(val_idx))).astype(int)
    train_eps, _ = buf.train_val_episodes(args.val_fraction)  # train_idx's episodes, in order

    def windows_latents(mode, episodes, split):
        return cached_head_latents(model, mode, latents, proprio, buf, episodes, args.device,
                                   out.parent / f"{mode}_{split}_latents.pt", write=info.is_main)

    train_z = {m: windows_latents(m, train_eps, "train") for m in modes}
    val_z = {m: windows_latents(m, val_eps, "val")[val_rows].float() for m in modes}
    val_actions = actions[val_idx.actions[val_rows]].to(args.device)

    def loss_fn(module, step, gen, part):
        rows = batch_indices(len(train_idx), args.batch_size, args.seed, step)
        mode = modes[np.random.default_rng([args.seed, step, 1]).integers(len(modes))]
        mine = rows[part]
        loss = module(mode, train_z[mode][mine].float(),
                      actions[train_idx.actions[mine]].to(args.device), cfg.diffusion_batch_mul,
                      gen, part, len(rows))
        return loss, {f"{mode}/action": loss.item()}

    @torch.no_grad()
    def val_fn(m):
        return {mode: m.head_for(mode).loss(val_z[mode], val_actions, cfg.diffusion_batch_mul,
                                            torch.Generator().manual_seed(1234)).item()
                for mode in modes}

    prior_steps = steps_before(init_meta, HEAD_STAGE)
    extra = {"val_episodes": val_eps, "head_of": str(init),
             "backbone_total_steps": init_meta.get("backbone_total_steps", total_steps(init_meta)),
             "fresh_head": fresh_head}
    return run_stage(HEAD_STAGE, model, cfg, normalizers, args, out, info, loss_fn, val_fn,
                     params, extra, prior_steps, trained=heads, select=BestHeldOut(dict(heads)))
