"""benchmarks/cifar10_frontier.py copies report points into one JSON and one figure."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO_REPORT = REPO / "benchmarks" / "results" / "report_demo_float"


def _load():
    spec = importlib.util.spec_from_file_location("cifar10_frontier", REPO / "benchmarks" / "cifar10_frontier.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(not (DEMO_REPORT / "report.json").is_file(), reason="committed demo report missing")
def test_frontier_copies_every_point_and_marks_missing_reports(tmp_path):
    mod = _load()
    out = tmp_path / "front.json"
    assert mod.main(["--reports", f"float={DEMO_REPORT}", f"oat={tmp_path / 'absent'}", "--out", str(out)]) == 0
    got = json.loads(out.read_text())
    rep = json.loads((DEMO_REPORT / "report.json").read_text())
    pts = got["models"]["float"]["points"]
    assert [p["label"] for p in pts] == [p["label"] for p in rep["points"]]
    assert [p["autoattack"] for p in pts] == [p["accuracy"]["autoattack"] for p in rep["points"]]
    assert [p["clean"] for p in pts] == [p["accuracy"]["clean"] for p in rep["points"]]
    assert got["models"]["oat"]["missing"] is True
    assert (tmp_path / "front.png").stat().st_size > 1000


def test_frontier_refuses_when_no_report_exists(tmp_path):
    mod = _load()
    with pytest.raises(SystemExit, match="no report.json"):
        mod.main(["--reports", f"float={tmp_path}", "--out", str(tmp_path / "f.json")])
