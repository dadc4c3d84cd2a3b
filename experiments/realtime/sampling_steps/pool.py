"""Pool the paired 10- vs 20-step blocks of run.py into one paired difference per file (the
decision to ship 20 DDIM steps in the PushT file, and to keep 10 in the Panda file, rests on
it). Prints and writes JSON.

    python experiments/realtime/sampling_steps/pool.py --task pusht --out experiments/realtime/sampling_steps/more_steps_pusht_pooled.json
    python experiments/realtime/sampling_steps/pool.py --task panda --out experiments/realtime/sampling_steps/more_steps_panda_pooled.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from uva.evaluate import paired_scores

HERE = Path(__file__).resolve().parent
BLOCKS = {"pusht": ("more_steps_pusht.json", "more_steps_pusht_seeds960000.json",
                    "more_steps_pusht_seeds100000.json", "more_steps_pusht_seeds200000.json"),
          "panda": ("more_steps_panda.json", "more_steps_panda_seeds100000.json",
                    "more_steps_panda_seeds200000.json", "more_steps_panda_seeds970000.json",
                    "more_steps_panda_seeds970050.json")}


def per_episode(doc: dict, ckpt: str) -> list[dict]:
    if "checkpoints" in doc:
        return doc["checkpoints"][ckpt]["closed_loop"]["per_episode"]
    return [row for block in doc["blocks"].values() for row in per_episode(block, ckpt)]


def summary(rows: list[dict], ref: str, other: str) -> dict:
    """run.py's per-episode rows paired seed by seed (uva.evaluate.paired_scores): `other` −
    `ref`."""
    side = {k: [{"seed": r["seed"], **r[k]} for r in rows] for k in (ref, other)}
    return {**paired_scores(side[ref], side[other]), "names": {"reference": ref, "other": other}}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=sorted(BLOCKS), default="pusht")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    blocks, every = {}, []
    for name in BLOCKS[a.task]:
        rows = per_episode(json.loads((HERE / name).read_text()), f"models/checkpoints/{a.task}")
        blocks[name] = summary(rows, "10", "20")
        every += rows
    if len({r["seed"] for r in every}) != len(every):
        raise SystemExit("a seed appears in two blocks")
    result = {"question": f"{a.task} file, 20 vs 10 DDIM steps in the action head, every paired block",
              "blocks": blocks,
              "pooled": {k: v for k, v in summary(every, "10", "20").items() if k != "seeds"}}
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["pooled"], indent=1))


if __name__ == "__main__":
    main()
