"""`uva train` under torchrun (gloo on CPU): gradients really are averaged across ranks."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from safetensors.torch import load_file

from conftest import TINY

TINY_JSON = json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in TINY.items()})


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from uva.cli import main as uva_main
    root = tmp_path_factory.mktemp("ddp")
    data = root / "d.zarr"
    assert uva_main(["collect", "--env", "pusht", "--episodes", "2", "--out", str(data)]) == 0
    return root, data


def _cmd(data, out, stage, steps, launcher=(), extra=()):
    flag = {"vae": "--vae-steps", "joint": "--joint-steps"}[stage]
    return [*launcher, "-m", "uva.cli", "--threads", "1", "train", "--data", str(data), "--out",
            str(out), "--stage", stage, flag, str(steps), "--batch-size", "4", "--ckpt-every", "2",
            "--eval-every", "1000", "--config", TINY_JSON, *extra]


def _initial_weights():
    """What `uva train` builds before step 1 (it seeds with --seed 0)."""
    import torch
    from uva import UVAConfig, UVAModel
    torch.manual_seed(0)
    return UVAModel(UVAConfig(**TINY)).state_dict()


def _params(path):
    return load_file(str(path / "model.safetensors"))


def _run(cmd):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


TORCHRUN = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2")


# the VAE stage takes the same DDP path as the joint one; CI keeps the joint one
@pytest.mark.parametrize("stage", [pytest.param("vae", marks=pytest.mark.slow), "joint"])
def test_two_ranks_match_one_process_with_the_same_global_batch(setup, stage):
    root, data = setup
    extra = ()
    if stage == "joint":
        vae_run = root / "vae_init"
        if not (vae_run / "vae" / "final").exists():
            _run(_cmd(data, vae_run, "vae", 2, (sys.executable,)))
        extra = ("--init", str(vae_run / "vae" / "final"))
    single, multi = root / f"single_{stage}", root / f"multi_{stage}"
    _run(_cmd(data, single, stage, 4, (sys.executable,), extra))
    _run(_cmd(data, multi, stage, 4, TORCHRUN, extra))
    a = _params(single / stage / "state" / "step_00000004")
    b = _params(multi / stage / "state" / "step_00000004")
    start = _params(root / "vae_init" / "vae" / "final") if stage == "joint" else _initial_weights()
    flat = lambda d: np.concatenate([d[k].numpy().ravel() for k in sorted(d)])
    update = np.linalg.norm(flat(a) - flat(start))
    mismatch = np.linalg.norm(flat(a) - flat(b))
    # Adam turns float-rounding noise on near-zero gradients into lr-sized steps, so compare
    # the mismatch with the size of the update: ranks that did not average their gradients
    # would differ by a sizeable fraction of it.
    assert update > 1e-3
    assert mismatch / update < 0.02, (mismatch, update)
    # only rank 0 wrote files: one log, one state dir, one summary
    assert json.loads((multi / "train_summary.json").read_text())["world_size"] == 2
    rows = (multi / stage / "log.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in rows] == [1, 2, 3, 4]
    assert len(list((multi / stage / "state").glob("step_*"))) == 1


def test_killed_two_rank_run_resumes_to_the_same_weights(setup):
    root, data = setup
    full, cut = root / "full2", root / "cut2"
    _run(_cmd(data, full, "vae", 6, TORCHRUN))
    _run(_cmd(data, cut, "vae", 6, TORCHRUN, ("--max-minutes", "0.00001")))  # stops after step 1
    assert json.loads((cut / "vae" / "state" / "latest.json").read_text())["step"] < 6
    _run(_cmd(data, cut, "vae", 6, TORCHRUN, ("--resume",)))
    a = _params(full / "vae" / "state" / "step_00000006")
    b = _params(cut / "vae" / "state" / "step_00000006")
    assert max(float(np.abs(a[k].numpy() - b[k].numpy()).max()) for k in a) < 1e-6
