"""scripts/results_table.py renders the shipped models' table from their metrics.json."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_results_table_has_one_row_per_shipped_model_with_its_stored_numbers(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "results_table.py")],
                         capture_output=True, text=True, check=True).stdout
    lines = out.strip().splitlines()
    shipped = sorted(p.parent for p in (ROOT / "models" / "checkpoints").glob("*/metrics.json"))
    assert len(shipped) >= 2 and len(lines) == 2 + len(shipped)
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    for ckpt, line in zip(shipped, lines[2:]):
        ev = json.loads((ckpt / "metrics.json").read_text())["eval"]
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == f"`models/checkpoints/{ckpt.name}`"
        assert cells[2] == f"{ev['score']:.3f}"
        assert cells[3].startswith(f"{round(ev['success_rate'] * ev['episodes'])}/{ev['episodes']}")
        assert cells[8] == str(ev["training_steps"])
    # another folder of checkpoints: only what it holds
    one = tmp_path / "ckpts" / "pusht"
    one.mkdir(parents=True)
    for name in ("metrics.json", "model.safetensors"):
        (one / name).write_bytes((ROOT / "models" / "checkpoints" / "pusht" / name).read_bytes())
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "results_table.py"),
                          "--checkpoints", str(tmp_path / "ckpts")],
                         capture_output=True, text=True, check=True).stdout
    assert len(out.strip().splitlines()) == 3 and "pusht" in out and "panda" not in out
