"""Runs inside the LeRobot venv (`make lerobot-env`), never imported by `uva`: LeRobot's own
LeRobotDataset (PyPI `lerobot-dataset`, module `ledataset`) writes and reads v3 datasets here.
The uva side (lerobot_io.py) exchanges plain files with it: `meta.json` plus one
`episode_NNNN.npz` per episode (`img_<camera>` uint8 (T, H, W, 3), `state`, `action` float32).

    python lerobot_bridge.py export NPZ_DIR OUT_DIR      # npz -> LeRobotDataset v3
    python lerobot_bridge.py import DATASET_DIR NPZ_DIR  # LeRobotDataset v3 -> npz
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

IMAGE_PREFIX = "observation.images."


def export(npz_dir: Path, out: Path) -> dict:
    from ledataset.datasets.lerobot_dataset import LeRobotDataset
    meta = json.loads((npz_dir / "meta.json").read_text())
    episodes = sorted(npz_dir.glob("episode_*.npz"))
    first = np.load(episodes[0])
    features = {f"{IMAGE_PREFIX}{c}": {"dtype": "image", "shape": tuple(first[f"img_{c}"].shape[1:]),
                                       "names": ["height", "width", "channels"]}
                for c in meta["cameras"]}
    for key, arr in (("observation.state", first["state"]), ("action", first["action"])):
        names = meta.get("joint_names") if len(meta.get("joint_names") or []) == arr.shape[1] \
            else [f"{key.split('.')[-1]}_{i}" for i in range(arr.shape[1])]
        features[key] = {"dtype": "float32", "shape": (arr.shape[1],), "names": list(names)}
    ds = LeRobotDataset.create(repo_id=meta["repo_id"], fps=int(meta["fps"]), features=features,
                               root=out, robot_type=meta.get("robot_type"), use_videos=False)
    for path in episodes:
        ep = np.load(path)
        for t in range(len(ep["action"])):
            frame = {f"{IMAGE_PREFIX}{c}": ep[f"img_{c}"][t] for c in meta["cameras"]}
            frame.update({"observation.state": ep["state"][t], "action": ep["action"][t],
                          "task": meta["task"]})
            ds.add_frame(frame)
        ds.save_episode()
    ds.finalize()
    return {"episodes": len(episodes), "frames": ds.meta.total_frames}


def to_uint8(x) -> np.ndarray:
    """LeRobot's (3, H, W) float frame in [0, 1] -> (H, W, 3) uint8 (exact for PNG frames)."""
    arr = x.numpy() if hasattr(x, "numpy") else np.asarray(x)
    return np.clip(np.round(arr.transpose(1, 2, 0) * 255.0), 0, 255).astype(np.uint8)


def import_(root: Path, npz_dir: Path) -> dict:
    from ledataset.datasets.lerobot_dataset import LeRobotDataset
    info = json.loads((root / "meta" / "info.json").read_text())
    ds = LeRobotDataset(repo_id=f"local/{root.name}", root=root)
    keys = list(ds.meta.camera_keys)
    for need in ("observation.state", "action"):
        if need not in ds.features:
            raise SystemExit(f"{root}: no '{need}' feature (has {sorted(ds.features)})")
    if not keys:
        raise SystemExit(f"{root}: no observation.images.* feature (has {sorted(ds.features)})")
    cameras = [k[len(IMAGE_PREFIX):] if k.startswith(IMAGE_PREFIX) else k.replace(".", "_")
               for k in keys]
    by_episode: dict[int, dict] = {}
    for i in range(len(ds)):
        item = ds[i]
        ep = by_episode.setdefault(int(item["episode_index"]), {"img": {c: [] for c in cameras},
                                                                 "state": [], "action": []})
        for c, k in zip(cameras, keys):
            ep["img"][c].append(to_uint8(item[k]))
        ep["state"].append(np.asarray(item["observation.state"], np.float32))
        ep["action"].append(np.asarray(item["action"], np.float32))
    npz_dir.mkdir(parents=True, exist_ok=True)
    for n, (index, ep) in enumerate(sorted(by_episode.items())):
        np.savez(npz_dir / f"episode_{n:04d}.npz", state=np.stack(ep["state"]),
                 action=np.stack(ep["action"]),
                 **{f"img_{c}": np.stack(v) for c, v in ep["img"].items()})
    names = ds.features["observation.state"].get("names")
    meta = {"fps": ds.fps, "cameras": cameras, "camera_keys": keys,
            "joint_names": names if isinstance(names, list) else None,
            "episode_indices": sorted(by_episode), "codebase_version": info.get("codebase_version"),
            "robot_type": info.get("robot_type")}
    (npz_dir / "meta.json").write_text(json.dumps(meta))
    return {"episodes": len(by_episode), "frames": len(ds)}


def main(argv: list[str]) -> None:
    verb, src, dst = argv
    result = export(Path(src), Path(dst)) if verb == "export" else import_(Path(src), Path(dst))
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
