"""``robustdial report RUN_DIR``: outputs, resume from the cache, refusals."""
from __future__ import annotations

import json

import pytest

import robustdial as rd
from robustdial.cli import main
from robustdial.methods import build_method


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    rd.utils.seed_everything(0)
    train = rd.load_dataset("fashion-mnist-mini", split="train").subset(512)
    model = rd.create_model("mini_cnn", conditioning="float")
    method = build_method("float", attack={"name": "pgd", "eps": 0.1, "alpha": 0.04, "steps": 2})
    rd.fit(model, method, (train, None), rd.FitConfig(iterations=8, batch_size=64, lr=0.05,
                                                      augment="none", select="last", progress=False))
    rd.save(model, d / "float", {"method": method.config(), "dataset": {"name": "fashion-mnist-mini"}})
    return d / "float"


@pytest.mark.slow  # two AutoAttack runs (~30 s on one core)
def test_report_writes_every_output_and_resumes(run_dir, tmp_path, capsys):
    out = tmp_path / "rep"
    argv = ["report", str(run_dir), "--dial", "lam=0,1", "--n", "24", "--no-checks", "--no-latency",
            "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "AutoAttack fast (APGD-CE + APGD-T)" in printed and "| lam=1 |" in printed
    data = json.loads((out / "report.json").read_text())
    assert data["eps"] == pytest.approx(0.1)  # the training attack's ε from run.json
    assert [p["label"] for p in data["points"]] == ["lam=0", "lam=1"]
    assert sorted(f.name for f in (out / "records").iterdir()) == ["lam=0.json", "lam=1.json"]
    rec = json.loads((out / "records" / "lam=1.json").read_text())
    assert rec["autoattack_acc"] == round(data["points"][1]["accuracy"]["autoattack"], 2)
    assert (out / "report.md").read_text().startswith("# Robustness report")
    assert (out / "report.png").stat().st_size > 10_000
    assert data["cache"]["writes"] > 0
    assert main(argv) == 0  # again: everything comes from the cache
    again = json.loads((out / "report.json").read_text())
    assert again["cache"]["writes"] == 0 and again["cache"]["hits"] == data["cache"]["writes"]
    assert again["points"][1]["accuracy"] == data["points"][1]["accuracy"]


def test_report_refusals(run_dir, tmp_path, capsys):
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    assert main(["report", str(run_dir), "--out", str(other), "--n", "4"]) == 2
    assert "not empty and holds no report" in capsys.readouterr().err
    assert (other / "mine.txt").read_text() == "keep me"
    assert main(["report", str(run_dir), "--eps", "8", "--out", str(tmp_path / "a")]) == 2
    assert "8/255, not 8" in capsys.readouterr().err
    assert main(["report", str(run_dir), "--dial", "width=0.5", "--out", str(tmp_path / "b")]) == 2
    assert "no width dial" in capsys.readouterr().err


@pytest.fixture(scope="module")
def exit_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("exits") / "rdi"
    rd.utils.seed_everything(0)
    model = rd.create_model("mini_cnn", exits=True)  # thresholds never calibrated: +inf
    rd.save(model, d, {"method": {"attack": {"eps": 0.1}}, "dataset": {"name": "fashion-mnist-mini"}})
    return d


def test_uncalibrated_exit_thresholds_are_refused(exit_run, tmp_path, capsys):
    assert main(["report", str(exit_run), "--dial", "exit=adaptive", "--out", str(tmp_path / "r")]) == 2
    assert "--calibrate-exits" in capsys.readouterr().err


@pytest.mark.slow
def test_calibrate_exits_on_the_validation_split(exit_run, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["report", str(exit_run), "--dial", "exit=adaptive", "--calibrate-exits", "--n", "8",
                 "--no-checks", "--no-latency", "--out", str(out)]) == 0
    data = json.loads((out / "report.json").read_text())
    assert "validation split" in data["exit_thresholds"]["source"]
    assert len(data["exit_thresholds"]["values"]) == 2
    hist = data["points"][0]["early_exit"]["inputs"]["clean"]["exit_histogram"]
    assert hist[0] < 8  # not everything leaves at the first exit any more


def test_the_training_eps_of_a_slimmable_run_is_found():
    from robustdial.cli.eval_cmd import _default_eps

    nested = {"method": {"name": "float_slim", "inner": {"name": "float", "attack": {"eps": 0.15}}}}
    assert _default_eps(nested) == 0.15
    assert _default_eps({"method": {"name": "pgd_at", "attack": {"eps": 0.3}}}) == 0.3
    assert _default_eps({"method": {"name": "standard"}}) is None
