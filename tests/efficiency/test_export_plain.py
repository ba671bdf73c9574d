"""Export at fixed dials: equality with the conditioned model, standalone loader, ONNX, CLI, costs.

The security of loading (no artifact bytes become code) and the atomic /
overwrite behaviour of writing are in ``test_export_security.py``.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from torch import nn

import robustdial as rd
from robustdial.export import LOADER_PATH, export_model, load_exported, to_plain


def _randomize_bn(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) - 0.5)


CASES = [
    ("oat", {"lam": 0.2, "width": 0.5}),   # FiLM folded into the width-0.5 BN_a
    ("oat", {"lam": 0.0, "width": 1.0}),   # clean BN, FiLM at λ = 0
    ("float", {"lam": 0.7, "lam_th": 0.5, "width": 0.5}),  # fixed noise baked in
    ("float", {"lam": 1.0, "width": 1.0}),
    (None, {"width": 0.5}),
]



def _fixed_noise(model):
    """``{"noise": "fixed"}`` for a model with noisy layers (what export bakes in), else nothing."""
    return {"noise": "fixed"} if "noise" in rd.dial_specs(model) else {}

@pytest.mark.parametrize("conditioning,dials", CASES)
def test_export_equals_conditioned_model(conditioning, dials):
    model = rd.create_model("preact_resnet20", conditioning=conditioning, widths=(0.5, 1.0))
    _randomize_bn(model)
    model.eval()
    x = torch.rand(4, 3, 32, 32)
    with rd.conditioned(model, **dials, **_fixed_noise(model)), torch.no_grad():
        ref = model(x)
    plain = to_plain(model, dials)
    types = {type(m) for m in plain.modules()}
    assert all(t.__module__.startswith("torch.nn") or t.__module__.startswith("robustdial.models")
               for t in types), types
    with torch.no_grad():
        torch.testing.assert_close(plain(x), ref, atol=1e-5, rtol=1e-5)
    convs = [m for m in plain.modules() if isinstance(m, nn.Conv2d)]
    if dials.get("width") == 0.5:
        assert max(c.out_channels for c in convs) == 32  # 64 channels physically sliced


def test_film_outside_sequential_becomes_bn():
    model = rd.create_model("small_cnn", in_channels=1, conditioning="oat")
    model.eval()
    x = torch.rand(2, 1, 28, 28)
    with rd.conditioned(model, lam=0.3), torch.no_grad():
        ref = model(x)
    plain = to_plain(model, {"lam": 0.3}, input_shape=(1, 28, 28))
    with torch.no_grad():
        torch.testing.assert_close(plain(x), ref, atol=1e-5, rtol=1e-5)


_RUN_LOADER = """
import sys
sys.modules["robustdial"] = None  # any import of robustdial now fails
sys.path.insert(0, sys.argv[1])  # the directory holding a copy of the standalone loader.py
import torch
from loader import load_exported
net = load_exported(sys.argv[2])
x = torch.load(sys.argv[3], weights_only=True)
torch.save(net(x).detach(), sys.argv[4])
"""


def test_standalone_loader_without_robustdial(tmp_path):
    model = rd.create_model("preact_resnet20", conditioning="float", widths=(0.5, 1.0))
    _randomize_bn(model)
    model.eval()
    dials = {"lam": 0.7, "width": 0.5}
    out = tmp_path / "exp"
    layout = export_model(model, out, dials, onnx=True)
    assert sorted(p.name for p in out.iterdir()) == ["layout.json", "model.onnx",
                                                      "model.safetensors"]  # no code in the artifact
    assert json.loads((out / "layout.json").read_text())["dials"] == {"lam": 0.7, "width": 0.5}
    assert json.loads((out / "layout.json").read_text())["format"] == "robustdial-export/2"
    assert {m["type"] for m in layout["modules"].values()} <= {"Conv2d", "BatchNorm2d", "Linear",
                                                               "ReLU", "AdaptiveAvgPool2d"}
    x = torch.rand(3, 3, 32, 32)
    torch.save(x, tmp_path / "x.pt")
    copy = tmp_path / "standalone"  # the single file, copied away from the package
    copy.mkdir()
    shutil.copyfile(LOADER_PATH, copy / "loader.py")
    subprocess.run([sys.executable, "-I", "-c", _RUN_LOADER, str(copy), str(out),
                    str(tmp_path / "x.pt"), str(tmp_path / "y.pt")], check=True, cwd=tmp_path,
                   capture_output=True)
    y = torch.load(tmp_path / "y.pt", weights_only=True)
    with rd.conditioned(model, **dials, **_fixed_noise(model)), torch.no_grad():
        ref = model(x)
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # the in-package entry point gives the same network
        torch.testing.assert_close(load_exported(out)(x), ref, atol=1e-5, rtol=1e-5)
    script = subprocess.run([sys.executable, "-I", str(copy / "loader.py"), str(out)], check=True,
                            cwd=tmp_path, capture_output=True, text=True)
    assert "output shape (1, 10)" in script.stdout
    import onnx

    proto = onnx.load(str(out / "model.onnx"))
    onnx.checker.check_model(proto)
    assert proto.graph.input[0].name == "images"


def _pruned(name: str, **options) -> nn.Module:
    from robustdial.compress import ChannelPrune

    model = rd.create_model(name, **options)
    ChannelPrune(0.5).on_train_start(model, None)
    return model


ZOO = [  # (model, dials, input shape): every kind of plain network the zoo exports
    (lambda: rd.create_model("small_cnn", in_channels=1, conditioning="oat", widths=(0.5, 1.0)),
     {"lam": 0.3, "width": 0.5}, (1, 28, 28)),
    (lambda: rd.create_model("small_cnn", in_channels=1, exits=True), {"exit": 1}, (1, 28, 28)),
    (lambda: rd.create_model("resnet38", exits=True, conditioning="oat", widths=(0.5, 1.0)),
     {"exit": 1, "lam": 0.5, "width": 0.5}, (3, 32, 32)),
    (lambda: rd.create_model("mobilenet_v2", conditioning="float", widths=(0.5, 1.0)),
     {"lam": 0.7, "width": 0.5}, (3, 32, 32)),
    (lambda: rd.create_model("wrn16_8", widths=(0.5, 1.0)), {"width": 0.5}, (3, 32, 32)),
    (lambda: _pruned("preact_resnet20"), {}, (3, 32, 32)),
]


@pytest.mark.parametrize("make,dials,shape", ZOO, ids=["small_cnn-oat", "small_cnn-exit1",
                                                       "resnet38-exit1-oat", "mobilenet_v2-float",
                                                       "wrn16_8-slim", "preact_resnet20-pruned"])
def test_exported_zoo_equals_conditioned_model(tmp_path, make, dials, shape):
    model = make()
    _randomize_bn(model)
    model.eval()
    export_model(model, tmp_path / "exp", dials, input_shape=shape)
    net = load_exported(tmp_path / "exp")
    x = torch.rand(2, *shape)
    with rd.conditioned(model, **dials, **_fixed_noise(model)), torch.no_grad():
        torch.testing.assert_close(net(x), model(x), atol=1e-5, rtol=1e-5)


def test_pruned_channels_removed_exactly():
    from robustdial.compress import ChannelPrune

    model = rd.create_model("preact_resnet20")
    _randomize_bn(model)
    cp = ChannelPrune(0.5)
    cp.on_train_start(model, None)
    model.eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
    from robustdial.export import remove_zero_channels, trace

    gm = trace(to_plain(model))
    removed = remove_zero_channels(gm)
    assert removed > 0
    with torch.no_grad():
        torch.testing.assert_close(gm(x), ref, atol=1e-5, rtol=1e-5)


def test_export_rejects_bad_noise_mode():
    model = rd.create_model("preact_resnet20", conditioning="float")
    with pytest.raises(ValueError, match="noise"):
        to_plain(model, {"lam": 1.0}, noise="sample")


@pytest.mark.slow
def test_cost_cli_float_vs_oat_storage_ratio(capsys):
    from robustdial.cli import main

    rc = main(["cost", "--model", "resnet34", "--option", "conditioning=oat", "--option",
               "embed_dim=1", "--option", "dual_bn=false", "--compare-model", "resnet34",
               "--compare-option", "conditioning=float"])
    assert rc == 0
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("storage ratio")][0]
    assert float(line.split()[2].rstrip(",")) >= 1.47


def test_export_cli(tmp_path, capsys):
    from robustdial.cli import main

    model = rd.create_model("small_cnn", in_channels=1, conditioning="oat", widths=(0.5, 1.0))
    rd.save(model, tmp_path / "ckpt", {"dataset": {"name": "mnist"}})
    rc = main(["export", str(tmp_path / "ckpt"), "--dial", "lam=0.4", "--dial", "width=0.5",
               "--out", str(tmp_path / "exp")])
    assert rc == 0, capsys.readouterr().err
    assert "loader.py" in capsys.readouterr().out  # says where the loader is
    layout = json.loads((tmp_path / "exp" / "layout.json").read_text())
    assert layout["input_shape"] == [1, 28, 28] and layout["dials"]["width"] == 0.5
    rc = main(["export", str(tmp_path / "ckpt"), "--dial", "width=0.3", "--out", str(tmp_path / "x")])
    assert rc == 2 and "0.5, 1" in capsys.readouterr().err


class _Functional(nn.Module):
    """Every kind of whitelisted call: functions, tensor methods, slicing, BN without bias."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8, bias=False)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(16 + 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        h = torch.relu(self.bn(self.conv(x)))
        a = F.max_pool2d(h, 2) * 0.5 + F.avg_pool2d(h, 2)
        a = torch.cat([a[:, :4], a[:, 4:]], dim=1)
        b = self.pool(F.adaptive_avg_pool2d(h, 4)).view(x.size(0), -1)[:, :8]
        c = a.mean(dim=(2, 3))
        return self.fc(torch.cat([torch.flatten(b, 1), c, c - c.relu()], 1))


def test_export_functional_ops(tmp_path):
    model = _Functional().eval()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.weight.uniform_(0.5, 1.5)
    layout = export_model(model, tmp_path / "exp")
    assert {n["op"] for n in layout["graph"]} >= {"call_function", "call_method", "call_module"}
    assert "bias" in layout["modules"]["bn"]["args"]
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(load_exported(tmp_path / "exp")(x), model(x), atol=1e-5,
                                   rtol=1e-5)
