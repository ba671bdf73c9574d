"""Multi-exit evaluation report (RDI-Nets Tables 2–4 layout)."""
from __future__ import annotations

import json

import pytest
import torch

from robustdial.evaluation.multi_exit import report
from robustdial.models.early_exit import adaptive_forward


def test_report_layout_and_consistency(tiny_model, tiny_data):
    x, y = tiny_data
    t = (1.2, 1.0)
    r = report(tiny_model, (x, y), eps=0.1, alpha=0.03, steps=2, thresholds=t, batch_size=20)
    with torch.no_grad():
        logits, idx = adaptive_forward(tiny_model, x, t)
    assert r.ta == pytest.approx(100 * (logits.argmax(1) == y).float().mean().item())
    assert r.cost["clean"]["counts"] == torch.bincount(idx, minlength=3).tolist()
    (name,) = r.ata
    forms = r.ata[name]
    assert list(forms) == ["branch1", "branch2", "main", "average", "max-average", "random"]
    k3 = {f: v for f, v in forms.items() if f != "random"}
    assert r.worst_case[name]["ata"] == min(k3.values())
    assert r.worst_case[name]["ata_per_sample"] <= r.worst_case[name]["ata"]
    for key, c in r.cost.items():
        assert sum(c["counts"]) == 48, key
        assert 0 <= c["saving"] < 1
    assert len(r.exit_acc["clean"]) == 3
    assert r.meta["samples"] == 48
    table = r.to_table()
    for row in ("TA", "ATA (Branch 1)", "ATA (Main Branch)", "ATA (Max-Average)",
                "ATA (Worst-Case)", "Average MFlops", "Computation Saving"):
        assert row in table
    json.dumps(r.to_dict())


def test_report_options(tiny_model, tiny_data):
    x, y = tiny_data
    r = report(tiny_model, (x, y), eps=0.1, attacks="fgsm", thresholds=(1.2, 1.0),
               forms=["main", "average"], max_samples=10, seed=3)
    assert r.meta["samples"] == 10 and list(r.ata["fgsm"]) == ["main", "average"]
    r2 = report(tiny_model, (x, y), eps=0.1, attacks="fgsm", thresholds=(1.2, 1.0),
                forms=["main", "average"], max_samples=10, seed=3)
    assert r2.ata == r.ata
    with pytest.raises(ValueError, match="unknown attack form"):
        report(tiny_model, (x, y), eps=0.1, forms=["median"], thresholds=(1.0, 1.0))
