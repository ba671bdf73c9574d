"""``robustdial list-models``: the names :func:`robustdial.create_model` accepts."""
from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("list-models", help="list registered model names",
                              description="Print every name accepted by create_model, one per line.")
    return p


def run(args: argparse.Namespace) -> int:
    from robustdial.models import list_models

    for name in list_models():
        print(name)
    return 0
