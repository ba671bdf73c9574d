"""One training process per run directory: an exclusive lock and the "is it empty?" rule.

A run directory (``fit(..., FitConfig(out_dir=DIR))``, ``robustdial train --out
DIR``) gets ``best/``, ``last/``, ``metrics.jsonl``, ``train_state.pt`` and
``recipe.yaml``. Two processes writing the same directory would interleave
their metrics and leave one run's ``best/`` next to the other's ``last/``, and
a new run started into an old directory would silently replace parts of it.
:class:`RunDir` prevents both:

* **Lock.** ``DIR/.lock`` is held with ``fcntl.flock(LOCK_EX | LOCK_NB)`` for
  the whole run and holds the holder's pid. A second process fails at once and
  names that pid. The kernel drops a ``flock`` when its process dies (even by
  ``kill -9``), so a stale ``.lock`` file never blocks a later run.
* **Non-empty directories** are refused unless the run resumes (``resume``) or
  replaces them (``overwrite``: the old run's files are deleted first, and only
  when every entry is a run artefact, so a mistyped ``--out`` never wipes
  unrelated files).
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from .checkpoint import CheckpointError

__all__ = ["LOCK_FILE", "RUN_ARTEFACTS", "RunDir", "RunDirError"]

_log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
# What a run writes (fit, the train CLI, the test helpers); ``overwrite`` deletes only these.
RUN_ARTEFACTS = frozenset({"best", "last", "metrics.jsonl", "train_state.pt", "train_state.pt.tmp",
                           "recipe.yaml", "recipe.yaml.tmp", "eval.json", "final.pt",
                           "final.safetensors"})


class RunDirError(CheckpointError):
    """The run directory is in use by another process, or holds a run that would be replaced."""


def _read_pid(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 64).decode(errors="replace").strip()
    except OSError:
        return "unknown"
    return text or "unknown"


class RunDir:
    """Exclusive use of a run directory (a context manager).

    Args:
        path: the run directory (created if missing).
        resume: the run continues the one in ``path``: existing files are expected.
        overwrite: delete the old run in ``path`` first (only run artefacts, see
            :data:`RUN_ARTEFACTS`; anything else makes it refuse).
        how_to_resume: how the caller's user resumes (named in the error message).
        how_to_overwrite: how the caller's user overwrites.

    Raises (on entry):
        RunDirError: another live process holds the lock (its pid is named), the
            directory holds files and neither ``resume`` nor ``overwrite`` is set,
            or ``overwrite`` would delete files that are not run artefacts.
        ValueError: both ``resume`` and ``overwrite``.

    Use::

        with RunDir("runs/x", overwrite=True) as run_dir:
            fit(model, method, data, FitConfig(out_dir="runs/x"), run_dir=run_dir)
    """

    def __init__(self, path: str | os.PathLike[str], *, resume: bool = False, overwrite: bool = False,
                 how_to_resume: str = "resume=True", how_to_overwrite: str = "overwrite=True") -> None:
        if resume and overwrite:
            raise ValueError("resume and overwrite exclude each other: resume continues the run "
                             "in the directory, overwrite deletes it")
        self.path = Path(path)
        self.resume, self.overwrite = bool(resume), bool(overwrite)
        self._hints = (how_to_resume, how_to_overwrite)
        self._fd: int | None = None

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_FILE

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def __enter__(self) -> RunDir:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    # -- the lock -------------------------------------------------------------------
    def acquire(self) -> None:
        """Take the lock, then apply the empty / resume / overwrite rule (see the class)."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path}: this RunDir is already held")
        self.path.mkdir(parents=True, exist_ok=True)
        self._fd = self._lock()
        try:
            self._check_contents()
        except BaseException:
            self.release()
            raise

    def _lock(self) -> int:
        for _ in range(10):  # retry if the holder removed the file between our open and flock
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                pid = _read_pid(fd)
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                raise RunDirError(
                    f"{self.path} is in use by another training process (pid {pid}, lock "
                    f"{self.lock_path}); wait for it to finish, stop it, or choose another output "
                    "directory") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.lock_path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)
                os.write(fd, f"{os.getpid()}\n".encode())
                return fd
            os.close(fd)  # we locked a lock file that its holder has just removed: try again
        raise RunDirError(f"{self.lock_path}: could not take the lock (it keeps being replaced)")

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            self.lock_path.unlink(missing_ok=True)  # unlink while still holding: no one else's file
        finally:
            os.close(fd)  # closing the descriptor drops the flock

    # -- contents -------------------------------------------------------------------
    def entries(self) -> list[str]:
        """Names in the directory other than the lock file, sorted."""
        return sorted(p.name for p in self.path.iterdir() if p.name != LOCK_FILE)

    def _check_contents(self) -> None:
        names = self.entries()
        if not names or self.resume:
            return
        how_resume, how_overwrite = self._hints
        if not self.overwrite:
            shown = ", ".join(names[:6]) + (", …" if len(names) > 6 else "")
            raise RunDirError(f"{self.path} already holds a run ({shown}); continue it with "
                              f"{how_resume}, replace it with {how_overwrite}, or choose another "
                              "output directory")
        foreign = [n for n in names if n not in RUN_ARTEFACTS]
        if foreign:
            raise RunDirError(f"{self.path}: {how_overwrite} deletes only a run's own files, and "
                              f"this directory also holds {foreign}; move them away or choose "
                              "another output directory")
        for name in names:
            p = self.path / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
        _log.warning("overwrite: deleted the previous run in %s (%s)", self.path, ", ".join(names))
