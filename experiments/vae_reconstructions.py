"""How well does each frame VAE keep what moves? Whole-frame PSNR is dominated by the static
background, so this also reports PSNR on the *moving* pixels only (those that differ from the
dataset's median frame), and draws originals above each VAE's reconstructions (PNG) + JSON.

    python experiments/vae_reconstructions.py --data data/pusht.zarr --out outputs/vae_pusht \
        --ckpt shipped=models/checkpoints/pusht --ckpt 300=runs/pusht_vae300/vae/final
(any checkpoints: the shipped file, or a `uva train --stage vae --vae-steps 300` run)
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from uva import load_policy
from uva.fsutil import atomic_write_json
from uva.data import read_replay_buffer
from uva.metrics import psnr_uint8

MOVING_THRESHOLD = 40  # summed |RGB difference| from the median frame that counts as "moving"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--ckpt", action="append", required=True, help="LABEL=checkpoint dir")
    p.add_argument("--out", required=True)
    p.add_argument("--frames", type=int, default=512, help="validation frames measured")
    p.add_argument("--show", type=int, default=6, help="frames drawn in the PNG")
    a = p.parse_args()
    torch.set_num_threads(2)
    buf = read_replay_buffer(a.data)
    _, val_eps = buf.train_val_episodes()
    frames = buf.frame_indices(val_eps)
    frames = frames[np.linspace(0, len(frames) - 1, min(a.frames, len(frames))).astype(int)]
    originals = buf.img[frames]
    background = np.median(buf.img[::max(1, len(buf.img) // 2000)], axis=0)
    moving = np.abs(originals.astype(np.int32) - background).sum(-1) > MOVING_THRESHOLD
    results, rows = {}, [originals[np.linspace(0, len(frames) - 1, a.show).astype(int)]]
    for spec in a.ckpt:
        label, path = spec.split("=", 1)
        policy = load_policy(path)
        recon = np.concatenate([policy.reconstruct(originals[i:i + 128])
                                for i in range(0, len(originals), 128)])
        results[label] = {"ckpt": path, "psnr_db": psnr_uint8(recon, originals),
                          "moving_pixels_psnr_db": psnr_uint8(recon[moving], originals[moving])}
        rows.append(recon[np.linspace(0, len(frames) - 1, a.show).astype(int)])
        print(f"{label}: {results[label]}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    grid = np.concatenate([np.concatenate(list(r), axis=1) for r in rows], axis=0)
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST) \
        .save(out / "reconstructions.png")
    atomic_write_json(out / "vae.json", {"data": a.data, "frames": len(frames),
                                         "moving_fraction": float(moving.mean()),
                                         "rows": ["original", *results], "vaes": results})


if __name__ == "__main__":
    main()
