#!/usr/bin/env python3
"""Mutation check: every listed one-line bug must make some fast test fail (issue #16, item 6).

Reads the fixed list in ``scripts/mutations.toml``. For each mutation it

1. checks that the ``original`` snippet occurs exactly once in ``file`` and that
   the replacement changes one line and still compiles (else: an error, so the
   list cannot silently rot when the code changes);
2. applies it to a scratch copy of the repository (the tracked and untracked,
   not ignored files of the working tree, or with ``--ref HEAD`` that commit's
   tree, copied to a temporary directory; the checkout itself is never
   modified), with ``PYTHONPATH`` pointing at the copy so the copy's
   ``robustdial`` is the one imported (checked once per copy by a probe test,
   which also checks that a patched file is what the runs import);
3. runs the mutation's test selection with ``-m "not slow"`` ``--repeat`` times
   (default 5): **killed** if it fails every time, **flaky** if only sometimes,
   **survived** if never.

Before that, every distinct selection runs once on the unmutated copy; a
selection that fails (or selects nothing) unmutated is an **error**, so a broken
test is never counted as a kill. Runs go at most ``--jobs`` (default 2) wide,
each with ``OMP_NUM_THREADS=1``.

Prints a table (id, file, status, failing tests, seconds) and writes it with
provenance to ``benchmarks/results/mutation_check.{json,txt}``. Exits 1 if any
mutation survived, was flaky or errored.

Usage::

    python scripts/mutation_check.py --repeat 5 --ref HEAD # the acceptance run (committed tree)
    python scripts/mutation_check.py --repeat 5            # the working tree as it is now
    python scripts/mutation_check.py --repeat 1 --only pgd-linf-no-projection
    python scripts/mutation_check.py --list                # the mutations and their coverage

Standard library only (it runs pytest from the project's virtualenv).
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as dt
import difflib
import json
import os
import platform
import queue
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTATIONS_FILE = ROOT / "scripts" / "mutations.toml"
RESULTS_DIR = ROOT / "benchmarks" / "results"
AREAS = ("method", "attack", "dial", "compress")
REQUIRED = ("id", "area", "target", "file", "original", "mutated", "breaks", "tests")
PROBE_NAME = "tests/test_zz_mutation_scratch_probe.py"


# ------------------------------------------------------------------ the list ----

@dataclass(frozen=True)
class Mutation:
    id: str
    area: str
    target: str
    file: str
    original: str
    mutated: str
    breaks: str
    tests: tuple[str, ...]

    def apply(self, text: str) -> str:
        return text.replace(self.original, self.mutated, 1)


def load_mutations(path: Path = MUTATIONS_FILE) -> list[Mutation]:
    """Parse the list; raises ValueError naming every malformed entry."""
    with open(path, "rb") as f:
        data = tomllib.load(f)
    entries = data.get("mutation", [])
    out, problems, seen = [], [], set()
    for i, e in enumerate(entries):
        missing = [k for k in REQUIRED if k not in e]
        extra = sorted(set(e) - set(REQUIRED))
        name = e.get("id", f"#{i}")
        if missing or extra:
            problems.append(f"{name}: missing {missing} / unknown keys {extra}")
            continue
        if e["id"] in seen:
            problems.append(f"{name}: duplicate id")
        seen.add(e["id"])
        if e["area"] not in AREAS:
            problems.append(f"{name}: area must be one of {AREAS}")
        if not isinstance(e["tests"], list) or not e["tests"]:
            problems.append(f"{name}: tests must be a non-empty list of pytest arguments")
            continue
        out.append(Mutation(e["id"], e["area"], e["target"], e["file"], e["original"],
                            e["mutated"], e["breaks"], tuple(e["tests"])))
    if problems:
        raise ValueError("malformed mutation list:\n  " + "\n  ".join(problems))
    return out


def validate(mutations: list[Mutation], root: Path) -> list[str]:
    """Problems that make a mutation unusable: snippet count ≠ 1, not one line, no compile."""
    problems = []
    for m in mutations:
        path = root / m.file
        if not path.is_file():
            problems.append(f"{m.id}: {m.file} does not exist")
            continue
        text = path.read_text(encoding="utf-8")
        n = text.count(m.original)
        if n != 1:
            problems.append(f"{m.id}: the original snippet occurs {n} times in {m.file} "
                            "(must be exactly once; update the list)")
            continue
        if m.original == m.mutated:
            problems.append(f"{m.id}: mutated equals original")
            continue
        new = m.apply(text)
        old_lines, new_lines = text.splitlines(), new.splitlines()
        changed_old = changed_new = 0
        for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old_lines, new_lines,
                                                           autojunk=False).get_opcodes():
            if tag != "equal":
                changed_old += i2 - i1
                changed_new += j2 - j1
        if changed_old > 1 or changed_new > 1:
            problems.append(f"{m.id}: changes {changed_old} line(s) into {changed_new}; "
                            "a mutation must change one line")
        if m.file.endswith(".py"):
            try:
                compile(new, str(path), "exec")
            except SyntaxError as exc:
                problems.append(f"{m.id}: mutated {m.file} does not compile: {exc}")
        for t in m.tests:
            sel = t.split("::", 1)[0]
            if sel.startswith("tests/") and not (root / sel).exists():
                problems.append(f"{m.id}: test path {sel} does not exist")
    return problems


# ----------------------------------------------------------- scratch copies ----

def repo_files(root: Path) -> list[str]:
    """Tracked and untracked-but-not-ignored files of the working tree (what the tests see)."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=root, check=True, capture_output=True).stdout
    names = sorted({n for n in out.decode().split("\0") if n})
    return [n for n in names if (root / n).is_file() and not (root / n).is_symlink()]


