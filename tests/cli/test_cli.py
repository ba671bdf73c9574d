"""The ``robustdial`` command line: parsing helpers, train -> eval round trip, error messages."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from robustdial.cli import SUBCOMMANDS, build_parser, main
from robustdial.cli._common import (UsageError, apply_overrides, parse_dials, parse_fraction,
                                    parse_set, resolve_checkpoint)

TINY = {
    "model": {"name": "preact_resnet20"},
    "data": {"name": "digits", "max_train_samples": 256},
    "method": {"name": "pgd_at", "attack": {"name": "pgd", "eps": 0.1, "alpha": 0.05, "steps": 1}},
    "train": {"iterations": 3, "batch_size": 32, "lr": 0.05, "log_every": 1, "max_val_samples": 64},
}


def write_yaml(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_list_models_prints_registry(capsys):
    from robustdial.models import list_models

    assert main(["list-models"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == list_models() and "preact_resnet20" in printed


def test_parser_has_core_subcommands_and_no_command_is_usage_error(capsys):
    parser = build_parser()
    choices = parser._subparsers._group_actions[0].choices  # noqa: SLF001
    assert {"train", "eval", "list-models", "demo"} <= set(choices) <= set(SUBCOMMANDS)
    assert main([]) == 2


@pytest.mark.parametrize("text, value", [("8/255", 8 / 255), ("0.3", 0.3), (" 1/100 ", 0.01), (2, 2.0)])
def test_parse_fraction(text, value):
    assert math.isclose(parse_fraction(text), value)


@pytest.mark.parametrize("text", ["abc", "1/0", "inf", "8/x"])
def test_parse_fraction_rejects_bad_input(text):
    with pytest.raises(UsageError, match="number"):
        parse_fraction(text)


def test_set_overrides_are_yaml_typed_and_nested():
    assert parse_set("train.epochs=3") == (["train", "epochs"], 3)
    recipe = {"train": {"epochs": 1}, "method": {"name": "pgd_at"}}
    out = apply_overrides(recipe, ["train.epochs=3", "train.nesterov=true",
                                   "train.milestones=[80, 120]", "method.attack.eps=8/255",
                                   "train.out_dir=null", "method.name=trades"])
    assert out["train"] == {"epochs": 3, "nesterov": True, "milestones": [80, 120], "out_dir": None}
    assert math.isclose(out["method"]["attack"]["eps"], 8 / 255)
    assert out["method"]["name"] == "trades"
    assert recipe == {"train": {"epochs": 1}, "method": {"name": "pgd_at"}}  # not mutated
    with pytest.raises(UsageError, match="SECTION.KEY=VALUE"):
        apply_overrides(recipe, ["train.epochs"])
    with pytest.raises(UsageError, match="not a section"):
        apply_overrides(recipe, ["train.epochs.x=1"])


def test_parse_dials_grid_values():
    assert parse_dials(["lam=0,0.2,1", "width=0.5,1.0", "exit=adaptive"]) == {
        "lam": [0.0, 0.2, 1.0], "width": [0.5, 1.0], "exit": ["adaptive"]}
    with pytest.raises(UsageError, match="NAME=V1"):
        parse_dials(["lam"])


def test_train_then_eval_round_trip(tmp_path, capsys):
    cfg = write_yaml(tmp_path / "tiny.yaml", TINY)
    out = tmp_path / "run"
    rc = main(["-q", "train", str(cfg), "--out", str(out), "--device", "cpu",
               "--set", "train.iterations=2", "--set", "method.attack.eps=8/255"])
    assert rc == 0, capsys.readouterr().err
    ckpt = resolve_checkpoint(out)
    run_info = json.loads((ckpt / "run.json").read_text())
    assert run_info["method"]["attack"]["eps"] == pytest.approx(8 / 255)
    assert run_info["fit_config"]["iterations"] == 2
    assert yaml.safe_load((out / "recipe.yaml").read_text())["train"]["iterations"] == 2
    capsys.readouterr()

    js = tmp_path / "eval.json"
    rc = main(["-q", "eval", str(out), "--attack", "fgsm", "--eps", "8/255", "--max-samples", "40",
               "--json", str(js), "--csv", str(tmp_path / "eval.csv")])
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    assert "fgsm" in printed.out and "clean %" in printed.out
    result = json.loads(js.read_text())
    (row,) = result["rows"]
    assert row["attack"] == "fgsm" and row["n"] == 40 and row["robust_acc"] <= row["clean_acc"]
    assert result["meta"]["eps"] == pytest.approx(8 / 255)
    assert "git_commit" in result["meta"]["provenance"] and "torch" in result["meta"]["provenance"]
    assert (tmp_path / "eval.csv").read_text().startswith("attack,clean_acc")

    # no --attack: a strong default (PGD-50, step 2.5·ε/50), not clean accuracy alone
    rc = main(["-q", "eval", str(out), "--eps", "8/255", "--max-samples", "8", "--json", str(js)])
    assert rc == 0, capsys.readouterr().err
    (row,) = json.loads(js.read_text())["rows"]
    assert row["attack"] == "pgd-50"
    capsys.readouterr()

    # a plain model has no λ dial: a clean error, not a traceback
    rc = main(["eval", str(out), "--attack", "fgsm", "--dial", "lam=0,0.2,1.0"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "has no λ dial" in err and "Traceback" not in err


def test_missing_dataset_names_flag_and_env_var(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ROBUSTDIAL_DATA", raising=False)
    recipe = {**TINY, "model": {"name": "small_cnn"}, "data": {"name": "mnist"}}
    cfg = write_yaml(tmp_path / "mnist.yaml", recipe)
    rc = main(["train", str(cfg), "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "--data-dir" in err and "ROBUSTDIAL_DATA" in err and str(tmp_path / "nowhere") in err


@pytest.mark.parametrize("recipe, message", [
    ({**TINY, "bogus": {}}, "unknown section"),
    ({**TINY, "method": {"name": "madry_v9"}}, "unknown method 'madry_v9'; available"),
    ({**TINY, "train": {"epochz": 3}}, "unknown FitConfig key"),
    ({**TINY, "model": {"name": "no_such_net"}}, "unknown model"),
    ({"data": {"name": "digits"}}, "section 'model' needs at least a name"),
])
def test_bad_recipes_fail_with_clear_messages(tmp_path, capsys, recipe, message):
    cfg = write_yaml(tmp_path / "bad.yaml", recipe)
    assert main(["train", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err


def test_eval_on_a_non_checkpoint_directory(tmp_path, capsys):
    assert main(["eval", str(tmp_path), "--attack", "fgsm"]) == 2
    assert "not a checkpoint directory" in capsys.readouterr().err


def test_eval_of_a_multi_exit_checkpoint_prints_the_rdi_table(tmp_path, capsys, shared_data_root):
    """``robustdial eval`` on an RDI checkpoint: TA, ATA per attack form, worst case, MFlops."""
    out = tmp_path / "rdi"
    recipe = Path(__file__).resolve().parents[2] / "configs" / "rdi_mnist_smallcnn_average.yaml"
    rc = main(["-q", "train", str(recipe), "--out", str(out),
               "--device", "cpu", "--data-dir", str(shared_data_root),
               "--set", "fit.iterations=2", "--set", "fit.batch_size=32", "--set", "fit.milestones=[]",
               "--set", "data.max_train_samples=128", "--set", "data.val_size=64",
               "--set", "method.kwargs.attack.steps=1",
               "--set", "eval.max_samples=16", "--set", "eval.steps=2"])  # the recipe's suite, small
    assert rc == 0, capsys.readouterr().err
    capsys.readouterr()
    js = tmp_path / "rdi_eval.json"
    rc = main(["-q", "eval", str(out), "--attack", "pgd-2", "--eps", "0.3", "--max-samples", "32",
               "--data-dir", str(shared_data_root), "--device", "cpu", "--json", str(js)])
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    body = json.loads(js.read_text())
    text = json.dumps(body)
    for key in ("worst", "max-average", "average", "saving"):
        assert key in text, key
    assert body["eps"] == pytest.approx(0.3) and "provenance" in body
    assert "MFlops" in printed.out or "mflops" in printed.out.lower()
