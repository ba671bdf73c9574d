"""The demo: four dials, every job's points and outputs, on a tiny budget."""
from __future__ import annotations

import json

import pytest

from robustdial.cli import main
from robustdial.cli.demo import DEMO_DATA, DEMO_EPS, JOBS, OPTIONAL_JOBS, DemoJob, schedule_order


def test_jobs_cover_the_four_dials():
    panels = {j.panel for j in JOBS}
    assert panels == {"lam", "width", "exit", "bits"}
    labels = [j.label for j in JOBS + OPTIONAL_JOBS]
    assert len(labels) == len(set(labels)) and {"standard", "pgd_at", "float"} <= set(labels)
    lam = next(j for j in JOBS if j.label == "float")
    assert lam.dials["lam"][0] == 0.0 and lam.dials["lam"][-1] == 1.0
    assert next(j for j in JOBS if j.panel == "exit").dials["exit"][-1] == "adaptive"
    assert next(j for j in JOBS if j.panel == "bits").binary_relax in ("binary", "ternary")
    assert DEMO_DATA == "fashion-mnist-mini"  # embedded: no download


def _makespan(jobs, workers=2):
    free = [0.0] * workers
    for j in jobs:  # each job goes to the worker that frees up first
        i = free.index(min(free))
        free[i] += j.cpu_seconds
    return max(free)


def test_longest_jobs_run_first_so_two_workers_finish_together():
    order = schedule_order(JOBS)
    assert sorted(j.label for j in order) == sorted(j.label for j in JOBS)
    assert [j.cpu_seconds for j in order] == sorted((j.cpu_seconds for j in JOBS), reverse=True)
    total = sum(j.cpu_seconds for j in JOBS)
    # list scheduling, longest first: within 4/3 of the ideal split (Graham 1969), and better than display order
    assert _makespan(order) <= 4 / 3 * total / 2
    assert _makespan(order) < _makespan(JOBS)
    assert [j.label for j in JOBS][:2] == ["float_slim", "rdi"]  # display order is left alone


def test_demo_refuses_bad_input_and_an_existing_out(tmp_path, capsys):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "results.json").write_text("{}")
    assert main(["demo", "--out", str(tmp_path / "old")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["demo", "--out", str(tmp_path / "x"), "--jobs", "nope"]) == 2
    assert "unknown job" in capsys.readouterr().err
    assert main(["demo", "--out", str(tmp_path / "x"), "--n-test", "0"]) == 2


@pytest.mark.slow
def test_demo_runs_every_panel(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = main(["-q", "demo", "--out", str(out), "--epochs", "1", "--n-test", "16", "--workers", "1"])
    assert rc == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "AA = AutoAttack fast (APGD-CE + APGD-T)" in printed and f"ε = {DEMO_EPS:g}" in printed
    summary = json.loads((out / "results.json").read_text())
    assert set(summary["jobs"]) == {j.label for j in JOBS}
    for job in JOBS:
        r = summary["jobs"][job.label]
        pts = r["report"]["points"]
        n_points = 1
        for values in (job.dials or {}).values():
            n_points *= len(values)
        assert len(pts) == n_points, job.label
        assert all(p["accuracy"]["autoattack"] <= p["accuracy"]["clean"] for p in pts)
        assert (out / job.label / "run.json").is_file()
    panels = {row["panel"] for row in summary["table"]}
    assert panels == {"lam", "width", "exit", "bits"}
    adaptive = [p for p in summary["jobs"]["rdi"]["report"]["points"] if p["dials"]["exit"] == "adaptive"]
    assert "slowdown" in adaptive[0]["early_exit"]["inputs"]
    assert summary["jobs"]["br_ternary"]["storage"]["bits"] == 2
    assert summary["jobs"]["br_ternary"]["storage"]["storage_bytes"] < \
        summary["jobs"]["pgd_at"]["storage"]["storage_bytes"] / 5
    assert (out / "dials.png").stat().st_size > 20_000
