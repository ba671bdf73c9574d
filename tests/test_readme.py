"""Every command in the README is a test: the set-up, the ten-line example, the CLI walk-through.

The README's blocks are read from the file itself, so an edit to the README
changes what is tested. The CLI walk-through runs in a temporary directory on
the embedded data with the sample counts shrunk (``SHRINK``); the ten-line
example runs verbatim.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def _blocks(lang: str) -> list[tuple[str, str]]:
    """(heading of the section, code) of every fenced block in ``lang``."""
    out, heading = [], ""
    for part in re.split(r"(^```\w*\n.*?^```\n)", README, flags=re.S | re.M):
        m = re.match(rf"^```{lang}\n(.*?)^```\n", part, flags=re.S | re.M)
        if m:
            out.append((heading, m.group(1)))
        else:
            heads = re.findall(r"^#+ (.+)$", part, flags=re.M)
            if heads:
                heading = heads[-1]
    return out


def _section(name: str, lang: str) -> str:
    found = [code for head, code in _blocks(lang) if head.startswith(name)]
    assert found, f"README has no {lang} block under a heading starting with {name!r}"
    return found[0]


def test_setup_is_two_commands_and_ci_runs_the_test_command():
    setup = [ln.split("#")[0].strip() for ln in _section("Set-up", "bash").splitlines()]
    setup = [ln for ln in setup if ln]
    assert setup == ["bash scripts/demo.sh", "bash scripts/test.sh"]
    assert "scripts/test.sh" in (REPO / ".ci" / "run").read_text()
    env = (REPO / "scripts" / "env.sh").read_text()
    assert 'torch==2.13.0' in env  # pinned: an unpinned torch pulls a multi-GB CUDA build


def test_readme_has_no_links_into_shared():
    assert "../shared" not in README, "link docs in docs/, not the development-only ../shared"


# shrink the walk-through's sample counts and training so it runs in a minute (same commands otherwise)
SHRINK = [
    (r"--n \d+", "--n 8"),
    (r"--max-samples \d+", "--max-samples 16"),
]
TRAIN_EXTRA = ["--set", "train.iterations=3", "--set", "data.max_train_samples=256",
               "--set", "eval.max_samples=16"]
EVAL_EXTRA = {"eval": ["--max-samples", "16"], "checklist": ["--n", "8", "--steps", "2"],
              "report": ["--no-checks", "--no-latency"]}


def _walkthrough() -> list[str]:
    lines = []
    for raw in _section("Command line", "bash").splitlines():
        line = raw.split(" #")[0].strip()
        if line.startswith(("robustdial ", "python ")):
            lines.append(line)
    return lines


def test_the_walkthrough_uses_only_the_embedded_data_or_a_data_dir():
    for line in _walkthrough():
        if " train " in f" {line} " and "--data-dir" not in line:
            cfg = (REPO / shlex.split(line)[2]).read_text()
            assert "fashion-mnist-mini" in cfg or "digits" in cfg, line


@pytest.mark.slow
def test_every_cli_command_of_the_readme_runs(tmp_path, shared_data_root):
    (tmp_path / "configs").symlink_to(REPO / "configs")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    lines = _walkthrough()
    assert any(line.startswith("robustdial report") for line in lines)
    for line in lines:
        for pat, rep in SHRINK:
            line = re.sub(pat, rep, line)
        line = line.replace("DATA", str(shared_data_root))
        argv = shlex.split(line)
        if argv[0] == "robustdial":
            argv = [sys.executable, "-m", "robustdial", *argv[1:]]
            cmd = argv[3]
            if cmd == "train":
                argv += TRAIN_EXTRA
            argv += EVAL_EXTRA.get(cmd, [])
        else:  # python robustdial/export/loader.py …: the standalone loader from the checkout
            argv = [sys.executable, str(REPO / argv[1]), *argv[2:]]
        res = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert res.returncode == 0, f"{line}\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
        assert "Traceback" not in res.stderr, line


@pytest.mark.slow
def test_the_ten_line_example_runs_verbatim_and_shows_the_dial(tmp_path):
    code = _section("Ten lines of Python", "python")
    assert len([ln for ln in code.splitlines() if ln.strip()]) <= 10
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert len(re.findall(r"^epoch \d+/\d+", res.stderr, flags=re.M)) >= 3  # one line per epoch
    rows = {}
    for ln in res.stdout.splitlines():
        m = re.match(r"^(lam=[01])\s+(\S+)\s+([\d.]+)\s+([\d.]+)\s+\d+$", ln.strip())
        if m and not m.group(2).startswith("any"):
            rows[m.group(1)] = (float(m.group(3)), float(m.group(4)))
    assert set(rows) == {"lam=0", "lam=1"}, res.stdout
    (clean0, rob0), (clean1, rob1) = rows["lam=0"], rows["lam=1"]
    assert rob1 > rob0 + 10, rows  # the dial moves robustness …
    assert clean0 > clean1, rows  # … at a price in clean accuracy
