"""``robustdial train``: every key of the recipe's ``eval`` section takes effect (or is refused).

Each suite (none -> ``evaluate``, ``br_attack_suite``, ``multi_exit``) runs for
real after a 2-iteration training on the 8×8 digits and writes its numbers
to ``eval.json``; a key the suite does not read, or a bad value, fails before
training with one line naming it. Also ``--device`` (checked) and
``--no-verify`` (reaches ``load_dataset``).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from robustdial.cli import main
from robustdial.cli.train import EVAL_KEYS, check_eval_section, run_eval_section
from robustdial.evaluation.runner import ANY_ATTACK
from robustdial.models import create_model

TRAIN = {"iterations": 2, "batch_size": 32, "lr": 0.05, "max_val_samples": 16}
DATA = {"name": "digits", "max_train_samples": 64}


def _train(tmp_path: Path, recipe: dict, capsys, *extra: str) -> tuple[int, Path, str]:
    cfg = tmp_path / "recipe.yaml"
    cfg.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "run"
    rc = main(["-q", "train", str(cfg), "--out", str(out), "--device", "cpu", *extra])
    captured = capsys.readouterr()
    return rc, out, captured.out + captured.err


def _error_line(text: str) -> str:
    assert "Traceback" not in text
    lines = [line for line in text.splitlines() if "error:" in line]
    assert len(lines) == 1, text
    return lines[0]


def test_br_attack_suite_runs_with_eot_and_sparsity(tmp_path, capsys):
    """suite br_attack_suite: FGSM, IFGSM (α 1/255, no random start), C&W, PGD-20, each also
    with EOT over the EnResNet noise (eot_samples), and the sparsity of the ternary weights."""
    recipe = {
        "model": {"name": "preact_resnet20", "options": {"noise_injection": 0.1, "ensemble": 1}},
        "data": DATA,
        "method": {"name": "tradeoff", "alpha": 1.0, "beta": 8.0,
                   "attack": {"name": "pgd", "eps": 0.031, "alpha": 0.007, "steps": 1}},
        "transforms": [{"name": "BinaryRelax", "scheme": "ternary", "cutoff_epoch": 0}],
        "train": TRAIN,
        "eval": {"suite": "br_attack_suite", "eps": 0.031, "eot_samples": 2, "sparsity": True,
                 "max_samples": 12, "batch_size": 8, "seed": 3},
    }
    rc, out, text = _train(tmp_path, recipe, capsys)
    assert rc == 0, text
    result = json.loads((out / "eval.json").read_text())
    attacks = [r["attack"] for r in result["rows"]]
    plain = ["fgsm", "ifgsm", "cw", "pgd20"]
    assert attacks == plain + [f"{a}+eot2" for a in plain] + [ANY_ATTACK]
    assert all(r["n"] == 12 for r in result["rows"])
    meta = result["meta"]
    assert meta["suite"] == "br_attack_suite" and meta["eot_samples"] == 2
    assert meta["eps"] == pytest.approx(0.031) and meta["seed"] == 3 and meta["batch_size"] == 8
    assert "random_start=False" in meta["attacks"]["ifgsm"] and "steps=20" in meta["attacks"]["ifgsm"]
    assert "alpha=0.00392157" in meta["attacks"]["ifgsm"]
    assert meta["attacks"]["ifgsm+eot2"].startswith("EOT(") and "samples=2" in meta["attacks"]["ifgsm+eot2"]
    total = meta["sparsity"][-1]
    assert total["name"] == "total" and 0.0 < total["weight_sparsity"] < 1.0
    assert "w.sparsity" in text and "pgd20+eot2" in text


@pytest.fixture
def tiny_test_split(monkeypatch):
    """``load_dataset`` (the test split of run_eval_section) returns 6 random 8×8 images."""
    import robustdial.data as data_mod

    x, y = torch.rand(6, 1, 8, 8), torch.randint(0, 10, (6,))
    monkeypatch.setattr(data_mod, "load_dataset", lambda *a, **k: (x, y))


def test_br_attack_suite_cw_and_pgd_switches(tmp_path, tiny_test_split):
    """cw: false / pgd: false drop those attacks; EOT on a noise-free model adds no rows."""
    model = create_model("preact_resnet20", in_channels=1, num_classes=10)
    section = {"suite": "br_attack_suite", "eps": 0.031, "cw": False, "pgd": False, "eot_samples": 3}
    out = tmp_path / "eval.json"
    result = run_eval_section(model, section, "digits", None, out)
    assert [r.attack for r in result.rows] == ["fgsm", "ifgsm", ANY_ATTACK]
    assert json.loads(out.read_text())["meta"]["suite"] == "br_attack_suite"


def test_default_suite_runs_attacks_eot_conditions_and_sparsity(tmp_path, capsys):
    recipe = {
        "model": {"name": "preact_resnet20", "options": {"noise_injection": 0.1}},
        "data": DATA,
        "method": {"name": "pgd_at", "attack": {"name": "pgd", "eps": 0.1, "alpha": 0.05, "steps": 1}},
        "train": TRAIN,
        "eval": {"attacks": ["fgsm", "pgd-2:alpha=1/255,random_start=false"], "eps": 0.1,
                 "eot_samples": 2, "conditions": {"noise": ["sample", "off"]}, "sparsity": True,
                 "max_samples": 10},
    }
    rc, out, text = _train(tmp_path, recipe, capsys)
    assert rc == 0, text
    result = json.loads((out / "eval.json").read_text())
    rows = [(r["condition"].get("noise"), r["attack"]) for r in result["rows"]]
    specs = ["fgsm", "pgd-2:alpha=1/255,random_start=false"]
    per_condition = specs + [f"{s}+eot2" for s in specs] + [ANY_ATTACK]
    assert rows == [(c, a) for c in ("sample", "off") for a in per_condition]
    meta = result["meta"]
    assert meta["suite"] == "attacks" and meta["eps"] == pytest.approx(0.1) and meta["n"] == 10
    pgd = meta["attacks"]["pgd-2:alpha=1/255,random_start=false"]
    assert "steps=2" in pgd and "random_start=False" in pgd and "alpha=0.00392157" in pgd
    assert meta["sparsity"][-1]["name"] == "total"


def test_multi_exit_suite_runs_with_calibrated_thresholds(tmp_path, capsys):
    recipe = {
        "model": {"name": "mini_cnn", "options": {"exits": True}},
        "data": DATA,
        "method": {"name": "rdi", "defence": "average",
                   "attack": {"name": "pgd", "eps": 0.1, "alpha": 0.05, "steps": 1}},
        "train": TRAIN,
        "eval": {"suite": "multi_exit", "eps": 0.1, "alpha": 0.04, "steps": 2,
                 "calibrate_thresholds": "uniform", "forms": ["branch1", "main", "average"],
                 "max_samples": 12},
    }
    rc, out, text = _train(tmp_path, recipe, capsys)
    assert rc == 0, text
    body = json.loads((out / "eval.json").read_text())
    assert body["suite"] == "multi_exit" and body["eps"] == pytest.approx(0.1)
    assert list(body["ata"]) == ["pgd-2"]
    assert list(body["ata"]["pgd-2"]) == ["branch1", "main", "average"]
    attacker = body["meta"]["attackers"]["pgd-2"]
    assert "alpha=0.04" in attacker and "steps=2" in attacker
    assert body["meta"]["samples"] == 12 and 0.0 <= body["ta"] <= 100.0
    assert "calibrated on the validation split" in body["thresholds_source"]
    # the thresholds were calibrated (not the model's stored ones) and printed for `eval --thresholds`
    stored = create_model("mini_cnn", exits=True, in_channels=1).exit_thresholds.tolist()
    assert len(body["thresholds"]) == 2 and body["thresholds"] != pytest.approx(stored)
    assert f"robustdial eval {out} --thresholds" in text
    assert "provenance" in body and "git_commit" in body["provenance"]


def test_multi_exit_fixed_thresholds_and_attack_specs(tmp_path, tiny_test_split):
    model = create_model("mini_cnn", exits=True, in_channels=1)
    section = {"suite": "multi_exit", "eps": 0.1, "attacks": ["fgsm"], "thresholds": [0.5, "1/2"],
               "forms": ["main"]}
    rep = run_eval_section(model, section, "digits", None, tmp_path / "e.json")
    assert rep.thresholds == pytest.approx([0.5, 0.5]) and list(rep.ata) == ["fgsm"]
    assert json.loads((tmp_path / "e.json").read_text())["thresholds_source"] == "eval.thresholds"


@pytest.mark.parametrize("section, message", [
    ({"attacks": ["fgsm"], "alpha": 0.01},
     "does not read key(s) ['alpha'] ('alpha' is read by suite multi_exit)"),
    ({"suite": "br_attack_suite", "attacks": ["fgsm"]},
     "suite br_attack_suite does not read key(s) ['attacks']"),
    ({"suite": "autoattack"}, "eval.suite 'autoattack' is unknown"),
    ({"attacks": ["pgd-0"]}, "eval.attacks"),
    ({"attacks": "fgsm"}, "eval.attacks must be a list"),
    ({"eps": 8}, "8/255, not 8"),
    ({"eot_samples": 0}, "eval.eot_samples must be an int ≥ 1"),
    ({"sparsity": "yes"}, "eval.sparsity must be true or false"),
    ({"max_samples": 0}, "eval.max_samples must be an int ≥ 1"),
    ({"conditions": {"lam": [0.0, 1.0]}}, "has no λ dial"),
    ({"suite": "multi_exit"}, "needs a model with early exits"),
])
def test_bad_eval_section_fails_before_training(tmp_path, capsys, section, message):
    recipe = {"model": {"name": "preact_resnet20"}, "data": DATA, "method": {"name": "standard"},
              "train": TRAIN, "eval": section}
    rc, out, text = _train(tmp_path, recipe, capsys)
    assert rc == 2
    assert message in _error_line(text)
    assert not (out / "metrics.jsonl").exists() and not (out / "last").exists()


@pytest.mark.parametrize("section, message", [
    ({"suite": "multi_exit", "alpha": 0.01, "attacks": ["fgsm"]}, "with eval.attacks give the step"),
    ({"suite": "multi_exit", "thresholds": [0.1, 0.2], "calibrate_thresholds": "uniform"},
     "exclude each other"),
    ({"suite": "multi_exit", "calibrate_thresholds": "middle"}, "eval.calibrate_thresholds must be"),
    ({"suite": "multi_exit", "thresholds": [0.1]}, "give 2 thresholds"),
    ({"suite": "multi_exit", "forms": ["branch3"]}, "unknown attack form(s) ['branch3']"),
])
def test_bad_multi_exit_keys(section, message):
    model = create_model("mini_cnn", exits=True, in_channels=1)
    with pytest.raises(ValueError) as info:
        check_eval_section(section, model)
    assert message in str(info.value)


def test_calibration_needs_a_validation_split():
    with pytest.raises(ValueError, match="data.val_size is 0"):
        check_eval_section({"suite": "multi_exit", "calibrate_thresholds": "uniform"}, has_val=False)


def test_every_suite_key_is_checked_by_type():
    """No key is accepted unchecked: a bad value of any key of any suite fails, naming eval.KEY."""
    for suite, keys in EVAL_KEYS.items():
        for key in keys:
            section = {"suite": suite} if suite else {}
            section[key] = "bad"
            with pytest.raises(ValueError) as info:
                check_eval_section(section)
            assert f"eval.{key}" in str(info.value), (suite, key, info.value)


_NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


@pytest.mark.parametrize("device, message", [
    pytest.param("cuda", "--device cuda: CUDA is not available", marks=_NO_CUDA),
    pytest.param("cuda:0", "CUDA is not available", marks=_NO_CUDA),
    ("gpu", "--device 'gpu' is not a device"),
])
def test_train_device_is_checked(tmp_path, capsys, device, message):
    recipe = {"model": {"name": "preact_resnet20"}, "data": DATA, "method": {"name": "standard"},
              "train": TRAIN}
    cfg = tmp_path / "recipe.yaml"
    cfg.write_text(yaml.safe_dump(recipe))
    rc = main(["-q", "train", str(cfg), "--out", str(tmp_path / "run"), "--device", device])
    assert rc == 2
    assert message in _error_line(capsys.readouterr().err)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flags, verify", [([], True), (["--no-verify"], False)])
def test_train_no_verify_reaches_load_dataset(tmp_path, capsys, monkeypatch, flags, verify):
    import robustdial.data as data_mod

    seen: list[tuple[str, bool]] = []
    real = data_mod.load_dataset

    def spy(name, *args, **kwargs):
        seen.append((kwargs.get("split", "train"), kwargs.get("verify", True)))
        return real(name, *args, **kwargs)

    monkeypatch.setattr(data_mod, "load_dataset", spy)
    recipe = {"model": {"name": "preact_resnet20"}, "data": DATA, "method": {"name": "standard"},
              "train": {**TRAIN, "iterations": 1}, "eval": {"max_samples": 8}}
    rc, _, text = _train(tmp_path, recipe, capsys, *flags)
    assert rc == 0, text
    assert {s for s, _ in seen} == {"train", "val", "test"}
    assert all(v is verify for _, v in seen), seen
    assert math.isfinite(json.loads((tmp_path / "run" / "eval.json").read_text())["rows"][0]["clean_acc"])
