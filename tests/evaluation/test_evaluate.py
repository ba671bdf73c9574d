"""evaluate(): rows, clean accuracy, conditions applied and restored, result formats."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from robustdial.attacks import FGSM, PGD
from robustdial.condition import Condition, Interval, get_condition, set_condition
from robustdial.evaluation.runner import ANY_ATTACK
from robustdial.evaluation import EvalResult, EvalRow, evaluate, plot_tradeoff, provenance


class LamShift(nn.Module):
    """Adds λ·bias to the logits: a dial that visibly changes predictions."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.lam = 0.0
        self.bias = torch.linspace(-3, 3, classes)

    def apply_condition(self, cond: Condition) -> None:
        self.lam = cond.lam_value

    def dial_specs(self) -> dict:
        return {"lam": Interval(0.0, 1.0)}

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z + self.lam * self.bias


def dial_model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(),
                         nn.Linear(32, 10), LamShift(10))


class RecordingAttack:
    """Identity 'attack' that records the condition and mode it ran under."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, bool]] = []

    def __call__(self, model, x, y):
        self.seen.append((get_condition(model).lam_value, model.training))
        return x

    def __repr__(self) -> str:
        return "Recording()"


@pytest.fixture()
def data():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(70, 1, 8, 8, generator=g)
    y = torch.randint(0, 10, (70,), generator=g)
    return x, y


def _direct_acc(model, x, y, lam):
    model.eval()
    set_condition(model, lam=lam)
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item() * 100
    set_condition(model, Condition())
    return acc


def test_rows_and_clean_accuracy(data):
    x, _ = data
    model = dial_model()
    with torch.no_grad():  # labels = the λ=0 predictions, so λ=0 scores 100 %
        y = model.eval()(x).argmax(1)
    model.train()
    attacks = {"fgsm": FGSM(eps=0.1), "pgd": PGD(eps=0.1, alpha=0.03, steps=3)}
    res = evaluate(model, (x, y), attacks, [{"lam": 0.0}, {"lam": 1.0}], batch_size=32)
    assert len(res.rows) == 6
    assert [(r.condition, r.attack) for r in res.rows] == [
        ({"lam": 0.0}, "fgsm"), ({"lam": 0.0}, "pgd"), ({"lam": 0.0}, ANY_ATTACK),
        ({"lam": 1.0}, "fgsm"), ({"lam": 1.0}, "pgd"), ({"lam": 1.0}, ANY_ATTACK)]
    assert all(r.n == 70 for r in res.rows)
    acc0, acc1 = _direct_acc(model, x, y, 0.0), _direct_acc(model, x, y, 1.0)
    assert acc0 == 100.0 and acc1 < 90.0  # the dial matters
    assert res.rows[0].clean_acc == pytest.approx(acc0)
    assert res.rows[3].clean_acc == pytest.approx(acc1)
    assert res.rows[0].robust_acc < 100.0 and res.rows[1].robust_acc < 100.0
    assert all(r.robust_acc <= r.clean_acc for r in res.rows[3:])
    # robust accuracy equals a direct computation with the same seed and batches
    model.eval()
    set_condition(model, lam=0.0)
    ok = {}
    for name in ("fgsm", "pgd"):
        torch.manual_seed(0)
        flags = []
        for i in range(0, 70, 32):
            xa = attacks[name](model, x[i:i + 32], y[i:i + 32])
            with torch.no_grad():
                flags.append(model(xa).argmax(1) == y[i:i + 32])
        ok[name] = torch.cat(flags)
    assert res.rows[1].robust_acc == pytest.approx(100 * ok["pgd"].float().mean().item())
    # the "any attack" row is the per-sample AND, not the minimum of the two rows
    both = (ok["fgsm"] & ok["pgd"]).float().mean().item() * 100
    assert res.rows[2].robust_acc == pytest.approx(both)
    assert res.rows[2].robust_acc <= min(res.rows[0].robust_acc, res.rows[1].robust_acc)


def test_conditions_applied_and_restored(data):
    x, y = data
    model = dial_model()
    model.train()
    set_condition(model, lam=0.5)
    rec = RecordingAttack()
    res = evaluate(model, (x, y), [rec], [{"lam": 0.0}, {"lam": 1.0}], batch_size=32)
    # 3 batches per condition, each under its own λ and in eval mode
    assert rec.seen == [(0.0, False)] * 3 + [(1.0, False)] * 3
    assert get_condition(model).lam == 0.5
    assert model.training and all(m.training for m in model.modules())
    # the identity attack leaves accuracy unchanged; name from repr
    assert all(r.attack == "Recording()" and r.robust_acc == r.clean_acc for r in res.rows)


def test_no_conditions_and_no_attacks(data):
    x, y = data
    model = dial_model().eval()
    res = evaluate(model, (x, y), None, max_samples=50, batch_size=16)
    assert len(res.rows) == 1
    row = res.rows[0]
    assert row.condition == {} and row.attack == "none" and row.n == 50
    with torch.no_grad():
        direct = (model(x[:50]).argmax(1) == y[:50]).float().mean().item() * 100
    assert row.clean_acc == pytest.approx(direct) and row.robust_acc == row.clean_acc


def test_uint8_image_data_is_scaled(data):
    x, y = data
    x8 = (x * 255).round().to(torch.uint8)

    class Images:  # duck-typed ImageData
        images, labels, name, split = x8, y, "toy", "test"

    model = dial_model().eval()
    a = evaluate(model, Images(), None).rows[0].clean_acc
    b = evaluate(model, (x8.float() / 255, y), None).rows[0].clean_acc
    assert a == b
    assert evaluate(model, Images(), None).meta["dataset"] == {"name": "toy", "split": "test"}


def test_seeded_random_starts_are_reproducible_and_rng_restored(data):
    x, y = data
    model = dial_model().eval()
    attack = {"pgd": PGD(eps=0.2, alpha=0.05, steps=2)}
    state = torch.get_rng_state()
    r1 = evaluate(model, (x, y), attack, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    r2 = evaluate(model, (x, y), attack, seed=3)
    assert r1.rows == r2.rows


def test_json_csv_table_round_trip(tmp_path, data):
    x, y = data
    model = dial_model()
    res = evaluate(model, (x, y), {"fgsm": FGSM(eps=0.1)}, [{"lam": 0.0}, {"lam": 0.5}])
    path = tmp_path / "eval.json"
    res.to_json(path)
    back = EvalResult.from_json(path)
    assert back.rows == res.rows
    assert EvalResult.from_json(res.to_json()).rows == res.rows
    assert json.loads(path.read_text())["meta"]["provenance"]["torch"] == torch.__version__
    csv_text = res.to_csv(tmp_path / "eval.csv")
    lines = csv_text.strip().splitlines()
    assert lines[0] == "cond_lam,attack,clean_acc,robust_acc,n" and len(lines) == 3
    table = res.to_table().splitlines()
    assert len(table) == 4 and "lam=0.5" in table[3] and "fgsm" in table[3]
    assert len({len(line) for line in table[:2]}) == 1  # header and rule aligned


def test_bad_arguments(data):
    x, y = data
    model = dial_model()
    with pytest.raises(ValueError, match="no 'width' dial"):
        evaluate(model, (x, y), None, [{"width": 0.5}])
    with pytest.raises(TypeError, match="ImageData"):
        evaluate(model, x, None)
    with pytest.raises(ValueError, match="labels"):
        evaluate(model, (x, y[:3]), None)
    with pytest.raises(ValueError, match="share the name"):
        evaluate(model, (x, y), [FGSM(eps=0.1), FGSM(eps=0.1)])


def test_plot_tradeoff_writes_png(tmp_path):
    rows = [EvalRow({"lam": lam}, "pgd", 90 - 20 * lam, 20 + 30 * lam, 100) for lam in (0.0, 0.5, 1.0)]
    import matplotlib

    backend = matplotlib.get_backend()
    out = plot_tradeoff({"oat": EvalResult(rows)}, "pgd", tmp_path / "sub" / "t.png",
                        frontier=[(88.0, 25.0, "PGD-AT λ=0.5"), (75.0, 45.0)])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert matplotlib.get_backend() == backend
    with pytest.raises(ValueError, match="attacks present"):
        plot_tradeoff({"oat": rows}, "fgsm", tmp_path / "x.png")


def test_provenance_fields():
    p = provenance()
    for key in ("command", "git_commit", "git_dirty", "torch", "python", "device", "threads",
                "timestamp"):
        assert key in p
    assert p["torch"] == torch.__version__ and p["threads"] >= 1
    json.dumps(p)


def test_provenance_records_the_commit_the_run_started_from(monkeypatch):
    """A checkout that changes while a run goes on does not rewrite the run's commit."""
    import importlib

    prov_mod = importlib.import_module("robustdial.evaluation._provenance")  # the module, not the function

    now = prov_mod._git_state()
    assert provenance()["git_commit"] == now[0]  # nothing changed since import in this test
    monkeypatch.setattr(prov_mod, "_AT_START", ("0" * 40, False))
    p = provenance()
    assert p["git_commit"] == "0" * 40 and p["git_dirty"] is False
    assert p["git_commit_at_write"] == now[0] and p["git_dirty_at_write"] == now[1]


