"""`uva dataset info`: the JSON contract fields, ranges, sources and the contact sheet."""
from __future__ import annotations

import json

import numpy as np
from PIL import Image

from uva.cli import main as uva_main
from uva.data import write_replay_buffer


def test_info_json_and_contact_sheet(tmp_path, capsys):
    rng = np.random.default_rng(0)
    eps = [{"images": {"front": rng.integers(0, 256, (t, 30, 40, 3), dtype=np.uint8),
                       "wrist": rng.integers(0, 256, (t, 16, 16, 3), dtype=np.uint8)},
            "state": rng.uniform(-1, 1, (t, 3)).astype(np.float32),
            "action": rng.uniform(0, 2, (t, 2)).astype(np.float32)} for t in (5, 9, 4, 6, 7)]
    write_replay_buffer(tmp_path / "d.zarr", eps, {"source": "rosbag2", "control_hz": 15.0,
                                                   "joint_names": ["a", "b", "c"],
                                                   "bags": ["b0", "b1"]})
    assert uva_main(["dataset", "info", str(tmp_path / "d.zarr"), "--json",
                     "--sheet", str(tmp_path / "sheet.png")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["episodes"] == 5 and info["steps"] == 31 and info["fps"] == 15.0
    assert info["cameras"] == {"front": [30, 40], "wrist": [16, 16]}
    assert info["state_dim"] == 3 and info["action_dim"] == 2 and info["joint_names"] == ["a", "b", "c"]
    assert info["episode_length"] == {"min": 4, "mean": 31 / 5, "max": 9}
    state = np.concatenate([e["state"] for e in eps])
    assert np.allclose(info["state_range"]["min"], state.min(0), atol=1e-5)
    assert np.allclose(info["action_range"]["max"], np.concatenate([e["action"] for e in eps]).max(0), atol=1e-5)
    assert info["sources"] == {"source": "rosbag2", "bags": ["b0", "b1"]}
    sheet = Image.open(tmp_path / "sheet.png")
    # 4 of 5 episodes, each a row; per camera first/mid/last at 96 px high
    assert sheet.height >= 4 * 96 and sheet.width >= 3 * (128 + 96)
    px = np.asarray(sheet)
    first = eps[0]["images"]["front"][0]
    # the first tile is the first frame, upscaled 96/30 by nearest neighbour
    assert np.array_equal(px[4 + 14, 4], first[0, 0])
