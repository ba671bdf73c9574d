"""The ``robustdial`` command: thin subcommands over the Python API.

Each subcommand lives in its own module with ``add_parser(subparsers)`` and
``run(args) -> int``. Logs (INFO) go to stderr, results to stdout.

Examples::

    robustdial list-models
    robustdial demo --out runs/demo
    robustdial train configs/rdi_mnist_smallcnn_pgdat.yaml --set train.epochs=3 --out runs/x
    robustdial eval runs/x --attack pgd-20 --attack fgsm --eps 0.3 --json eval.json

Bad input (a wrong flag value, a missing or corrupt file, a device this machine
lacks) ends with one line ``robustdial CMD: error: …`` and exit status 2;
``--debug`` adds the Python traceback.
"""
from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Sequence

__all__ = ["SUBCOMMANDS", "build_parser", "main"]

from . import checklist, cost, demo, eval_cmd, export, list_models, plot, report, train

# subcommand -> its module (read-only)
SUBCOMMANDS = {
    "train": train,
    "eval": eval_cmd,
    "list-models": list_models,
    "demo": demo,
    "plot": plot,
    "cost": cost,
    "export": export,
    "checklist": checklist,
    "report": report,
}

_log = logging.getLogger("robustdial")


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "bad input": one line, exit status 2, no traceback (``--debug`` shows it).

    Input checks at the boundary raise these (``UsageError`` is a ValueError;
    dataset problems are ValueError / FileNotFoundError / DownloadError); a
    failure of another type is a bug and keeps its traceback.
    """
    from robustdial.data import DownloadError
    from robustdial.engine.checkpoint import CheckpointError

    return (ValueError, FileNotFoundError, NotADirectoryError, TypeError, CheckpointError,
            DownloadError)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available subcommand."""
    parser = argparse.ArgumentParser(prog="robustdial", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    from robustdial import __version__

    parser.add_argument("--version", action="version", version=f"robustdial {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="DEBUG logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    parser.add_argument("--debug", action="store_true",
                        help="on an error, also print the Python traceback")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in SUBCOMMANDS.values():
        p = module.add_parser(sub)
        p.set_defaults(_run=module.run)
        # also accepted after the subcommand; SUPPRESS keeps the top-level value otherwise
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="on an error, also print the Python traceback")
    return parser


def _configure_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    _log.setLevel(level)
    if not any(getattr(h, "_robustdial_cli", False) for h in _log.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s",
                                               datefmt="%H:%M:%S"))
        handler._robustdial_cli = True  # type: ignore[attr-defined]
        _log.addHandler(handler)
    for h in _log.handlers:
        if getattr(h, "_robustdial_cli", False):
            h.stream = sys.stderr  # the current stderr (tests capture it)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.command is None:
        parser.print_help()
        return 2
    _configure_logging(args.verbose, args.quiet)
    run = getattr(args, "func", None) or args._run
    try:
        return int(run(args) or 0)
    except _user_errors() as exc:
        message = str(exc).strip() or type(exc).__name__
        if getattr(args, "debug", False):
            traceback.print_exc(file=sys.stderr)
        elif args.verbose:
            _log.debug("robustdial %s failed", args.command, exc_info=True)
        print(f"robustdial {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"robustdial {args.command}: interrupted", file=sys.stderr)
        return 130
