"""LeRobotDataset v3 in and out, through the LeRobot team's own code.

PyPI `lerobot-dataset` 0.4.4 (LeRobot's dataset code as a standalone package, module `ledataset`)
is what reads and writes the datasets; `lerobot` itself pins torch<2.11 and much else. Neither can
share this venv: their video module imports torchvision at import time, and PyPI's torchvision
needs PyPI's CUDA build of torch (with our CPU torch it fails with "operator torchvision::nms
does not exist"). So LeRobot lives in its own venv (`make lerobot-env`: torch 2.13.0 and
torchvision 0.28.0 from PyPI, lerobot-dataset 0.4.4), found at $UVA_LEROBOT_PYTHON or
<repo>/.lerobot-venv/bin/python, and this module talks to it through files
(lerobot_bridge.py runs there; see its docstring).

Exports store frames as LeRobot "image" features (PNG, lossless), so a round trip is exact and
no video decoder is needed; any LeRobot policy trains on image features. Imports read whatever
LeRobotDataset reads: image features anywhere, video features where its decoder (torchcodec,
which needs FFmpeg libraries) works.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..data import DatasetError, check_camera_name, read_replay_buffer, write_replay_buffer
from ..images import to_training_size

ROOT = Path(__file__).resolve().parents[3]
BRIDGE = Path(__file__).with_name("lerobot_bridge.py")


def lerobot_python() -> Path | None:
    """The LeRobot venv's interpreter, or None when it is not installed."""
    env = os.environ.get("UVA_LEROBOT_PYTHON")
    path = Path(env) if env else ROOT / ".lerobot-venv" / "bin" / "python"
    return path if path.exists() else None


def _bridge(verb: str, src: Path, dst: Path) -> dict:
    py = lerobot_python()
    if py is None:
        raise DatasetError("LeRobot datasets need LeRobot's own code in its own venv: run "
                           "`make lerobot-env` (or set UVA_LEROBOT_PYTHON)")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LD_LIBRARY_PATH")}
    env["HF_HUB_OFFLINE"] = "1"
    res = subprocess.run([str(py), str(BRIDGE), verb, str(src), str(dst)], capture_output=True,
                         text=True, env=env)
    if res.returncode != 0:
        tail = (res.stderr.strip() or res.stdout.strip()).splitlines()[-3:]
        raise DatasetError(f"LeRobot {verb} of {src} failed: {' | '.join(tail)}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def export_lerobot(data: str | Path, out: str | Path, overwrite: bool = False,
                   task: str | None = None) -> dict:
    """A replay buffer -> a LeRobotDataset v3 directory at `out` (written beside, then renamed)."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise DatasetError(f"{out} exists; pass --overwrite to replace it")
    buf = read_replay_buffer(data)
    fps = buf.attrs.get("fps", buf.attrs.get("control_hz"))
    if not fps or float(fps) != int(fps):
        raise DatasetError(f"{data}: LeRobot needs a whole-number fps; attrs give {fps!r}")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="uva_lerobot_") as work:
        work = Path(work)
        for i, s in enumerate(buf.episode_slices()):
            np.savez(work / f"episode_{i:04d}.npz", state=buf.state[s].astype(np.float32),
                     action=buf.action[s].astype(np.float32),
                     **{f"img_{c}": f[s] for c, f in buf.images.items()})
        env = buf.attrs.get("env")
        meta = {"fps": int(fps), "cameras": buf.cameras, "joint_names": buf.attrs.get("joint_names"),
                "repo_id": f"uva/{Path(str(data)).stem}", "robot_type": env or "franka",
                "task": task or {"pusht": "push the T onto the target",
                                 "panda": "put the cube on the green pad"}.get(env, "demonstration")}
        (work / "meta.json").write_text(json.dumps(meta))
        result = _bridge("export", work, tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return {"out": str(out), "fps": int(fps), "cameras": buf.cameras, **result}


def import_lerobot(root: str | Path, out: str | Path, image_size_px: int | None = None,
                   overwrite: bool = False) -> dict:
    """A LeRobotDataset v3 directory -> a replay buffer at `out`."""
    root, out = Path(root), Path(out)
    if not (root / "meta" / "info.json").is_file():
        raise DatasetError(f"{root}: not a LeRobotDataset (no meta/info.json)")
    if out.exists() and not overwrite:
        raise DatasetError(f"{out} exists; pass --overwrite to replace it")
    with tempfile.TemporaryDirectory(prefix="uva_lerobot_") as work:
        work = Path(work)
        result = _bridge("import", root, work / "npz")
        meta = json.loads((work / "npz" / "meta.json").read_text())
        cameras = [check_camera_name(c) for c in meta["cameras"]]
        episodes = []
        for path in sorted((work / "npz").glob("episode_*.npz")):
            ep = np.load(path)
            images = {c: ep[f"img_{c}"] for c in cameras}
            if image_size_px:
                images = {c: np.stack([to_training_size(f, image_size_px) for f in v])
                          for c, v in images.items()}
            episodes.append({"images": images, "state": ep["state"], "action": ep["action"]})
        attrs = {"source": "lerobot", "lerobot_root": str(root), "fps": meta["fps"],
                 "control_hz": meta["fps"], "cameras": cameras,
                 "lerobot_camera_keys": meta["camera_keys"],
                 "lerobot_episode_indices": meta["episode_indices"]}
        if meta.get("joint_names"):
            attrs["joint_names"] = meta["joint_names"]
        if image_size_px:
            attrs["image_size"] = image_size_px
        write_replay_buffer(out, episodes, attrs, overwrite=overwrite, inputs=(root,))
    return {"out": str(out), "fps": meta["fps"], "cameras": cameras, **result}
