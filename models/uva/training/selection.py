"""Which weights a head stage ends with: per trained head, the EMA weights of the validation with
the lowest held-out loss, not merely the last ones.

A head refitted on a frozen backbone over-fits a few hundred demonstrations: its held-out loss
turns up after a few thousand steps while the training loss keeps falling, and the closed-loop
score follows the held-out loss (docs/findings.md). Every validation of the stage is a
candidate; the final checkpoint holds, for each head, the candidate where the mean held-out loss
of the modes that head decodes was lowest (a shared policy/inverse head: both modes; a separate
inverse head: its own). The choice survives a resume (it travels in the run's train state).
"""
from __future__ import annotations

import math

import torch


class BestHeldOut:
    """The lowest-held-out-loss EMA weights of each trained head.

    heads: {mode: head module} as the stage trains them (one module may decode several modes).
    `update` is called with the EMA weights in the heads' parameters."""

    def __init__(self, heads: dict[str, torch.nn.Module]):
        self.groups: dict[str, tuple[torch.nn.Module, list[str]]] = {}
        for mode, module in heads.items():
            name = next((g for g, (m, _) in self.groups.items() if m is module), None)
            if name is None:
                self.groups[mode] = (module, [mode])
            else:
                self.groups[name][1].append(mode)
        self.best: dict[str, dict] = {}  # group -> {"step", "val_loss", "weights"}

    def update(self, step: int, val: dict[str, float]) -> list[str]:
        """Record the current weights of every head whose held-out loss at `step` is its lowest
        so far (a non-finite loss never is). Returns the heads that improved."""
        improved = []
        for name, (module, modes) in self.groups.items():
            losses = [val[m] for m in modes if m in val]
            if len(losses) != len(modes):
                continue
            loss = sum(losses) / len(losses)
            if not math.isfinite(loss):
                continue
            if name not in self.best or loss < self.best[name]["val_loss"]:
                self.best[name] = {"step": step, "val_loss": loss,
                                   "weights": {k: v.detach().clone()
                                               for k, v in module.state_dict().items()}}
                improved.append(name)
        return improved

    def apply(self) -> None:
        """Load each head's recorded weights into it (heads never validated keep theirs)."""
        for name, (module, _) in self.groups.items():
            if name in self.best:
                module.load_state_dict(self.best[name]["weights"])

    def summary(self) -> dict:
        """{head (named by its first mode): {"modes", "step", "val_loss"}} for checkpoint meta."""
        return {name: {"modes": modes, "step": self.best[name]["step"],
                       "val_loss": self.best[name]["val_loss"]}
                for name, (_, modes) in self.groups.items() if name in self.best}

    def state_dict(self) -> dict:
        return {name: dict(entry) for name, entry in self.best.items()}

    def load_state_dict(self, state: dict) -> None:
        unknown = set(state) - set(self.groups)
        if unknown:
            raise ValueError(f"saved head selection names heads {sorted(unknown)}, the stage "
                             f"trains {sorted(self.groups)}")
        self.best = {name: dict(entry) for name, entry in state.items()}