def make_copy(root: Path, files: list[str], dest: Path, ref: str | None = None) -> None:
    """Copy ``files`` of the working tree into ``dest``, or with ``ref`` that commit's tree."""
    if ref is not None:
        dest.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", "--format=tar", ref], cwd=root, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
        return
    for name in files:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, target)


def run_env(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(copy),
        PYTHONDONTWRITEBYTECODE="1",  # no stale .pyc when a file is patched and restored
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        MUTATION_SCRATCH_ROOT=str(copy),
    )
    shared = ROOT.parent / "shared"
    if "ROBUSTDIAL_SHARED" not in env and shared.is_dir():
        env["ROBUSTDIAL_SHARED"] = str(shared)  # the copy does not sit beside shared/
    return env


# -------------------------------------------------------------- fork server ----

# Importing torch takes 2-10 s on a busy 2-core machine, far longer than most test
# selections. A fork server per scratch copy imports the heavy third-party modules
# once (never robustdial) and forks one child per pytest run: the child imports
# the (mutated) robustdial from disk afresh, exactly as a new interpreter would.
# ``--no-fork`` runs plain ``python -m pytest`` subprocesses instead.
FORK_SERVER = r"""
import json, os, signal, sys, time
for name in ("torch", "numpy", "pytest", "hypothesis", "sklearn.datasets", "scipy.stats"):
    try:
        __import__(name)
    except Exception:
        pass
assert not any(k == "robustdial" or k.startswith("robustdial.") for k in sys.modules), \
    "the fork server must not import robustdial"
import pytest
sys.stdout.write("ready\n"); sys.stdout.flush()
for line in sys.stdin:
    req = json.loads(line)
    pid = os.fork()
    if pid == 0:  # child: a fresh pytest run in this process image
        try:
            os.setsid()
            fd = os.open(req["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0); os.dup2(fd, 1); os.dup2(fd, 2)
            sys.argv = [sys.executable, "-m", "pytest", *req["args"]]
            rc = int(pytest.main(req["args"]))
        except BaseException as exc:  # noqa: BLE001 - report, never return to the loop
            try:
                sys.stderr.write(f"fork-server child failed: {exc!r}\n")
            except Exception:
                pass
            rc = 3
        finally:
            try:
                sys.stdout.flush(); sys.stderr.flush()
            except Exception:
                pass
        os._exit(rc)
    deadline = time.monotonic() + float(req["timeout"])
    timed_out = False
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            timed_out = True
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            status = -1
            break
        time.sleep(0.05)
    rc = os.waitstatus_to_exitcode(status) if not timed_out else -1
    sys.stdout.write(json.dumps({"rc": rc, "timed_out": timed_out}) + "\n"); sys.stdout.flush()
"""


