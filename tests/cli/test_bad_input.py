"""Issue #14: every bad command-line input ends in one clear line, exit status 2, no traceback.

The table maps an argv (``{ckpt}``, ``{run}``, ``{tmp}`` are filled in) to a
fragment of the expected message; each row also checks that stderr is that one
line (``-q`` keeps the INFO log out of it) and holds no traceback.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import robustdial as rd
from robustdial.cli import main
from robustdial.data import download as dl
from robustdial.data.download import Resource
from robustdial.engine.checkpoint import save

REPO = Path(__file__).resolve().parents[2]


def _idx_gz(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 8, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    path.write_bytes(gzip.compress(header + arr.astype(np.uint8).tobytes()))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A digits run directory (``run/best``), a non-JSON file, a JSON without rows, bad MNIST copies."""
    tmp = tmp_path_factory.mktemp("bad_input")
    model = rd.create_model("preact_resnet20", in_channels=1)
    save(model, tmp / "run" / "best", {"dataset": {"name": "digits"},
                                       "method": {"name": "pgd_at", "attack": {"eps": 0.1}}})
    (tmp / "not_json.txt").write_text("clean 91.2, robust 40.1\n")
    (tmp / "report.json").write_text(json.dumps({"ta": 98.0, "ata": {}}))
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (6, 28, 28)), rng.integers(0, 10, 6)
    for name, lab in (("fake", labels), ("badlabel", np.where(np.arange(6) == 2, 12, labels))):
        d = tmp / name / "mnist"
        d.mkdir(parents=True)
        _idx_gz(d / "t10k-images-idx3-ubyte.gz", images)
        _idx_gz(d / "t10k-labels-idx1-ubyte.gz", lab)
    trunc = tmp / "trunc" / "mnist"
    trunc.mkdir(parents=True)
    raw = (tmp / "fake" / "mnist" / "t10k-images-idx3-ubyte.gz").read_bytes()
    (trunc / "t10k-images-idx3-ubyte.gz").write_bytes(raw[: len(raw) // 2])
    (trunc / "t10k-labels-idx1-ubyte.gz").write_bytes(
        (tmp / "fake" / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes())
    return {"tmp": tmp, "run": tmp / "run", "ckpt": tmp / "run" / "best"}


_NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")

# argv (with {run}, {ckpt}, {tmp}) -> fragment of the one-line message
TABLE = [
    # attacks and ε
    (["eval", "{run}", "--attack", "pgd-0"], "the step count must be ≥ 1"),
    (["eval", "{run}", "--attack", "fgsm", "--eps", "8"], "8/255, not 8"),
    (["eval", "{run}", "--attack", "pgd-5:eps=8"], "8/255, not 8"),
    (["eval", "{run}", "--attack", "pgd-5:alpha=0"], "alpha must be a finite number > 0"),
    (["eval", "{run}", "--attack", "fgsm", "--eps", "abc"], "is not a number"),
    (["eval", "{run}", "--attack", "nosuch-3"], "unknown attack"),
    (["checklist", "{run}", "--eps", "0.1", "--steps", "0"], "--steps must be ≥ 1"),
    (["checklist", "{run}", "--eps", "8"], "8/255, not 8"),
    (["checklist", "{run}", "--eps", "0.1", "--n", "0"], "--n must be ≥ 1"),
    # devices
    pytest.param(["eval", "{run}", "--attack", "fgsm", "--device", "cuda"], "CUDA is not available",
                 marks=_NO_CUDA),
    pytest.param(["checklist", "{run}", "--eps", "0.1", "--device", "cuda:0"], "CUDA is not available",
                 marks=_NO_CUDA),
    (["eval", "{run}", "--attack", "fgsm", "--device", "gpu"], "is not a device"),
    # output files are checked before the work starts
    (["eval", "{run}", "--attack", "fgsm", "--json", "{tmp}/missing/eval.json"], "does not exist"),
    (["eval", "{run}", "--attack", "fgsm", "--csv", "{tmp}"], "is a directory"),
    (["cost", "--model", "small_cnn", "--json", "{tmp}/missing/cost.json"], "does not exist"),
    (["checklist", "{run}", "--eps", "0.1", "--json", "{tmp}/missing/c.json"], "does not exist"),
    (["plot", "{tmp}/not_json.txt", "--attack", "fgsm", "--out", "{tmp}/missing/p.png"], "does not exist"),
    # plot inputs
    (["plot", "{tmp}/not_json.txt", "--attack", "fgsm", "--out", "{tmp}/p.png"], "not a JSON file"),
    (["plot", "{tmp}/report.json", "--attack", "fgsm", "--out", "{tmp}/p.png"],
     "not an evaluation result"),
    (["plot", "{tmp}/nothing.json", "--attack", "fgsm", "--out", "{tmp}/p.png"], "no such file"),
    # dials and models
    (["eval", "{run}", "--attack", "fgsm", "--dial", "lam=0.5"], "has no λ dial"),
    (["eval", "{run}", "--attack", "fgsm", "--dial", "noise=sample"], "has no noise dial"),
    (["cost", "--model", "small_cnn", "--option", "num_classes=0"], "num_classes must be a positive int"),
    (["cost", "--model", "small_cnn", "--option", "num_classes=ten"], "num_classes must be a positive int"),
    (["cost"], "give a checkpoint directory or --model NAME"),
    (["cost", "{run}", "--input-shape", "3,32"], "must look like C,H,W"),
    (["eval", "{run}", "--attack", "fgsm", "--max-samples", "0"], "--max-samples must be ≥ 1"),
    # data: corrupt or altered files name the file and how to re-fetch it
    (["eval", "{run}", "--dataset", "mnist", "--data-dir", "{tmp}/fake"], "differs from the published"),
    (["eval", "{run}", "--dataset", "mnist", "--data-dir", "{tmp}/fake"], "--download"),
    (["eval", "{run}", "--dataset", "mnist", "--data-dir", "{tmp}/trunc", "--no-verify"],
     "t10k-images-idx3-ubyte.gz: cannot be read, the file is truncated or corrupt"),
    (["eval", "{run}", "--dataset", "mnist", "--data-dir", "{tmp}/badlabel", "--no-verify"],
     "holds label 12, outside [0, 10)"),
]


def _fill(argv: list[str], files: dict[str, Path]) -> list[str]:
    return [a.format(**{k: str(v) for k, v in files.items()}) for a in argv]


@pytest.mark.parametrize("argv, fragment", TABLE, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_input_is_one_line_exit_2(files, capsys, argv, fragment):
    rc = main(["-q", *_fill(argv, files)])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert fragment in err, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"robustdial {argv[0]}: error: "), err


def test_debug_shows_the_traceback(files, capsys):
    for args in (["--debug", "eval", str(files["run"]), "--attack", "pgd-0"],
                 ["eval", str(files["run"]), "--attack", "pgd-0", "--debug"]):
        rc = main(["-q", *args])
        err = capsys.readouterr().err
        assert rc == 2
        assert "Traceback" in err and err.rstrip().splitlines()[-1].startswith("robustdial eval: error:")


def test_download_offline_leaves_no_folder_and_prints_one_line(files, capsys, monkeypatch):
    dead = tuple(Resource(r.filename, r.md5, (f"file://{files['tmp']}/offline/{r.filename}",))
                 for r in dl.RESOURCES["mnist"])
    monkeypatch.setattr(dl, "RESOURCES", {**dl.RESOURCES, "mnist": dead})
    root = files["tmp"] / "offline_root"
    rc = main(["-q", "eval", str(files["run"]), "--dataset", "mnist", "--data-dir", str(root),
               "--download"])
    err = capsys.readouterr().err
    assert rc == 2 and "could not download" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert not root.exists()  # no empty <root>/mnist/ left behind


def test_cost_accepts_a_run_directory_and_takes_the_shape_from_it(files, capsys, tmp_path):
    js = tmp_path / "cost.json"
    assert main(["-q", "cost", str(files["run"]), "--json", str(js)]) == 0, capsys.readouterr().err
    assert json.loads(js.read_text())["input_shape"] == [1, 8, 8]  # digits, from run.json


def test_checklist_accepts_a_run_directory(files, capsys):
    rc = main(["-q", "checklist", str(files["run"]), "--eps", "0.1", "--n", "8", "--steps", "1",
               "--batch-size", "8", "--device", "cpu"])
    captured = capsys.readouterr()
    assert rc in (0, 1), captured.err  # 1 = a check failed (an untrained model), not an error
    assert "eps_sweep" in captured.out and "Traceback" not in captured.err


def test_eval_of_the_readme_mnist_recipe(tmp_path, capsys, shared_data_root):
    """The README's MNIST recipe trains a single-head SmallCNN: eval gives the plain table, not the RDI report."""
    out = tmp_path / "mnist"
    rc = main(["-q", "train", str(REPO / "configs" / "rdi_mnist_smallcnn_pgdat.yaml"), "--out", str(out),
               "--device", "cpu", "--data-dir", str(shared_data_root), "--no-eval",
               "--set", "train.iterations=2", "--set", "train.batch_size=32",
               "--set", "data.max_train_samples=128", "--set", "data.val_size=64",
               "--set", "method.attack.steps=1", "--set", "train.max_val_samples=32"])
    assert rc == 0, capsys.readouterr().err
    capsys.readouterr()
    rc = main(["-q", "eval", str(out), "--attack", "pgd-2:alpha=0.2", "--attack", "fgsm", "--eps", "0.3",
               "--max-samples", "16", "--data-dir", str(shared_data_root), "--device", "cpu"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "mnist/test" in captured.out and "pgd-2:alpha=0.2" in captured.out and "fgsm" in captured.out
