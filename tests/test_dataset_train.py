"""A policy trains from an imported bag dataset unchanged, and its checkpoint remembers the
cameras and joint names it was trained on."""
from __future__ import annotations

import json

import numpy as np

from conftest import TINY
from test_dataset_import import JOINTS, T0, tmap, write_bag
from uva.cli import main as uva_main
from uva.policy import load_policy

TINY_JSON = json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in TINY.items()})


def test_import_train_load_predict(tmp_path):
    bags = [write_bag(tmp_path / f"ep{i}", steps=40, t0=T0 + i * 100 * 10**9) for i in range(2)]
    (tmp_path / "map.yaml").write_text(json.dumps(tmap()))
    data = tmp_path / "demos.zarr"
    assert uva_main(["dataset", "import", *sum((["--bag", str(b)] for b in bags), []),
                     "--topics", str(tmp_path / "map.yaml"), "--out", str(data),
                     "--image-size", "64"]) == 0
    assert uva_main(["dataset", "info", str(data), "--json"]) == 0
    run = tmp_path / "run"
    assert uva_main(["--threads", "2", "train", "--data", str(data), "--out", str(run),
                     "--vae-steps", "2", "--video-steps", "2", "--joint-steps", "2",
                     "--batch-size", "4", "--ckpt-every", "2", "--eval-every", "1000",
                     "--config", TINY_JSON]) == 0
    meta = json.loads((run / "joint" / "final" / "config.json").read_text())
    assert meta["dataset"]["cameras"] == ["front"] and meta["dataset"]["joint_names"] == JOINTS
    assert meta["dataset"]["camera_sizes"] == {"front": [64, 64]} and meta["dataset"]["fps"] == 10.0
    policy = load_policy(run / "joint" / "final")
    from uva.data import read_replay_buffer
    buf = read_replay_buffer(data)
    n = policy.cfg.n_frames
    chunk = policy.predict_action({"image": buf.img[:n], "state": buf.state[:n]})
    assert chunk.shape == (policy.cfg.horizon, len(JOINTS)) and np.isfinite(chunk).all()
    # the normaliser was fitted on the imported labels: predictions stay inside their range
    lo, hi = buf.action.min(0), buf.action.max(0)
    span = hi - lo
    assert ((chunk >= lo - 0.5 * span) & (chunk <= hi + 0.5 * span)).all()
