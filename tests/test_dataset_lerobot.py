"""LeRobotDataset v3 in and out through LeRobot's own code (PyPI lerobot-dataset, in the venv
`make lerobot-env` builds). Without that venv these tests skip, except the one that checks the
clear error a user gets then."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from uva.cli import main as uva_main
from uva.data import read_replay_buffer, write_replay_buffer
from uva.dataset.lerobot_io import lerobot_python

needs_lerobot = pytest.mark.skipif(lerobot_python() is None,
                                   reason="LeRobot venv absent: run `make lerobot-env`")

# runs in the LeRobot venv: LeRobot's own LeRobotDataset writes (w) or reads (r) a dataset
LEROBOT_SCRIPT = r"""
import json, sys
import numpy as np
from ledataset.datasets.lerobot_dataset import LeRobotDataset
verb, root, npz = sys.argv[1:]
if verb == "w":
    d = np.load(npz)
    features = {"observation.images.top": {"dtype": "image", "shape": d["img"].shape[2:],
                                           "names": ["height", "width", "channels"]},
                "observation.state": {"dtype": "float32", "shape": (d["state"].shape[2],), "names": None},
                "action": {"dtype": "float32", "shape": (d["action"].shape[2],), "names": None}}
    ds = LeRobotDataset.create("test/written", fps=15, features=features, root=root, use_videos=False)
    for e in range(d["img"].shape[0]):
        for t in range(d["img"].shape[1]):
            ds.add_frame({"observation.images.top": d["img"][e, t], "observation.state": d["state"][e, t],
                          "action": d["action"][e, t], "task": "push"})
        ds.save_episode()
    ds.finalize()
else:
    ds = LeRobotDataset("test/read", root=root)
    items = [ds[i] for i in range(len(ds))]
    keys = ds.meta.camera_keys
    out = {k: np.stack([(it[k].numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8) for it in items]) for k in keys}
    np.savez(npz, state=np.stack([it["observation.state"].numpy() for it in items]),
             action=np.stack([it["action"].numpy() for it in items]),
             episode=np.array([int(it["episode_index"]) for it in items]),
             **{k.replace(".", "_"): v for k, v in out.items()})
    print(json.dumps({"fps": ds.fps, "keys": keys, "episodes": ds.meta.total_episodes}))
"""


def run_lerobot(tmp_path: Path, *args) -> str:
    script = tmp_path / "lerobot_script.py"
    script.write_text(LEROBOT_SCRIPT)
    res = subprocess.run([str(lerobot_python()), str(script), *map(str, args)], capture_output=True,
                         text=True, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def test_lerobot_without_its_venv_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("UVA_LEROBOT_PYTHON", str(tmp_path / "nowhere" / "python"))
    ep = {"img": np.zeros((4, 8, 8, 3), np.uint8), "state": np.zeros((4, 2), np.float32),
          "action": np.zeros((4, 2), np.float32)}
    write_replay_buffer(tmp_path / "b.zarr", [ep], {"control_hz": 10.0})
    rc = uva_main(["dataset", "export", "--lerobot", str(tmp_path / "lr"), "--data",
                   str(tmp_path / "b.zarr")])
    assert rc == 2 and "make lerobot-env" in capsys.readouterr().err
    assert not (tmp_path / "lr").exists() and not (tmp_path / "lr.partial").exists()


@needs_lerobot
def test_import_of_a_dataset_lerobot_wrote_gives_the_same_arrays(tmp_path):
    rng = np.random.default_rng(1)
    arrays = {"img": rng.integers(0, 256, (2, 6, 20, 24, 3), dtype=np.uint8),
              "state": rng.normal(size=(2, 6, 2)).astype(np.float32),
              "action": rng.normal(size=(2, 6, 2)).astype(np.float32)}
    np.savez(tmp_path / "src.npz", **arrays)
    run_lerobot(tmp_path, "w", tmp_path / "written", tmp_path / "src.npz")
    assert uva_main(["dataset", "import", "--lerobot", str(tmp_path / "written"), "--out",
                     str(tmp_path / "in.zarr")]) == 0
    buf = read_replay_buffer(tmp_path / "in.zarr")
    assert buf.cameras == ["top"] and buf.attrs["fps"] == 15 and list(buf.episode_ends) == [6, 12]
    assert np.array_equal(buf.img, arrays["img"].reshape(12, 20, 24, 3))  # PNG frames: exact
    assert np.array_equal(buf.state, arrays["state"].reshape(12, 2))
    assert np.array_equal(buf.action, arrays["action"].reshape(12, 2))


@needs_lerobot
@pytest.mark.slow
def test_export_reads_back_through_lerobots_own_dataset_class(tmp_path):
    rng = np.random.default_rng(2)
    eps = [{"images": {"front": rng.integers(0, 256, (t, 24, 32, 3), dtype=np.uint8),
                       "wrist": rng.integers(0, 256, (t, 16, 16, 3), dtype=np.uint8)},
            "state": rng.normal(size=(t, 8)).astype(np.float32),
            "action": rng.normal(size=(t, 8)).astype(np.float32)} for t in (7, 5)]
    write_replay_buffer(tmp_path / "panda.zarr", eps, {"env": "panda", "control_hz": 10.0})
    assert uva_main(["dataset", "export", "--lerobot", str(tmp_path / "lr"), "--data",
                     str(tmp_path / "panda.zarr")]) == 0
    info = json.loads((tmp_path / "lr" / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 10 and info["total_episodes"] == 2
    meta = json.loads(run_lerobot(tmp_path, "r", tmp_path / "lr", tmp_path / "back.npz"))
    assert meta == {"fps": 10, "keys": ["observation.images.front", "observation.images.wrist"],
                    "episodes": 2}
    back = np.load(tmp_path / "back.npz")
    buf = read_replay_buffer(tmp_path / "panda.zarr")
    assert np.array_equal(back["observation_images_front"], buf.images["front"])
    assert np.array_equal(back["observation_images_wrist"], buf.images["wrist"])
    assert np.array_equal(back["state"], buf.state) and np.array_equal(back["action"], buf.action)
    assert back["episode"].tolist() == [0] * 7 + [1] * 5
