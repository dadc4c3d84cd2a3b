"""`uva dataset info DATA [--json] [--sheet PNG]`: what a replay buffer holds, and a contact sheet
(first / middle / last frame of a few episodes per camera) so a person can see what was recorded."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ..data import ReplayBuffer, read_replay_buffer

SOURCE_KEYS = ("source", "env", "bags", "lerobot_root", "lerobot_repo_id", "segments",
               "correction_episodes", "correction_policy", "action_labels", "image_size")
SHEET_EPISODES = 4
SHEET_HEIGHT = 96


def _ranges(x: np.ndarray) -> dict:
    return {"min": x.min(0).round(6).tolist(), "max": x.max(0).round(6).tolist()}


def describe(buf: ReplayBuffer) -> dict:
    lengths = np.diff(np.concatenate([[0], buf.episode_ends]))
    a = buf.attrs
    seeds = a.get("seeds")
    sources = {k: a[k] for k in SOURCE_KEYS if k in a}
    if seeds:
        sources["seeds"] = {"count": len(seeds), "first": min(seeds), "last": max(seeds)}
    return {
        "episodes": int(buf.n_episodes), "steps": int(len(buf.action)),
        "fps": a.get("fps", a.get("control_hz")),
        "cameras": {c: list(f.shape[1:3]) for c, f in buf.images.items()},
        "state_dim": int(buf.state.shape[1]), "action_dim": int(buf.action.shape[1]),
        "joint_names": a.get("joint_names"),
        "episode_length": {"min": int(lengths.min()), "mean": float(lengths.mean()),
                           "max": int(lengths.max())},
        "state_range": _ranges(buf.state), "action_range": _ranges(buf.action),
        "sources": sources,
    }


def contact_sheet(buf: ReplayBuffer, path: str | Path, n_episodes: int = SHEET_EPISODES) -> str:
    """One row per episode (evenly spread), per camera its first, middle and last frame."""
    from PIL import Image, ImageDraw
    eps = sorted(set(np.linspace(0, buf.n_episodes - 1, min(n_episodes, buf.n_episodes))
                     .round().astype(int).tolist()))
    slices = buf.episode_slices()
    tiles, label_h, pad = [], 14, 4
    for e in eps:
        s = slices[e]
        row = []
        for cam, frames in buf.images.items():
            for tag, i in (("first", s.start), ("mid", (s.start + s.stop - 1) // 2), ("last", s.stop - 1)):
                img = Image.fromarray(frames[i])
                scale = SHEET_HEIGHT / img.height
                img = img.resize((max(1, round(img.width * scale)), SHEET_HEIGHT), Image.NEAREST)
                row.append((img, f"ep{e} {cam} {tag}"))
        tiles.append(row)
    width = max(sum(t.width + pad for t, _ in row) for row in tiles) + pad
    height = len(tiles) * (SHEET_HEIGHT + label_h + pad) + pad
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    y = pad
    for row in tiles:
        x = pad
        for img, label in row:
            draw.text((x, y), label, fill=(0, 0, 0))
            sheet.paste(img, (x, y + label_h))
            x += img.width + pad
        y += SHEET_HEIGHT + label_h + pad
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return str(path)


def dataset_info(data: str | Path, sheet: str | Path | None = None, as_json: bool = False) -> dict:
    buf = read_replay_buffer(data)
    info = {"data": str(data), **describe(buf)}
    info["sheet"] = contact_sheet(buf, sheet or Path(str(Path(data)).rstrip("/") + ".sheet.png"))
    if not as_json:  # a readable summary; stdout keeps the JSON alone
        cams = ", ".join(f"{c} {h}x{w}" for c, (h, w) in info["cameras"].items())
        print(f"{data}: {info['episodes']} episodes, {info['steps']} steps at {info['fps']} Hz; "
              f"cameras {cams}; state {info['state_dim']}, action {info['action_dim']}; "
              f"episode length {info['episode_length']}; from {info['sources']}; "
              f"sheet {info['sheet']}", file=sys.stderr)
    return info