class ForkServer:
    """One long-lived interpreter per scratch copy that forks a child per pytest run."""

    def __init__(self, python: str, copy: Path) -> None:
        self.copy = copy
        self.proc = subprocess.Popen([python, "-c", FORK_SERVER], cwd=copy, env=run_env(copy),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ready = self.proc.stdout.readline().strip()
        if ready != "ready":
            raise RuntimeError(f"fork server did not start in {copy}: {ready!r}")

    def run(self, args: list[str], out: Path, timeout: float) -> tuple[int, bool]:
        self.proc.stdin.write(json.dumps({"args": args, "out": str(out), "timeout": timeout}) + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        if not reply:
            raise RuntimeError("fork server died")
        r = json.loads(reply)
        return r["rc"], r["timed_out"]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ------------------------------------------------------------------ pytest ----

@dataclass
class RunResult:
    rc: int
    seconds: float
    passed: int = 0
    failed: list[str] = field(default_factory=list)
    timed_out: bool = False
    tail: str = ""

    @property
    def kind(self) -> str:
        """``pass`` | ``fail`` | ``error`` (collection/usage error, nothing selected)."""
        if self.timed_out:
            return "fail"
        if self.rc == 0:
            return "pass" if self.passed > 0 else "error"
        if self.rc == 1:
            return "fail"
        return "error"


_SUMMARY = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected)")


def pytest_cmd(python: str, tests: tuple[str, ...]) -> list[str]:
    return [python, "-m", "pytest", "-q", "-m", "not slow", "-p", "no:cacheprovider",
            "--tb=no", "-rfE", "-o", "console_output_style=classic", *tests]


def parse_output(rc: int, secs: float, text: str, timed_out: bool = False) -> RunResult:
    res = RunResult(rc=rc, seconds=secs, timed_out=timed_out, tail=text[-3000:])
    for line in text.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            res.failed.append(line.split(" ", 1)[1].split(" - ", 1)[0].strip())
    if timed_out:
        res.failed.append("<timeout>")
    last = [ln for ln in text.splitlines() if _SUMMARY.search(ln)]
    if last:
        for n, what in _SUMMARY.findall(last[-1]):
            if what == "passed":
                res.passed = int(n)
    return res


def run_pytest(python: str, copy: Path, tests: tuple[str, ...], timeout: float,
               server: ForkServer | None = None) -> RunResult:
    shutil.rmtree(copy / ".hypothesis", ignore_errors=True)  # every run draws afresh
    cmd = pytest_cmd(python, tests)
    t0 = time.monotonic()
    if server is not None:
        out = copy.parent / f"{copy.name}.pytest-output.txt"
        rc, timed_out = server.run(cmd[3:], out, timeout)
        text = out.read_text(errors="replace") if out.exists() else ""
        return parse_output(rc, time.monotonic() - t0, text, timed_out)
    try:
        proc = subprocess.run(cmd, cwd=copy, env=run_env(copy), capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout or b""
        out = out.decode(errors="replace") if isinstance(out, bytes) else out
        return parse_output(-1, time.monotonic() - t0, out, timed_out=True)
    return parse_output(proc.returncode, time.monotonic() - t0, proc.stdout + proc.stderr)


# --------------------------------------------------------------- the check ----

@dataclass
class Outcome:
    mutation: Mutation
    status: str = "pending"  # killed | survived | flaky | error
    runs: list[RunResult] = field(default_factory=list)
    note: str = ""

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.runs)

    @property
    def failing(self) -> list[str]:
        names: list[str] = []
        for r in self.runs:
            for n in r.failed:
                if n not in names:
                    names.append(n)
        return names


@dataclass
class Slot:
    """A scratch copy and (unless ``--no-fork``) its fork server."""

    copy: Path
    server: ForkServer | None = None


class Workers:
    """A pool of scratch copies: each job borrows one copy for its whole duration."""

    def __init__(self, slots: list[Slot]) -> None:
        self.free: queue.Queue[Slot] = queue.Queue()
        for c in slots:
            self.free.put(c)

    def borrow(self) -> Slot:
        return self.free.get()

    def give_back(self, slot: Slot) -> None:
        self.free.put(slot)


def check_mutation(m: Mutation, workers: Workers, python: str, repeat: int, timeout: float,
                   log) -> Outcome:
    out = Outcome(m)
    slot = workers.borrow()
    path = slot.copy / m.file
    pristine = path.read_text(encoding="utf-8")
    try:
        if pristine.count(m.original) != 1:
            out.status, out.note = "error", "snippet not found exactly once in the scratch copy"
            return out
        path.write_text(m.apply(pristine), encoding="utf-8")
        kinds = []
        for _ in range(repeat):
            r = run_pytest(python, slot.copy, m.tests, timeout, slot.server)
            out.runs.append(r)
            kinds.append(r.kind)
            if "error" in kinds:
                break
            if "pass" in kinds and "fail" in kinds:
                break  # flaky either way: no need for the remaining runs
        if "error" in kinds:
            out.status = "error"
            last = out.runs[-1].tail.strip().splitlines()
            out.note = f"pytest error under the mutation (rc {out.runs[-1].rc}): {last[-1] if last else ''}"
        elif all(k == "fail" for k in kinds):
            out.status = "killed"
        elif all(k == "pass" for k in kinds):
            out.status = "survived"
        else:
            out.status = "flaky"
        if any(r.timed_out for r in out.runs):
            out.note = (out.note + "; " if out.note else "") + "timed out (counted as failing)"
    finally:
        path.write_text(pristine, encoding="utf-8")
        workers.give_back(slot)
    killed = sum(r.kind == "fail" for r in out.runs)
    log(f"  {out.status:9s} {m.id:36s} {killed}/{len(out.runs)} failing runs  "
        f"{out.seconds:6.1f}s  {', '.join(out.failing[:2])}")
    return out


def check_baseline(tests: tuple[str, ...], workers: Workers, python: str, timeout: float,
                   log) -> RunResult:
    slot = workers.borrow()
    try:
        r = run_pytest(python, slot.copy, tests, timeout, slot.server)
    finally:
        workers.give_back(slot)
    log(f"  baseline  {r.kind:5s} {r.passed:3d} passed {r.seconds:6.1f}s  {' '.join(tests)[:90]}")
    return r


PROBE_SOURCE = '''\
import os
from pathlib import Path

import robustdial


def test_robustdial_is_imported_from_the_scratch_copy():
    root = Path(os.environ["MUTATION_SCRATCH_ROOT"]).resolve()
    where = Path(robustdial.__file__).resolve()
    print("robustdial imported from", where)
    assert root in where.parents, f"robustdial imported from {where}, not from {root}"


def test_a_patched_file_is_what_gets_imported():
    expected = Path(os.environ["MUTATION_SCRATCH_ROOT"], "probe-expect").read_text().strip()
    assert str(getattr(robustdial, "_MUTATION_PROBE", "absent")) == expected
'''


def probe(slot: Slot, python: str) -> str:
    """Check that the runs import the copy's robustdial, and a patched version of it.

    ``python -c`` prints where robustdial comes from; then a probe test runs (through
    the fork server when there is one) twice: unpatched, and with a sentinel line
    appended to the copy's ``robustdial/__init__.py`` — it must see the sentinel
    exactly when it is there. Returns the imported path.
    """
    copy = slot.copy
    where = subprocess.run([python, "-c", "import robustdial; print(robustdial.__file__)"],
                           cwd=copy, env=run_env(copy), capture_output=True, text=True, check=True)
    path = where.stdout.strip()
    if not Path(path).resolve().is_relative_to(copy.resolve()):
        raise RuntimeError(f"python -c imports robustdial from {path}, not from the copy {copy}")
    init = copy / "robustdial" / "__init__.py"
    pristine = init.read_text(encoding="utf-8")
    probe_file, expect = copy / PROBE_NAME, copy / "probe-expect"
    probe_file.write_text(PROBE_SOURCE, encoding="utf-8")
    try:
        for patched in (False, True, False):
            if patched:
                init.write_text(pristine + "\n_MUTATION_PROBE = 'patched'\n", encoding="utf-8")
            else:
                init.write_text(pristine, encoding="utf-8")
            expect.write_text("patched" if patched else "absent")
            r = run_pytest(python, copy, (PROBE_NAME,), 600, slot.server)
            if r.kind != "pass" or r.passed != 2:
                raise RuntimeError(f"probe failed in {copy} (patched={patched}): the runs do not "
                                   f"import the scratch copy's current robustdial\n{r.tail}")
    finally:
        init.write_text(pristine, encoding="utf-8")
        probe_file.unlink()
        expect.unlink(missing_ok=True)
    return path


# ------------------------------------------------------------------ output ----

def git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return ""


def provenance(python: str, argv: list[str], repeat: int, jobs: int) -> dict:
    torch_version = subprocess.run([python, "-c", "import torch; print(torch.__version__)"],
                                   capture_output=True, text=True).stdout.strip()
    dirty = [ln[3:] for ln in git("status", "--porcelain").splitlines() if len(ln) > 3]
    return {
        "command": " ".join(shlex.quote(a) for a in argv),
        "git_commit": git("rev-parse", "HEAD").strip(),
        "git_dirty_files": dirty,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch_version,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "repeat": repeat,
        "jobs": jobs,
        "pytest_args": pytest_cmd("python", ("<tests>",))[1:],
        "env": {"OMP_NUM_THREADS": "1", "PYTHONPATH": "<scratch copy>",
                "PYTHONDONTWRITEBYTECODE": "1"},
    }


def table(outcomes: list[Outcome]) -> str:
    rows = [("id", "file", "status", "failing runs", "seconds", "failing tests")]
    for o in outcomes:
        fails = sum(r.kind == "fail" for r in o.runs)
        names = o.failing
        shown = ", ".join(n.replace("tests/", "", 1) for n in names[:2])
        if len(names) > 2:
            shown += f" (+{len(names) - 2})"
        if o.note:
            shown = (shown + " " if shown else "") + f"[{o.note}]"
        rows.append((o.mutation.id, o.mutation.file.replace("robustdial/", "", 1), o.status,
                     f"{fails}/{len(o.runs)}", f"{o.seconds:.1f}", shown))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for k, r in enumerate(rows):
        lines.append("  ".join(r[i].ljust(widths[i]) for i in range(5)) + "  " + r[5])
        if k == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 13)
    return "\n".join(lines)


