"""Export of integer levels + scales, round trip, and storage at b bits."""
from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from robustdial.compress.binary_relax import BinaryRelax
from robustdial.compress.export import export_quantized, load_quantized, storage_bits

from _projections_by_hand import BY_HAND


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, bias=False), nn.Flatten(), nn.LazyLinear(10))


def _uniform6(w):
    """6-bit symmetric uniform, written out: s = max|w|/31, round(w/s)·s."""
    s = w.abs().max() / 31
    return torch.round(w / s) * s


@pytest.mark.parametrize("scheme", ["binary", "ternary", "4bit", 6])
def test_round_trip_equals_finalized_model(tmp_path, scheme):
    net = _net()
    net(torch.rand(2, 3, 8, 8))  # materialize the lazy fc
    t = BinaryRelax(scheme)
    export_quantized(net, t, tmp_path / "float")           # from float weights
    final = t.finalize(copy.deepcopy(net))
    export_quantized(final, scheme, tmp_path / "final")    # from finalized weights
    meta = json.loads((tmp_path / "float" / "quantized.json").read_text())
    assert sorted(meta["quantized"]) == ["0.weight", "3.weight"]
    assert meta["quantized"]["0.weight"]["levels_dtype"] == "int8"
    # expected: the projection written out in the test (not the library's finalize)
    project = _uniform6 if scheme == 6 else BY_HAND[scheme]
    expected = {k: (project(v) if k in ("0.weight", "3.weight") else v)
                for k, v in net.state_dict().items()}
    for sub in ("float", "final"):
        other = _net()
        other(torch.rand(2, 3, 8, 8))
        load_quantized(other, tmp_path / sub)
        for k, v in expected.items():
            assert torch.allclose(other.state_dict()[k].float(), v.float(), rtol=1e-5,
                                  atol=1e-6), (sub, k)


def test_storage_bits_counts_bits_and_scales():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.Flatten(), nn.Linear(8, 2))
    conv, fc = 8 * 3 * 9, 8 * 2 + 2
    assert storage_bits(net, "float") == 32 * (conv + fc)
    assert storage_bits(net, "binary") == conv + 32 + 32 * fc
    assert storage_bits(net, "4bit") == 4 * conv + 32 + 32 * fc


def test_missing_export_dir_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="export_quantized"):
        load_quantized(_net(), tmp_path)
    with pytest.raises(ValueError, match="nothing to quantize"):
        export_quantized(_net(), "float", tmp_path)
