"""The mutation list (scripts/mutations.toml) still matches the code, and the checker validates.

Runs nothing mutated (that is ``scripts/mutation_check.py``): it only checks, in
milliseconds, that every listed snippet occurs exactly once in its file, that each
mutation changes one line and compiles, that every test it names exists, and that
the list covers every method, attack and dial rule. A refactor that moves a listed
line fails here: update the entry in ``scripts/mutations.toml`` with the new line.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mc():
    spec = importlib.util.spec_from_file_location("mutation_check", REPO / "scripts" / "mutation_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["mutation_check"] = module  # dataclasses look the module up by name
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("mutation_check", None)


def test_every_listed_mutation_matches_the_code(mc):
    mutations = mc.load_mutations()
    problems = mc.validate(mutations, REPO)
    assert not problems, ("scripts/mutations.toml no longer matches the code; update these "
                          "entries:\n  " + "\n  ".join(problems))
    assert len(mutations) >= 25


def test_the_list_covers_every_method_attack_and_dial_rule(mc):
    mutations = mc.load_mutations()
    methods = {m.target for m in mutations if m.area == "method"}
    assert methods >= {"standard", "pgd_at", "trades", "tradeoff", "oat", "oats", "float",
                       "float_slim", "pgd_ats", "rdi", "slimmable"}
    files = {m.file for m in mutations}
    for name in ("fgsm", "pgd", "mifgsm", "cw", "wrm", "multi_exit", "early_exit", "autoattack"):
        assert f"robustdial/attacks/{name}.py" in files, name
    for f in ("robustdial/condition.py", "robustdial/layers/dual_bn.py", "robustdial/layers/film.py",
              "robustdial/layers/noisy.py", "robustdial/layers/slimmable.py",
              "robustdial/layers/switchable_bn.py", "robustdial/models/early_exit.py",
              "robustdial/compress/binary_relax.py", "robustdial/compress/projections.py",
              "robustdial/compress/sparse.py"):
        assert f in files, f
    targets = " ".join(m.target for m in mutations)
    for rule in ("RS-FGSM", "L∞", "L2", "λ range", "Eq. 6", "dual-BN", "FiLM", "width slicing",
                 "switchable BN", "entropy < t", "first head wins", "noise modes"):
        assert rule in targets, rule


def test_validation_rejects_rotten_or_multi_line_entries(mc, tmp_path):
    (tmp_path / "m.py").write_text("a = 1\nb = a + 1\nc = a + 1\n")
    M = mc.Mutation

    def problems(original, mutated):
        return mc.validate([M("x", "dial", "t", "m.py", original, mutated, "", ("tests/x.py",))],
                           tmp_path)

    assert any("occurs 2 times" in p for p in problems("a + 1", "a - 1"))
    assert any("occurs 0 times" in p for p in problems("d = 4", "d = 5"))
    assert any("one line" in p for p in problems("a = 1\nb = a + 1", "a = 2\nb = a - 1"))
    assert any("does not compile" in p for p in problems("b = a + 1", "b = a +"))
    assert any("does not exist" in p for p in problems("b = a + 1", "b = a - 1"))
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "x.py").write_text("")
    assert problems("b = a + 1", "b = a - 1") == []


def test_run_outcomes_are_classified(mc):
    R = mc.RunResult
    assert R(rc=0, seconds=1, passed=3).kind == "pass"
    assert R(rc=0, seconds=1, passed=0).kind == "error"  # nothing ran: not a pass
    assert R(rc=1, seconds=1).kind == "fail"
    assert R(rc=-1, seconds=1, timed_out=True).kind == "fail"
    assert R(rc=2, seconds=1).kind == "error"  # collection error: not a kill
    assert R(rc=5, seconds=1).kind == "error"  # no tests collected
    text = "FAILED tests/a.py::test_x[1] - assert 1 == 2\nERROR tests/b.py::test_y\n1 failed, 2 passed in 0.1s"
    r = mc.parse_output(1, 0.1, text)
    assert r.failed == ["tests/a.py::test_x[1]", "tests/b.py::test_y"] and r.passed == 2
