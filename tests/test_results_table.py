"""scripts/results_table.py renders the README's tables from the JSON the runs wrote."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
        meta = json.loads((ckpt / "config.json").read_text())
        assert cells[5] == str(meta["uva_config"]["action_inference_steps"])  # what the file samples
        assert cells[8].startswith(f"{ev['predict_action_ms_p50']:.1f} / ")
        assert cells[8].endswith(f"({ev.get('precision', 'fp32')})")
        assert cells[9] == (f"{meta['backbone_total_steps']} + {ev['training_steps']} head"
                            if "backbone_total_steps" in meta else str(ev["training_steps"]))
    # another folder of checkpoints: only what it holds
    one = tmp_path / "ckpts" / "pusht"
    one.mkdir(parents=True)
    for name in ("metrics.json", "model.safetensors", "config.json"):
        (one / name).write_bytes((ROOT / "models" / "checkpoints" / "pusht" / name).read_bytes())
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "results_table.py"),
                          "--checkpoints", str(tmp_path / "ckpts")],
                         capture_output=True, text=True, check=True).stdout
    assert len(out.strip().splitlines()) == 3 and "pusht" in out and "panda" not in out


def _results_table():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import results_table
    finally:
        sys.path.pop(0)
    return results_table


def _body_cells(table: str) -> list[list[str]]:
    """The cells of a markdown table's body rows."""
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    return [[c.strip() for c in r.strip("|").split("|")] for r in rows[1:]]


def _write_changed(files: dict[str, str], root: Path, key: str, change) -> None:
    """The comparison's files copied under `root`, the one named `key` changed by `change(doc)`."""
    for k, rel in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        doc = json.loads((ROOT / rel).read_text())
        if k == key:
            change(doc)
        (root / rel).write_text(json.dumps(doc))


def _tables(text: str) -> list[str]:
    """The markdown tables of a text, in order."""
    return [b for b in text.split("\n\n") if b.startswith("| ")]