def test_package_name_is_callable_after_import(data):
    import robustdial as rd
    import robustdial.evaluation  # noqa: F401 - binds the sub-package under the same name

    x, y = data
    model = dial_model().eval()
    assert rd.evaluate(model, (x, y)).rows == evaluate(model, (x, y)).rows


def test_provenance_records_timing_environment(monkeypatch):
    """Allocator and thread settings change CPU timings by up to 2×: they are recorded."""
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "4000000000")
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    env = provenance("cpu")["env"]
    assert env["MALLOC_TRIM_THRESHOLD_"] == "4000000000" and "MALLOC_MMAP_THRESHOLD_" not in env


class _FirstPixelNet(nn.Module):
    """Predicts class round(9·x[0, 0, 0]): an attack flips a sample by moving that pixel."""

    def forward(self, x):
        cls = (x[:, 0, 0, 0] * 9).round().long()
        return torch.nn.functional.one_hot(cls, 10).float()


class _FoolRange:
    """A stub attack that fools exactly the samples whose index (in the batch) is in [lo, hi)."""

    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi

    def __call__(self, model, x, y):
        x = x.clone()
        x[self.lo:self.hi, 0, 0, 0] = ((y[self.lo:self.hi] + 1) % 10).float() / 9
        return x


def test_any_attack_row_is_the_per_sample_worst_case():
    y = torch.arange(40) % 10
    x = torch.zeros(40, 1, 2, 2)
    x[:, 0, 0, 0] = y.float() / 9
    res = evaluate(_FirstPixelNet(), (x, y), {"a": _FoolRange(0, 10), "b": _FoolRange(10, 20)},
                   batch_size=40)
    acc = {r.attack: r.robust_acc for r in res.rows}
    assert acc["a"] == acc["b"] == 75.0
    assert acc[ANY_ATTACK] == 50.0  # not min(75, 75): different samples fall to each attack
    one = evaluate(_FirstPixelNet(), (x, y), {"a": _FoolRange(0, 10)}, batch_size=40)
    assert [r.attack for r in one.rows] == ["a"]  # one attack: no extra row
