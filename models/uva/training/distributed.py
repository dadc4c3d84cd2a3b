"""Data parallelism under a launcher (torchrun / accelerate set WORLD_SIZE): which rank this is,
and its slice of every global batch. Only rank 0 writes files."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size())


def rank_slice(global_batch: int, info: DistInfo) -> slice:
    """This rank's part of the global batch (sizes differ by at most one)."""
    base, extra = divmod(global_batch, info.world)
    start = info.rank * base + min(info.rank, extra)
    return slice(start, start + base + (1 if info.rank < extra else 0))
