"""The demo pipeline on a tiny budget: files written, one row per entry × attack."""
from __future__ import annotations

import json

import pytest

from robustdial.cli.demo import DEMO_EPS, ENTRIES, DemoEntry, run_demo


def test_entries_are_a_list_of_demo_entries():
    labels = [e.label for e in ENTRIES]
    assert {"standard", "pgd_at"} <= set(labels) and len(labels) == len(set(labels))
    for e in ENTRIES:
        assert e.method(0.1).config()["name"]


@pytest.mark.slow
def test_run_demo_writes_results_and_plot(tmp_path):
    entries = [DemoEntry(e.label, e.method, e.model_options, e.conditions, epochs=1) for e in ENTRIES]
    res = run_demo(tmp_path, max_test=64, entries=entries)
    summary = json.loads((tmp_path / "results.json").read_text())
    assert set(summary["entries"]) == {e.label for e in entries}
    assert summary["eps"] == pytest.approx(DEMO_EPS) and "provenance" in summary
    by_label = {e.label: e for e in entries}
    assert any(e.conditions for e in entries), "the demo shows at least one model's λ dial"
    for label in summary["entries"]:
        rows = summary["entries"][label]["rows"]
        assert {r["attack"] for r in rows} == {"fgsm", "pgd-20"}
        n_conditions = len(by_label[label].conditions or [None])
        assert len(rows) == 2 * n_conditions
        assert all(r["n"] == 64 and r["robust_acc"] <= r["clean_acc"] for r in rows)
        assert (tmp_path / label / "run.json").is_file()
    assert (tmp_path / "trade_off.png").stat().st_size > 1000
    assert "_summary" in res
