"""FitConfig: YAML round trip and loud errors."""
from __future__ import annotations

import pytest
import yaml

from robustdial.engine import FitConfig


def test_yaml_roundtrip():
    cfg = FitConfig(epochs=5, lr=0.05, schedule="multistep", milestones=[2, 4], amp="bf16",
                    val_attack="pgd-10", select="val_robust_acc")
    again = FitConfig.from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict())))
    assert again == cfg


def test_defaults():
    cfg = FitConfig()
    assert (cfg.momentum, cfg.nesterov, cfg.weight_decay, cfg.gamma) == (0.9, False, 5e-4, 0.1)
    assert cfg.device is None and cfg.amp is None and cfg.progress is None and cfg.select == "val_acc"


def test_val_eps_fraction_string():
    assert FitConfig(val_eps="8/255").val_eps == pytest.approx(8 / 255)


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ValueError, match=r"\['learning_rate'\].*valid keys:.*\blr\b"):
        FitConfig.from_dict({"learning_rate": 0.1})


@pytest.mark.parametrize("bad, match", [
    ({"schedule": "linear"}, "schedule must be one of"),
    ({"select": "test_acc"}, "select must be one of"),
    ({"select": "val_robust_acc"}, "needs val_attack"),
    ({"amp": "fp8"}, "amp must be one of"),
    ({"epochs": 0}, "epochs must be a positive int"),
    ({"batch_size": 0}, "batch_size must be a positive int"),
    ({"milestones": [5, 2]}, "increasing"),
    ({"grad_clip": 0}, "grad_clip"),
])
def test_bad_values(bad, match):
    with pytest.raises(ValueError, match=match):
        FitConfig.from_dict(bad)
