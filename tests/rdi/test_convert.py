"""Oracle: the authors' released RDI-ResNet-38 weights reproduce their own outputs."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from robustdial.models.convert import convert_rdi_checkpoint
from robustdial.models.early_exit import adaptive_forward

PAPER_THRESHOLDS = (0.32, 0.36, 0.39, 0.83, 1.12, 1.35)


@pytest.fixture(scope="module")
def rdi(shared_fixtures_root, pytestconfig):
    root = shared_fixtures_root / "rdi-resnet38-cifar10"
    if not (root / "checkpoint_60000.pth.tar").is_file():  # tests/conftest.py: skip, or fail under CI
        top = pytestconfig.pluginmanager.get_plugin(str(Path(__file__).parents[1] / "conftest.py"))
        top.missing_prerequisite(f"{root / 'checkpoint_60000.pth.tar'} (the authors' released "
                                 "RDI-ResNet-38 weights) not found", top.HOW_TO_ENABLE)
    ref = torch.load(root / "reference_outputs.pt", weights_only=True)
    return convert_rdi_checkpoint(root / "checkpoint_60000.pth.tar"), ref


def test_converted_model_reproduces_all_seven_exits(rdi):
    model, ref = rdi
    assert sum(p.numel() for p in model.parameters()) == 692_310
    assert not model.training
    x = ref["inputs_uint8"].float() / 255
    with torch.no_grad():
        outs = model.forward_exits(x)
    assert len(outs) == 7
    for k, o in enumerate(outs):
        assert torch.allclose(o, ref["logits"][k], atol=1e-4), f"exit {k}"


def test_exit_assignments_at_the_papers_thresholds(rdi):
    model, ref = rdi
    assert torch.allclose(model.exit_thresholds, torch.tensor(PAPER_THRESHOLDS))
    x = ref["inputs_uint8"].float() / 255
    with torch.no_grad():
        logits, idx = adaptive_forward(model, x, PAPER_THRESHOLDS)
    assert torch.equal(idx, ref["exit_at_paper_thresholds"])
    expect = ref["logits"][ref["exit_at_paper_thresholds"], torch.arange(64)]
    assert torch.allclose(logits, expect, atol=1e-4)


def test_exit_costs_match_the_paper(rdi):
    model, _ = rdi
    mflops = [m / 2**20 for m in model.exit_macs()]
    assert mflops == pytest.approx([16.79, 30.29, 36.54, 50.04, 61.42, 74.92, 79.42], abs=0.01)


def test_bad_checkpoint_paths_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="triple-wins"):
        convert_rdi_checkpoint(tmp_path / "nope.pth.tar")
    torch.save({"state_dict": {"module.foo.weight": torch.zeros(1)}}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="RDI ResNet-38"):
        convert_rdi_checkpoint(tmp_path / "bad.pt")
