"""Evaluation results: one row per (condition, attack), as table, CSV or JSON.

Accuracies are percentages (0–100) of the ``n`` evaluated samples; the attack
column is the attack's name as given to :func:`~robustdial.evaluation.evaluate`
(by default its ``repr``, which lists its hyper-parameters, ε on the [0, 1]
scale).
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["EvalResult", "EvalRow", "condition_label"]


def condition_label(condition: dict[str, Any]) -> str:
    """``{"lam": 0.2, "width": 0.5}`` -> ``"lam=0.2 width=0.5"``; ``{}`` -> ``"default"``."""
    if not condition:
        return "default"
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in condition.items())


@dataclasses.dataclass(frozen=True)
class EvalRow:
    """Accuracy of one model at one condition under one attack.

    Attributes:
        condition: the dials set during the evaluation (``{}`` = model as is).
        attack: attack name (its repr by default); ``"none"`` when no attack ran.
        clean_acc: clean accuracy in % at this condition.
        robust_acc: accuracy in % on the attack's adversarial examples (equal
            to ``clean_acc`` when ``attack == "none"``).
        n: number of evaluated samples.
    """

    condition: dict[str, Any]
    attack: str
    clean_acc: float
    robust_acc: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {"condition": dict(self.condition), "attack": self.attack,
                "clean_acc": self.clean_acc, "robust_acc": self.robust_acc, "n": self.n}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalRow:
        return cls(condition=dict(d["condition"]), attack=str(d["attack"]),
                   clean_acc=float(d["clean_acc"]), robust_acc=float(d["robust_acc"]),
                   n=int(d["n"]))


@dataclasses.dataclass
class EvalResult:
    """Rows of an evaluation plus metadata (settings, provenance).

    Example::

        pgd = PGD(eps=8 / 255, alpha=2.5 * (8 / 255) / 50, steps=50)
        res = evaluate(model, data, {"pgd-50": pgd}, [{"lam": 0.0}, {"lam": 1.0}])
        print(res.to_table())
        res.to_json("eval.json")
    """

    rows: list[EvalRow]
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __iter__(self) -> Iterator[EvalRow]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def select(self, *, attack: str | None = None, **condition: Any) -> list[EvalRow]:
        """Rows for one attack and/or whose condition contains the given dials."""
        return [r for r in self.rows
                if (attack is None or r.attack == attack)
                and all(r.condition.get(k) == v for k, v in condition.items())]

    # -- text ---------------------------------------------------------------------
    def to_table(self) -> str:
        """Aligned plain-text table (accuracies in %)."""
        header = ("condition", "attack", "clean %", "robust %", "n")
        body = [(condition_label(r.condition), r.attack, f"{r.clean_acc:.2f}",
                 f"{r.robust_acc:.2f}", str(r.n)) for r in self.rows]
        widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
        right = (False, False, True, True, True)

        def line(cells: tuple[str, ...]) -> str:
            return "  ".join(c.rjust(w) if r else c.ljust(w)
                             for c, w, r in zip(cells, widths, right)).rstrip()

        sep = "  ".join("-" * w for w in widths)
        return "\n".join([line(header), sep, *(line(b) for b in body)])

    def __str__(self) -> str:
        return self.to_table()

    def to_csv(self, path: str | Path | None = None) -> str:
        """CSV with one column per dial (``cond_<dial>``); written to ``path`` if given."""
        dials: list[str] = []
        for r in self.rows:
            dials += [k for k in r.condition if k not in dials]
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([*(f"cond_{k}" for k in dials), "attack", "clean_acc", "robust_acc", "n"])
        for r in self.rows:
            w.writerow([*(r.condition.get(k, "") for k in dials), r.attack,
                        f"{r.clean_acc:.4f}", f"{r.robust_acc:.4f}", r.n])
        text = buf.getvalue()
        if path is not None:
            Path(path).write_text(text)
        return text

    # -- JSON ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"rows": [r.to_dict() for r in self.rows], "meta": self.meta}

    def to_json(self, path: str | Path | None = None) -> str:
        """JSON text (``{"rows": [...], "meta": {...}}``); written to ``path`` if given."""
        text = json.dumps(self.to_dict(), indent=2, default=str)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalResult:
        if "rows" not in d:
            raise ValueError("not an EvalResult: the JSON object has no 'rows' key")
        return cls(rows=[EvalRow.from_dict(r) for r in d["rows"]], meta=dict(d.get("meta", {})))

    @classmethod
    def from_json(cls, source: str | Path) -> EvalResult:
        """Load from a JSON file path or a JSON string."""
        text = str(source)
        if not text.lstrip().startswith("{"):
            text = Path(source).read_text()
        return cls.from_dict(json.loads(text))
