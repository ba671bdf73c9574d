"""The robustness report: AutoAttack profile, obfuscation flags, EOT, fold, cache, transfer, records."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import robustdial as rd
from robustdial.attacks import AutoAttack
from robustdial.data import load_dataset
from robustdial.evaluation import RobustnessReport, report
from robustdial.evaluation._report_point import PROFILES, Profile
from robustdial.methods import build_method

# a cheap profile for tests: the same code paths as "fast", fewer iterations
TINY = Profile("tiny", ("apgd-ce",), "AutoAttack APGD-CE only (test profile)", 1, 10, (2, 5),
               (0.5, 2.0), 5, 200, 5, 6)
RB_FIELDS = {"name", "architecture", "dataset", "eps", "clean_acc", "autoattack_acc",
             "additional_data", "number_forward_passes", "venue", "link", "footnote"}


@pytest.fixture(scope="module")
def digits():
    test = load_dataset("digits", split="test")
    return test.images[:96].float() / 255, test.labels[:96].clone()


def _linear_model(seed: int = 0) -> nn.Module:
    """A softmax regression on 8×8 digits (≈ 95 % clean), trained in a second."""
    torch.manual_seed(seed)
    train = load_dataset("digits", split="train")
    x, y = train.images.float() / 255, train.labels
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return net.eval()


class _RoundInput(nn.Module):
    """Input quantizer with a zero gradient everywhere (masks gradients, does not add robustness)."""

    def forward(self, x):
        return torch.round(x * 4) / 4


@pytest.fixture(scope="module")
def float_model():
    rd.utils.seed_everything(0)
    train, val = load_dataset("digits", split="train"), load_dataset("digits", split="val")
    m = rd.create_model("preact_resnet20", num_classes=10, in_channels=1, conditioning="float")
    rd.fit(m, build_method("float", attack="pgd-3:eps=0.2"), (train, val),
           rd.FitConfig(epochs=2, lr=0.05, batch_size=64, augment="none", select="last",
                        progress=False))
    return m.eval()


@pytest.fixture(scope="module")
def noisy_float_model(float_model):
    """The FLOAT model with every noise scale α tripled: strongly randomized at noise="sample"."""
    import copy

    m = copy.deepcopy(float_model)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(getattr(mod, "alpha", None), nn.Parameter):
                mod.alpha.mul_(3.0)
    return m.eval()


def test_fast_profile_equals_a_direct_pyautoattack_call(digits):
    pyautoattack = pytest.importorskip("pyautoattack", reason='pip install -e ".[dev]" (or "robustdial[eval]"; '
                                       "scripts/env.sh installs it)")
    x, y = digits[0][:32], digits[1][:32]
    model = _linear_model()
    ours = AutoAttack(eps=0.1, version="standard", components=("apgd-ce", "apgd-t"), seed=0)(model, x, y)
    direct = pyautoattack.AutoAttack(model, norm="Linf", eps=0.1, version="standard", seed=0)
    direct.attacks_to_run = ["apgd-ce", "apgd-t"]
    ref, _ = direct.run_standard_evaluation(x, y, batch_size=len(x))
    assert torch.equal(ours, ref)
    # and the report's AutoAttack column is that attack's accuracy
    rep = report(model, (x, y), eps=0.1, profile="fast", checks=False, latency=False, progress=False)
    with torch.no_grad():
        direct_acc = 100.0 * (model(ref).argmax(1) == y).float().mean().item()
    assert rep.points[0]["accuracy"]["autoattack"] == pytest.approx(direct_acc)
    assert "APGD-CE + APGD-T" in rep.points[0]["attacks"]["autoattack"]
    assert PROFILES["fast"].aa_label in rep.to_markdown()


def test_masked_gradients_are_flagged(digits):
    x, y = digits
    model = nn.Sequential(_RoundInput(), _linear_model()).eval()
    rep = report(model, (x, y), eps=0.2, profile=TINY, latency=False, progress=False)
    p = rep.points[0]
    checks = {c["name"]: c for c in p["checks"]}
    assert checks["zero_gradients"]["passed"] is False
    assert checks["zero_gradients"]["numbers"]["fraction"] == 1.0
    assert checks["square_vs_whitebox"]["passed"] is False  # black-box beats the gradient attacks
    assert p["accuracy"]["square"] < p["accuracy"]["autoattack"] - 10
    assert not p["checks_passed"]
    # the per-sample worst case takes the black-box result into account
    assert p["worst_case"]["accuracy"] <= p["accuracy"]["square"]


@pytest.mark.slow
def test_randomized_point_is_flagged_and_eot_is_stronger(digits, noisy_float_model):
    # measured: PGD-10 with EOT 6 30.2 %, without EOT 39.6 % (96 digits, α ×3)
    x, y = digits
    rep = report(noisy_float_model, (x, y), eps=0.2, dials={"lam": [1.0], "noise": ["sample"]},
                 profile=TINY, checks=False, latency=False, progress=False)
    p = rep.points[0]
    assert p["stochastic"] is True
    assert "rand" in p["attacks"]["autoattack"] and "EOT" in p["attacks"]["pgd"]
    assert p["evaluated_on"]["folded"] is False
    randomized = [c for c in p["checks"] if c["name"] == "randomized"]
    assert randomized and randomized[0]["passed"] is False
    assert p["accuracy"]["pgd"] < p["accuracy"]["pgd_no_eot"] - 3
    assert not p["checks_passed"]


@pytest.mark.slow
def test_fixed_noise_point_is_deterministic_and_folded_with_identical_results(digits, float_model):
    x, y = digits
    kw = dict(eps=0.2, dials={"lam": [0.5]}, profile=TINY, checks=False, latency=False, progress=False)
    folded = report(float_model, (x, y), **kw).points[0]
    module = report(float_model, (x, y), fold=False, **kw).points[0]
    assert folded["stochastic"] is False
    assert folded["evaluated_on"]["folded"] is True
    assert folded["evaluated_on"]["max_abs_logit_diff"] <= 1e-5
    assert module["evaluated_on"]["folded"] is False
    for key in ("clean", "autoattack", "pgd"):
        assert folded["accuracy"][key] == module["accuracy"][key], key


def test_cache_resumes_and_a_changed_model_or_setting_is_recomputed(tmp_path, digits):
    x, y = digits
    model = _linear_model()
    kw = dict(dials=None, profile=TINY, checks=False, latency=False, progress=False,
              cache_dir=tmp_path / "cache")
    first = report(model, (x, y), eps=0.1, **kw)
    assert first.data["cache"]["writes"] == 3 and first.data["cache"]["hits"] == 0
    again = report(model, (x, y), eps=0.1, **kw)
    assert again.data["cache"] == {**first.data["cache"], "hits": 3, "writes": 0}
    assert again.points[0]["accuracy"] == first.points[0]["accuracy"]
    other_eps = report(model, (x, y), eps=0.15, **kw)
    assert other_eps.data["cache"]["hits"] == 0
    with torch.no_grad():
        model[1].bias[0] += 1.0
    changed = report(model, (x, y), eps=0.1, **kw)
    assert changed.data["cache"]["hits"] == 0
    # a corrupt entry is recomputed, never trusted
    for f in (tmp_path / "cache").glob("*.safetensors"):
        f.write_bytes(b"not a safetensors file")
    again = report(model, (x, y), eps=0.1, **kw)
    assert again.data["cache"]["hits"] == 0


@pytest.mark.slow
def test_transfer_matrix_worst_case_and_records(tmp_path, digits, float_model):
    x, y = digits
    rep = report(float_model, (x, y), eps=0.2, dials={"lam": [0.0, 1.0]}, profile=TINY,
                 baselines={"linear": _linear_model()}, latency=False, progress=False)
    t = rep.data["transfer"]
    assert t["labels"] == ["lam=0", "lam=1"]
    for j, label in enumerate(t["labels"]):
        p = rep.points[j]
        acc = p["accuracy"]
        # own examples: surviving both AutoAttack and PGD
        assert t["matrix"][j][j] <= min(acc["autoattack"], acc["pgd"]) + 1e-9
        # the dial-agnostic worst case is at most every entry of its column
        assert t["dial_agnostic"][label] <= min(row[j] for row in t["matrix"]) + 1e-9
        # the per-sample worst case is at most every attack run at the point's ε
        assert p["worst_case"]["accuracy"] <= min(acc[k] for k in p["worst_case"]["attacks"]) + 1e-9
        assert "transfer" in acc  # the baseline serves as the transfer source
    assert rep.data["baselines"][0]["name"] == "linear"
    recs = rep.records()
    assert len(recs) == 2 and all(set(r) == RB_FIELDS for r in recs)
    assert "lam=1" in recs[1]["footnote"] and "test profile" in recs[1]["footnote"]
    path = tmp_path / "r.json"
    rep.to_json(path)
    assert RobustnessReport.from_json(path).points[1]["label"] == "lam=1"
    md = rep.to_markdown()
    assert "## Dial transfer" in md and "## Baselines" in md and "| lam=0 |" in md
    png = rep.plot(tmp_path / "r.png")
    assert png.stat().st_size > 10_000
    assert json.loads(path.read_text())["format"] == "robustdial-report/1"


def test_bad_arguments_are_refused(digits):
    x, y = digits
    model = _linear_model()
    with pytest.raises(ValueError, match="8/255, not 8"):
        report(model, (x, y), eps=8)
    with pytest.raises(ValueError, match="profile must be one of"):
        report(model, (x, y), eps=0.1, profile="quick")
    with pytest.raises(ValueError, match="non-empty list"):
        report(model, (x, y), eps=0.1, dials={"lam": []})


def test_narrow_width_latency_is_timed_beside_the_widest_backbone(digits):
    """A narrower width is timed in the same round-robin as the widest plain backbone (fair across widths)."""
    x, y = digits[0][:16], digits[1][:16]
    rd.utils.seed_everything(0)
    m = rd.create_model("mini_cnn", in_channels=1, conditioning="float", widths=(0.5, 1.0)).eval()
    rep = report(m, (x, y), eps=0.1, dials={"width": [0.5, 1.0], "lam": [1.0]}, profile=TINY, checks=False,
                 latency=True, progress=False).to_dict()
    narrow, wide = rep["points"]
    assert narrow["dials"]["width"] == 0.5 and wide["dials"]["width"] == 1.0
    assert narrow["latency"]["widest"]["width"] == 1.0
    for b in ("batch1", "batch64"):
        lat = narrow["latency"][b]
        assert lat["widest_backbone_s"] > 0
        assert lat["speedup_vs_widest"] == pytest.approx(lat["widest_backbone_s"] / lat["backbone_s"])
    # at the widest width there is nothing to compare with
    assert "widest" not in wide["latency"] and "speedup_vs_widest" not in wide["latency"]["batch64"]
