"""Issue #14: bad input to the Python API raises one clear error (table: call -> type, message fragment)."""
from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import robustdial as rd
from robustdial.attacks import FGSM, MIFGSM, PGD, AutoAttack, parse_attack
from robustdial.condition import dial_specs
from robustdial.data import ChecksumError, DatasetFileError, load_dataset
from robustdial.evaluation.multi_exit import default_step, report


def _plain():
    return rd.create_model("preact_resnet20", in_channels=1).eval()


def _oat():
    return rd.create_model("preact_resnet20", in_channels=1, conditioning="oat").eval()


def _x(b: int = 4) -> torch.Tensor:
    return torch.rand(b, 1, 8, 8, generator=torch.Generator().manual_seed(0))


Y = torch.tensor([0, 1, 2, 3])


def _attack(x: torch.Tensor, y: torch.Tensor = Y) -> None:
    PGD(eps=0.1, alpha=0.05, steps=1)(_plain(), x, y)


def _nan_x() -> torch.Tensor:
    x = _x()
    x[1, 0, 2, 3] = float("nan")
    return x


def _lam_forward(lam: torch.Tensor) -> None:
    model = _oat()
    rd.set_condition(model, lam=lam)
    model(_x(4))


def _idx_gz(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 8, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    path.write_bytes(gzip.compress(header + arr.astype(np.uint8).tobytes()))


def _fake_mnist(root: Path, labels=(3, 1, 4, 1), truncate: bool = False) -> Path:
    d = root / "mnist"
    d.mkdir(parents=True, exist_ok=True)
    _idx_gz(d / "t10k-images-idx3-ubyte.gz", np.zeros((len(labels), 28, 28)))
    _idx_gz(d / "t10k-labels-idx1-ubyte.gz", np.asarray(labels))
    if truncate:
        raw = (d / "t10k-images-idx3-ubyte.gz").read_bytes()
        (d / "t10k-images-idx3-ubyte.gz").write_bytes(raw[: len(raw) // 2])
    return root


# (callable taking tmp_path, expected exception type, message fragment)
TABLE = [
    # models and dials
    ("num_classes=0", lambda t: rd.create_model("small_cnn", num_classes=0), ValueError,
     "num_classes must be a positive int"),
    ("num_classes=2.5", lambda t: rd.create_model("small_cnn", num_classes=2.5), TypeError,
     "num_classes must be a positive int"),
    ("num_classes='10'", lambda t: rd.create_model("small_cnn", num_classes="10"), TypeError,
     "num_classes must be a positive int"),
    ("num_classes=True", lambda t: rd.create_model("small_cnn", num_classes=True), TypeError,
     "num_classes must be a positive int"),
    ("lam='high'", lambda t: rd.set_condition(_oat(), lam="high"), ValueError, "dial lam='high' must be a number"),
    ("lam=[0.1, 0.2]", lambda t: rd.set_condition(_oat(), lam=[0.1, 0.2]), ValueError, "dial lam="),
    ("lam=True", lambda t: rd.set_condition(_oat(), lam=True), ValueError, "dial lam=True must be a number"),
    ("lam_th='x'", lambda t: rd.set_condition(_oat(), lam_th="x"), ValueError, "dial lam_th='x'"),
    ("lam 2-D tensor", lambda t: rd.set_condition(_oat(), lam=torch.zeros(2, 2)), ValueError,
     "must be 1-D"),
    ("lam int tensor", lambda t: rd.set_condition(_oat(), lam=torch.tensor([0, 1])), ValueError,
     "must be floating point"),
    ("lam length != batch", lambda t: _lam_forward(torch.tensor([0.0, 1.0, 1.0])), ValueError,
     "per-sample λ has 3 entries but the batch has 4"),
    ("width='half'", lambda t: rd.set_condition(
        rd.create_model("preact_resnet20", in_channels=1, widths=(0.5, 1.0)), width="half"),
     ValueError, "dial width='half' is not available"),
    ("thresholds=0.5", lambda t: rd.set_condition(rd.create_model("small_cnn", exits=True), thresholds=0.5),
     ValueError, "dial thresholds=0.5 must be a sequence"),
    ("noise on a noiseless model", lambda t: rd.set_condition(_plain(), noise="sample"), ValueError,
     "has no 'noise' dial"),
    ("noise='hold' on OAT", lambda t: rd.set_condition(_oat(), noise="hold"), ValueError,
     "has no 'noise' dial"),
    # attack hyper-parameters
    ("PGD alpha=0", lambda t: PGD(alpha=0), ValueError, "alpha must be a finite number > 0"),
    ("PGD alpha=-1", lambda t: PGD(alpha=-1), ValueError, "alpha must be a finite number > 0"),
    ("PGD steps=0", lambda t: PGD(steps=0), ValueError, "steps must be an integer ≥ 1"),
    ("PGD steps=2.5", lambda t: PGD(steps=2.5), ValueError, "steps must be an integer ≥ 1"),
    ("PGD eps=8", lambda t: PGD(eps=8), ValueError, "8/255, not 8"),
    ("PGD eps='8/255'", lambda t: PGD(eps="8/255"), TypeError, "eps must be a number"),
    ("FGSM eps=8", lambda t: FGSM(eps=8), ValueError, "8/255, not 8"),
    ("MIFGSM eps=16", lambda t: MIFGSM(eps=16), ValueError, "16/255, not 16"),
    ("MIFGSM steps=0", lambda t: MIFGSM(steps=0), ValueError, "steps must be an integer ≥ 1"),
    ("AutoAttack eps=8", lambda t: AutoAttack(eps=8), ValueError, "8/255, not 8"),
    ("parse 'pgd-0'", lambda t: parse_attack("pgd-0"), ValueError, "the step count must be ≥ 1"),
    ("parse 'pgd-5:eps=8'", lambda t: parse_attack("pgd-5:eps=8"), ValueError, "8/255, not 8"),
    ("parse 'mifgsm-0'", lambda t: parse_attack("mifgsm-0"), ValueError, "the step count must be ≥ 1"),
    # attack inputs (one fused check per call)
    ("x on the 0..255 scale", lambda t: _attack(_x() * 255), ValueError, "x must be images in [0, 1]"),
    ("x normalised (< 0)", lambda t: _attack(_x() - 0.5), ValueError, "Normalize"),
    ("x with NaN", lambda t: _attack(_nan_x()), ValueError, "NaN or infinite"),
    ("x with inf", lambda t: _attack(_x().index_fill(0, torch.tensor([0]), float("inf"))), ValueError,
     "NaN or infinite"),
    ("x float64", lambda t: _attack(_x().double()), TypeError, "x is torch.float64 but the model's"),
    ("x half", lambda t: _attack(_x().half()), TypeError, "x is torch.float16 but the model's"),
    ("x uint8", lambda t: _attack((_x() * 255).to(torch.uint8)), TypeError, "x.float() / 255"),
    ("label = K", lambda t: _attack(_x(), torch.tensor([0, 1, 2, 10])), ValueError,
     "labels must be class indices in [0, 10), got 10"),
    ("label = -100", lambda t: _attack(_x(), torch.full((4,), -100)), ValueError,
     "got -100 (ignore_index"),
    ("float labels", lambda t: _attack(_x(), Y.float()), TypeError, "integer class labels"),
    ("labels (B, 1)", lambda t: _attack(_x(), Y[:, None]), ValueError, "y must be a (B,) tensor"),
    # data files
    ("md5 mismatch", lambda t: load_dataset("mnist", root=_fake_mnist(t), split="test"), ChecksumError,
     "t10k-images-idx3-ubyte.gz: md5"),
    ("md5 mismatch says how to re-fetch", lambda t: load_dataset("mnist", root=_fake_mnist(t), split="test"),
     ChecksumError, "--download"),
    ("truncated file", lambda t: load_dataset("mnist", root=_fake_mnist(t, truncate=True), split="test",
                                              verify=False), DatasetFileError,
     "t10k-images-idx3-ubyte.gz: cannot be read, the file is truncated or corrupt"),
    ("truncated file says how to re-fetch", lambda t: load_dataset(
        "mnist", root=_fake_mnist(t, truncate=True), split="test", verify=False), DatasetFileError,
     "run again with --download"),
    ("label out of range at load", lambda t: load_dataset(
        "mnist", root=_fake_mnist(t, labels=(3, 12, 4, 1)), split="test", verify=False), DatasetFileError,
     "holds label 12, outside [0, 10)"),
    ("negative label at load", lambda t: load_dataset(
        "mnist", root=_fake_mnist(t, labels=(3, 255, 4, 1)), split="test", verify=False), DatasetFileError,
     "holds label 255, outside [0, 10)"),
    # the multi-exit report needs early exits
    ("report on a single-head model", lambda t: report(rd.create_model("small_cnn"), (
        torch.rand(2, 1, 28, 28), torch.tensor([0, 1])), eps=0.3), ValueError, "needs early exits"),
]


@pytest.mark.parametrize("call, exc, fragment", [row[1:] for row in TABLE], ids=[row[0] for row in TABLE])
def test_bad_input_raises_a_clear_error(tmp_path, call, exc, fragment):
    with pytest.raises(exc) as err:
        call(tmp_path)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)  # one line


def test_valid_edges_stay_valid():
    """The checks refuse only what is wrong: L2 radii above 1, ε = 0, noise modes on noisy models."""
    assert PGD(norm="l2", eps=2.0, alpha=0.5).eps == 2.0
    assert parse_attack("pgd-10", eps=0.0).alpha == 0.0  # a zero-radius attack is a no-op, not an error
    assert parse_attack("pgd-10", eps=1.0).eps == 1.0
    floaty = rd.create_model("preact_resnet20", in_channels=1, conditioning="float")
    assert "noise" in dial_specs(floaty) and "noise" not in dial_specs(_oat())
    rd.set_condition(floaty, noise="sample", lam=torch.tensor([0.0, 1.0]))
    for mode in ("off", "fixed", "sample"):  # a noiseless model has no noise dial at all
        with pytest.raises(ValueError, match="no 'noise' dial"):
            rd.set_condition(_plain(), noise=mode)
    rd.set_condition(_oat(), lam=np.float32(0.5))
    assert rd.create_model("small_cnn", num_classes=np.int64(3)).rd_spec["num_classes"] == 3
    x = _x()
    x[0] = 1.0
    x[1] = 0.0  # the range ends are fine
    out = PGD(eps=0.1, alpha=0.05, steps=1)(_plain(), x, Y.int())  # int32 labels are widened
    assert out.dtype == torch.float32 and out.shape == x.shape
    empty = PGD(eps=0.1, alpha=0.05, steps=1)(_plain(), x[:0], Y[:0])
    assert empty.shape == (0, 1, 8, 8)


def test_mifgsm_default_step_is_eps_over_steps():
    assert math.isclose(MIFGSM(eps=8 / 255, steps=10).alpha, 0.8 / 255)
    assert math.isclose(MIFGSM(eps=0.3, steps=5).alpha, 0.06)
    assert math.isclose(parse_attack("mifgsm-4", eps=0.2).alpha, 0.05)
    assert MIFGSM(eps=0.3, steps=5, alpha=0.1).alpha == 0.1


def test_multi_exit_report_default_step():
    assert math.isclose(default_step(8 / 255, 20), 2 / 255)  # RDI-Nets CIFAR-10: PGD-20 step 2/255
    assert math.isclose(default_step(8 / 255, 10), 2 / 255)
    assert math.isclose(default_step(0.3, 40), 0.01)  # RDI-Nets MNIST: PGD-40 step 0.01
    assert math.isclose(default_step(0.3, 20), 2.5 * 0.3 / 20)  # elsewhere 2.5·ε/steps
    assert math.isclose(default_step(0.1, 7), 2.5 * 0.1 / 7)


def test_input_check_is_one_host_sync_per_call(monkeypatch):
    """One host sync (``.tolist()`` / ``.item()``) per attack call, however many steps."""
    calls = []
    for name in ("tolist", "item"):
        real = getattr(torch.Tensor, name)

        def counting(self, _real=real, _name=name):
            calls.append(_name)
            return _real(self)

        monkeypatch.setattr(torch.Tensor, name, counting)
    model = _plain()
    PGD(eps=0.1, alpha=0.05, steps=5)(model, _x(), Y)
    assert calls == ["tolist"]
