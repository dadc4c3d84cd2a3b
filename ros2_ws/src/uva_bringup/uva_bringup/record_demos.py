"""Run the demonstration-recording graph without launch_ros: the same nodes and YAML as
launch/record_demos.launch.py (sim:=true), started as processes with standard `--ros-args`.

    python -m uva_bringup.record_demos sim --out outputs/demos --episodes 20 [--first-seed 100000]

Returns when the recorder has kept `--episodes` bags (or on Ctrl-C); each bag is one episode
that `uva dataset import --bag` reads with config/record_demos.topics.yaml.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SHARE = Path(__file__).resolve().parent.parent
CONFIG = SHARE / "config" / "record_demos.yaml"
TOPIC_MAP = SHARE / "config" / "record_demos.topics.yaml"


def node_commands(out: str, episodes: int, first_seed: int | None = None,
                  params: Path = CONFIG) -> list[tuple[str, list[str]]]:
    """(name, argv) per node, mirroring the launch file's sim:=true branch."""
    py = sys.executable
    seed = ["-p", f"first_seed:={first_seed}"] if first_seed is not None else []
    return [
        ("franka_sim", [py, "-m", "uva_sim.sim_node", "--ros-args", "-r", "__node:=franka_sim",
                        "--params-file", str(params), *seed]),
        ("sim_teleop", [py, "-m", "uva_bringup.sim_teleop", "--ros-args", "-r",
                        "__node:=sim_teleop", "--params-file", str(params)]),
        ("demo_recorder", [py, "-m", "uva_bringup.demo_recorder", "--ros-args", "-r",
                           "__node:=demo_recorder", "--params-file", str(params),
                           "-p", f"out_dir:={out}", "-p", f"max_episodes:={episodes}"]),
    ]


def kept_episodes(out: str | Path) -> list[Path]:
    return sorted(p for p in Path(out).glob("episode_*[0-9]") if p.is_dir())


def record(out: str, episodes: int, first_seed: int | None = None, timeout_s: float = 600,
           log_dir: str | Path | None = None) -> list[Path]:
    """Start the graph, wait for `episodes` more kept bags (the recorder numbers them after any
    already in `out`), stop the graph; returns the new bags. The simulator starts at
    `first_seed` and the recorder resets it before its first episode, so the first kept
    episode is seed `first_seed + 1`."""
    Path(out).mkdir(parents=True, exist_ok=True)
    log_dir = Path(log_dir or out)
    before = len(kept_episodes(out))
    target = before + episodes
    procs = {}
    try:
        for name, argv in node_commands(out, episodes, first_seed):
            log = open(log_dir / f"{name}.log", "w")
            procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                           env=os.environ.copy(), start_new_session=True)
        deadline = time.time() + timeout_s
        while len(kept_episodes(out)) < target:
            dead = [n for n, p in procs.items() if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{dead} exited early; see {log_dir}/<node>.log")
            if time.time() > deadline:
                raise TimeoutError(f"{len(kept_episodes(out)) - before}/{episodes} episodes after "
                                   f"{timeout_s:.0f} s; see {log_dir}/demo_recorder.log")
            time.sleep(0.2)
    finally:
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGINT)
        deadline = time.time() + 10
        for p in procs.values():
            try:
                p.wait(max(deadline - time.time(), 0.1))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
    return kept_episodes(out)[before:target]


def bag_seeds(bag: str | Path) -> list[int]:
    """The simulator's seed announced by each /franka_sim/episode message in a bag, in order
    (one value throughout when every message reached its own episode's bag)."""
    from rosbags.highlevel import AnyReader
    from uva.rosbag import typestore
    with AnyReader([Path(bag)], default_typestore=typestore()) as r:
        conns = [c for c in r.connections if c.topic == "/franka_sim/episode"]
        return [int(r.deserialize(raw, c.msgtype).data) for c, _, raw in r.messages(connections=conns)]


def bag_seed(bag: str | Path) -> int:
    """The seed of the episode a bag holds: the one most of its announcements name."""
    import numpy as np
    seeds = bag_seeds(bag)
    if not seeds:
        raise ValueError(f"{bag}: no /franka_sim/episode messages (not a sim recording?)")
    values, counts = np.unique(seeds, return_counts=True)
    return int(values[np.argmax(counts)])


def record_seeds(out: str | Path, episodes: int, first_seed: int = 100000,
                 timeout_s: float | None = None, log_dir: str | Path | None = None
                 ) -> tuple[list[Path], list[int]]:
    """Make `out` hold `episodes` recorded bags of the consecutive seeds `first_seed + 1`, ...
    (see `record`), reusing the bags already kept there: a rerun after an interruption records
    only the missing episodes. Returns (bags, seeds); raises if the seeds are not consecutive
    (e.g. `out` holds another run's bags)."""
    out = Path(out)
    bags = kept_episodes(out)[:episodes]
    seeds = [bag_seed(b) for b in bags]
    if len(bags) < episodes:
        start = seeds[-1] if seeds else first_seed
        missing = episodes - len(bags)
        new = record(str(out), missing, first_seed=start,
                     timeout_s=timeout_s or 60 + 30 * missing, log_dir=log_dir)
        bags += new
        seeds += [bag_seed(b) for b in new]
    if seeds != list(range(first_seed + 1, first_seed + 1 + episodes)):
        raise RuntimeError(f"{out}: recorded seeds are not {first_seed + 1}..."
                           f"{first_seed + episodes}: {seeds}")
    return bags, seeds


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("graph", choices=["sim"])
    ap.add_argument("--out", default="outputs/demos")
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--first-seed", type=int, default=None)
    ap.add_argument("--timeout", type=float, default=1800)
    a = ap.parse_args(argv)
    for bag in record(a.out, a.episodes, a.first_seed, a.timeout):
        print(bag)


if __name__ == "__main__":
    main()