def test_few_demos_table_reads_every_number_from_the_comparison_files(tmp_path):
    results_table = _results_table()
    out = results_table.few_demos_table()
    main, curve, earlier = _tables(out)
    load = lambda key: json.loads((ROOT / results_table.FEW_DEMOS[key]).read_text())
    cells = _body_cells(main)
    assert [c[0] for c in cells] == ["UVA", "UVA-action", "LeRobot Diffusion Policy"]
    action, peer = load("uva_action")["all"], load("peer_paired")
    assert cells[0][2] == f"{action['reference']['score']:.3f} ± {action['reference']['score_se']:.3f}"
    assert cells[1][2] == f"{action['other']['score']:.3f} ± {action['other']['score_se']:.3f}"
    assert cells[2][2] == f"{peer['other']['score']:.3f} ± {peer['other']['score_se']:.3f}"
    assert f"{-action['paired_diff']:+.3f} ± {action['paired_diff_se']:.3f}" in out
    assert f"{-peer['paired_diff']:+.3f} ± {peer['paired_diff_se']:.3f}" in out
    ship = next(v for v in load("recipe_state")["stages"].values()
                if v["kind"] == "ship" and v["spec"].get("eval"))
    assert f"{ship['spec']['action_inference_steps']} DDIM steps" in cells[0][1]
    # the curve: one row per number of demos, each run's score and the paired difference
    doc = load("curve")
    rows = _body_cells(curve)
    first = list(doc["runs"])[0]
    points = sorted(doc["runs"][first]["points"], key=lambda p: p["demos"])
    assert [int(r[0].removesuffix(" *")) for r in rows] == [p["demos"] for p in points]
    for r, p in zip(rows, points):
        assert r[1] == f"{p['score']:.3f} ± {p['score_se']:.3f}"
        assert r[0].endswith(" *") == bool(p.get("filled"))  # a refit beside the run is marked
    last = max(doc["runs"][first]["points"], key=lambda p: p["demos"])  # the final file
    assert abs(last["score"] - action["reference"]["score"]) < 1e-9
    # the peer's column: its score where it trained, its 250-demo point the tabled peer's
    header = curve.split("\n")[0].split(" | ")
    col = header.index("LeRobot DP")
    dp = {p["demos"]: p for p in doc["runs"]["LeRobot DP"]["points"]}
    assert doc["runs"]["LeRobot DP"]["peer"] and last["demos"] in dp
    for r, p in zip(rows, points):
        assert r[col] == (f"{dp[p['demos']]['score']:.3f} ± {dp[p['demos']]['score_se']:.3f}"
                          if p["demos"] in dp else "–")
    assert rows[-1][col] == f"{peer['other']['score']:.3f} ± {peer['other']['score_se']:.3f}"
    earlier_cells = _body_cells(earlier)
    before, longer = load("before_action")["all"], load("long_heads")["all"]
    before_peer = load("before_peer")["other"]
    assert [c[2] for c in earlier_cells] == [
        f"{before['reference']['score']:.3f} ± {before['reference']['score_se']:.3f}",
        f"{longer['other']['score']:.3f} ± {longer['other']['score_se']:.3f}",
        f"{before['other']['score']:.3f} ± {before['other']['score_se']:.3f}",
        f"{before_peer['score']:.3f} ± {before_peer['score_se']:.3f}"]
    assert f"{load('before_peer_eval')['training']['steps']} steps" in earlier_cells[3][4]
    assert f"{load('peer')['training']['steps']} steps" in cells[2][4]
    assert f"{longer['paired_diff']:+.3f} ± {longer['paired_diff_se']:.3f}" in out
    # reports scored on different seeds are refused, not tabled side by side
    _write_changed(results_table.FEW_DEMOS, tmp_path, "peer_paired",
                   lambda doc: doc.update(seeds=[300000, 300099]))
    with pytest.raises(ValueError, match="different seeds"):
        results_table.few_demos_table(tmp_path)
    # a peer evaluation that is not one of its paired report's is refused too
    _write_changed(results_table.FEW_DEMOS, tmp_path, "before_peer_eval",
                   lambda doc: doc.update(predict_action_ms_p50=doc["predict_action_ms_p50"] + 1.0))
    with pytest.raises(ValueError, match="not an evaluation of the paired report's peer"):
        results_table.few_demos_table(tmp_path)
    # a curve whose peer at the final demos is not the tabled peer is refused
    def shift_last_peer_point(doc: dict) -> None:
        max(doc["runs"]["LeRobot DP"]["points"], key=lambda p: p["demos"])["score"] += 0.01

    _write_changed(results_table.FEW_DEMOS, tmp_path, "curve", shift_last_peer_point)
    with pytest.raises(ValueError, match="is not the tabled peer"):
        results_table.few_demos_table(tmp_path)


def test_panda_few_demos_table_reads_its_numbers_from_the_paired_report(tmp_path):
    results_table = _results_table()
    out = results_table.few_demos_panda_table()
    cells = _body_cells(out)
    assert [c[0] for c in cells] == ["UVA", "LeRobot Diffusion Policy"]
    paired = json.loads((ROOT / results_table.FEW_DEMOS_PANDA["paired"]).read_text())
    for side, c in zip(("reference", "other"), cells):
        assert c[2] == f"{paired[side]['score']:.3f} ± {paired[side]['score_se']:.3f}"
        assert c[3] == f"{paired[side]['successes']}/{paired['episodes']}"
    assert f"{-paired['paired_diff']:+.2f} ± {paired['paired_diff_se']:.2f}" in out
    # a peer evaluation from another env or seed block than the pairing's is refused
    _write_changed(results_table.FEW_DEMOS_PANDA, tmp_path, "peer",
                   lambda doc: doc.update(first_seed=300000))
    with pytest.raises(ValueError, match="not one of the paired"):
        results_table.few_demos_panda_table(tmp_path)


def test_readme_and_docs_show_the_tables_as_generated():
    for page, args in (("README.md", []), ("docs/few-demos.md", ["--few-demos"]),
                       ("docs/few-demos.md", ["--few-demos", "panda"])):
        text = (ROOT / page).read_text()
        out = subprocess.run([sys.executable, str(ROOT / "scripts" / "results_table.py"), *args],
                             capture_output=True, text=True, check=True).stdout.strip()
        assert out in text, f"{page}'s table differs from `results_table.py {' '.join(args)}`"