def coverage(mutations: list[Mutation]) -> str:
    by: dict[tuple[str, str], list[str]] = {}
    for m in mutations:
        by.setdefault((m.area, m.target), []).append(m.id)
    lines = []
    for (area, target), ids in sorted(by.items(), key=lambda kv: (AREAS.index(kv[0][0]), kv[0][1])):
        lines.append(f"  {area:8s} {target:40s} {len(ids)}: {', '.join(ids)}")
    return "\n".join(lines)


def summary(outcomes: list[Outcome]) -> dict[str, int]:
    s = {k: 0 for k in ("killed", "survived", "flaky", "error")}
    for o in outcomes:
        s[o.status] = s.get(o.status, 0) + 1
    s["total"] = len(outcomes)
    return s


# -------------------------------------------------------------------- main ----

def main(argv: list[str] | None = None) -> int:
    argv = sys.argv if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=5, help="test runs per mutation (default 5)")
    p.add_argument("--jobs", type=int, default=2, help="parallel runs (default 2; the machine has 2 cores)")
    p.add_argument("--only", nargs="+", metavar="ID", help="check only these mutation ids")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="seconds per pytest run; a mutated run that times out counts as failing")
    p.add_argument("--list", action="store_true", help="validate and list the mutations, run nothing")
    p.add_argument("--no-write", action="store_true",
                   help="do not write benchmarks/results/mutation_check.{json,txt}")
    p.add_argument("--python", default=None,
                   help="interpreter that runs pytest (default: .venv/bin/python, else this one)")
    p.add_argument("--keep-scratch", action="store_true", help="keep the scratch copies")
    p.add_argument("--ref", default=None, metavar="COMMIT",
                   help="check this commit's tree (git archive), e.g. HEAD, instead of the working "
                        "tree (tracked and untracked, not ignored files as they are now)")
    p.add_argument("--no-fork", action="store_true",
                   help="run every pytest in a fresh interpreter (slower: torch is imported each time)")
    args = p.parse_args(argv[1:])
    if args.repeat < 1 or args.jobs < 1:
        p.error("--repeat and --jobs must be ≥ 1")

    python = args.python or (str(ROOT / ".venv" / "bin" / "python")
                             if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable)
    all_mutations = load_mutations()
    source_root = ROOT
    ref_dir = None
    if args.ref is not None:  # validate against the tree that will be copied
        commit = git("rev-parse", "--verify", f"{args.ref}^{{commit}}").strip()
        if not commit:
            p.error(f"--ref {args.ref!r} is not a commit")
        ref_dir = Path(tempfile.mkdtemp(prefix="robustdial-mutation-ref-"))
        make_copy(ROOT, [], ref_dir / "tree", ref=commit)
        source_root = ref_dir / "tree"
    problems = validate(all_mutations, source_root)
    if ref_dir is not None:
        shutil.rmtree(ref_dir, ignore_errors=True)
    if problems:
        print("mutation list does not match the code:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    mutations = all_mutations
    if args.only:
        unknown = sorted(set(args.only) - {m.id for m in all_mutations})
        if unknown:
            print(f"unknown mutation ids: {unknown}", file=sys.stderr)
            return 2
        mutations = [m for m in all_mutations if m.id in set(args.only)]
    if args.list:
        print(f"{len(all_mutations)} mutations, all valid; coverage (area, target, count):")
        print(coverage(all_mutations))
        return 0

    lock = threading.Lock()

    def log(msg: str) -> None:
        with lock:
            print(msg, flush=True)

    t_start = time.monotonic()
    prov = provenance(python, ["python", "scripts/mutation_check.py", *argv[1:]], args.repeat, args.jobs)
    files = repo_files(ROOT) if args.ref is None else []
    if args.ref is not None:
        prov["source"] = f"git archive {args.ref} ({commit})"
        prov["git_commit"] = commit
        prov.pop("git_dirty_files")
    else:
        prov["source"] = "working tree (tracked and untracked, not ignored files)"
    scratch = Path(tempfile.mkdtemp(prefix="robustdial-mutation-"))
    slots: list[Slot] = []
    try:
        for i in range(args.jobs):
            c = scratch / f"copy{i}"
            make_copy(ROOT, files, c, ref=None if args.ref is None else commit)
            slots.append(Slot(c, None if args.no_fork else ForkServer(python, c)))
        imported = [probe(sl, python) for sl in slots]
        log(f"{len(mutations)} mutations × {args.repeat} runs, {args.jobs} wide"
            f"{'' if args.no_fork else ' (fork servers)'}; {prov['source']} copied to {scratch}; "
            f"robustdial imported from {imported[0]}")
        prov["robustdial_imported_from"] = imported
        prov["fork_server"] = not args.no_fork
        workers = Workers(slots)
        selections = list(dict.fromkeys(m.tests for m in mutations))
        with cf.ThreadPoolExecutor(max_workers=args.jobs) as pool:
            log(f"baselines: {len(selections)} distinct selections, unmutated")
            base = dict(zip(selections, pool.map(
                lambda s: check_baseline(s, workers, python, args.timeout, log), selections)))
            bad = {s for s, r in base.items() if r.kind != "pass"}
            todo = [m for m in mutations if m.tests not in bad]
            log("mutations:")
            done = dict(zip([m.id for m in todo], pool.map(
                lambda m: check_mutation(m, workers, python, args.repeat, args.timeout, log), todo)))
        outcomes = []
        for m in mutations:
            if m.tests in bad:
                r = base[m.tests]
                note = (f"the selection {'fails' if r.kind == 'fail' else 'errors'} unmutated"
                        + (f": {', '.join(r.failed[:3])}" if r.failed else
                           f" (rc {r.rc}, {r.passed} passed)"))
                outcomes.append(Outcome(m, "error", [], note))
            else:
                outcomes.append(done[m.id])
    finally:
        for sl in slots:
            if sl.server is not None:
                sl.server.close()
        if not args.keep_scratch:
            shutil.rmtree(scratch, ignore_errors=True)

    wall = time.monotonic() - t_start
    s = summary(outcomes)
    head = (f"{s['total']} mutations, {args.repeat} runs each: {s['killed']} killed, "
            f"{s['survived']} survived, {s['flaky']} flaky, {s['error']} errors "
            f"(wall time {wall / 60:.1f} min)")
    tab = table(outcomes)
    print()
    print(tab)
    print()
    print(head)

    if not args.no_write:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        record = {
            "provenance": {**prov, "wall_seconds": round(wall, 1)},
            "summary": s,
            "baselines": [{"tests": list(sel), "status": r.kind, "passed": r.passed,
                           "seconds": round(r.seconds, 1)} for sel, r in base.items()],
            "mutations": [{
                "id": o.mutation.id, "area": o.mutation.area, "target": o.mutation.target,
                "file": o.mutation.file, "original": o.mutation.original,
                "mutated": o.mutation.mutated, "breaks": o.mutation.breaks,
                "tests": list(o.mutation.tests), "status": o.status,
                "failing_runs": sum(r.kind == "fail" for r in o.runs), "runs": len(o.runs),
                "failing_tests": o.failing, "seconds": round(o.seconds, 1), "note": o.note,
            } for o in outcomes],
        }
        (RESULTS_DIR / "mutation_check.json").write_text(json.dumps(record, indent=2,
                                                                    ensure_ascii=False) + "\n")
        lines = [
            "Mutation check (scripts/mutation_check.py, issue #16 item 6)",
            f"command:  {prov['command']}",
            f"commit:   {prov['git_commit']}" + (f" + uncommitted changes in {len(prov['git_dirty_files'])} file(s)"
                                                 if prov.get("git_dirty_files") else ""),
            f"source:   {prov['source']}",
            f"date:     {prov['date']}",
            f"torch:    {prov['torch']}, python {prov['python']}, {prov['platform']}, "
            f"{prov['cpu_count']} CPUs, {args.jobs} runs in parallel, OMP_NUM_THREADS=1",
            f"tests:    pytest -m 'not slow' <selection>, {args.repeat} runs per mutation, "
            "each selection also run once unmutated",
            "",
            head,
            "",
            tab,
            "",
            "Coverage (area, target, mutations):",
            coverage([o.mutation for o in outcomes]),
            "",
            "What each mutation breaks (original -> mutated; the tests it runs):",
        ]
        for o in outcomes:
            m = o.mutation
            lines += [f"  {m.id} [{m.area}: {m.target}] {m.file}",
                      f"      {m.breaks}",
                      f"      - {' '.join(m.original.split())}",
                      f"      + {' '.join(m.mutated.split())}",
                      f"      tests: {' '.join(m.tests)}"]
        lines.append("")
        (RESULTS_DIR / "mutation_check.txt").write_text("\n".join(lines))
        print(f"written: {RESULTS_DIR.relative_to(ROOT)}/mutation_check.json, .txt")
    ok = s["killed"] == s["total"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
