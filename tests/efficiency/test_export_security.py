"""Exports are data: loading one never turns artifact bytes into code; writing one is atomic.

Issue #14 found three ways the ``robustdial-export/1`` loader ran code from an
artifact: a crafted placeholder target (a shell command inside
``load_exported()`` itself, through fx code generation of the forward's
signature), a ``torch.load(..., weights_only=False)`` graph node on a pickle
shipped in the artifact, and a quote in a ``call_method`` target injected
through fx code generation (the forward still returned the right shape).
Each attack below is written in the node schema both formats share, with the
current format string, so that on the old code it runs its payload (the marker
file appears) and here it must be refused with a ``ValueError`` naming the node.
"""
from __future__ import annotations

import ast
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

import robustdial as rd
import robustdial.export as rexp
from robustdial.export import FORMAT, LOADER_PATH, export_model, load_exported

SHAPE = (1, 28, 28)


@pytest.fixture(scope="module")
def base_export(tmp_path_factory) -> Path:
    model = rd.create_model("small_cnn", in_channels=1).eval()
    out = tmp_path_factory.mktemp("base") / "exp"
    export_model(model, out, input_shape=SHAPE)
    return out


def _craft(base: Path, tmp_path: Path, edit) -> Path:
    """A copy of ``base`` whose layout.json was changed by ``edit(layout, artifact_dir)``."""
    d = tmp_path / "artifact"
    shutil.copytree(base, d)
    layout = json.loads((d / "layout.json").read_text())
    layout["format"] = FORMAT
    edit(layout, d)
    (d / "layout.json").write_text(json.dumps(layout, indent=1))
    return d


def _attempt(d: Path) -> ValueError | None:
    """Load the artifact and, if that is accepted, run a forward (where fx-generated code runs).

    Returns the ``ValueError`` that refused it (None if it was accepted); any other
    exception is returned too, so that the caller checks the marker file first.
    """
    try:
        net = load_exported(d)
        with torch.no_grad():
            net(torch.rand(2, *SHAPE))
    except Exception as exc:  # noqa: BLE001 - checked by the caller after the marker
        return exc
    return None


def _command_expr(path: Path) -> str:
    """A Python expression without dots (fx splits call_method targets on '.') = 'touch PATH'."""
    return 'getattr("", "join")(map(chr, %r))' % [ord(c) for c in f"touch {path}"]


class _Payload:
    """Pickles to ``os.system(cmd)``: unpickling it runs the command."""

    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


def _input_node(layout: dict) -> dict:
    return next(n for n in layout["graph"] if n["op"] == "placeholder")


def test_attack_placeholder_target_runs_no_shell_command(base_export, tmp_path):
    marker = tmp_path / "MARKER_target_string"

    def edit(layout, d):  # old loader: fx writes the target into `def forward(self, <target>)`
        _input_node(layout)["target"] = f"x=__import__('os').system('touch {marker}')"

    exc = _attempt(_craft(base_export, tmp_path, edit))
    assert not marker.exists(), "loading the export ran a shell command from layout.json"
    assert isinstance(exc, ValueError) and "graph node 'x'" in str(exc) and "placeholder" in str(exc)


def test_attack_torch_load_node_unpickles_nothing(base_export, tmp_path):
    marker = tmp_path / "MARKER_torch_load"

    def edit(layout, d):
        torch.save(_Payload(f"touch {marker}"), d / "stats.pt")
        graph = layout["graph"]
        graph.insert(graph.index(_input_node(layout)) + 1, {
            "name": "stats", "op": "call_function", "target": "torch.load",
            "args": [str(d / "stats.pt")], "kwargs": {"weights_only": False}})

    exc = _attempt(_craft(base_export, tmp_path, edit))
    assert not marker.exists(), "loading the export unpickled a file of the artifact"
    assert isinstance(exc, ValueError) and "'stats'" in str(exc) and "torch.load" in str(exc)
    assert "not an allowed function" in str(exc)


def test_attack_call_method_quote_injects_no_code(base_export, tmp_path):
    marker = tmp_path / "MARKER_call_method"

    def edit(layout, d):  # replace a ReLU module call by an injected tensor-method call
        graph = layout["graph"]
        i = next(k for k, n in enumerate(graph) if n["op"] == "call_module"
                 and layout["modules"][n["target"]]["type"] == "ReLU")
        src = graph[i]["args"][0]["node"]
        target = ('relu")(); getattr(__import__("os"), "system")(' + _command_expr(marker)
                  + f'); _ = getattr({src}, "relu')
        graph[i] = {"name": graph[i]["name"], "op": "call_method", "target": target,
                    "args": [{"node": src}], "kwargs": {}}

    exc = _attempt(_craft(base_export, tmp_path, edit))
    assert not marker.exists(), "a call_method target injected code into the forward"
    assert isinstance(exc, ValueError) and "call_method" in str(exc)
    assert "not an allowed tensor method" in str(exc)


def _replace_node(name: str, **fields):
    """Replace the first module call by a ``relu`` call named ``name``, then apply ``fields``."""
    def edit(layout, d):
        graph = layout["graph"]
        i = next(k for k, n in enumerate(graph) if n["op"] == "call_module")
        graph[i] = {"name": name, "op": "call_function", "target": "relu",
                    "args": graph[i]["args"], "kwargs": {}, **fields}
    return edit


def _set_module(key: str, value):
    def edit(layout, d):
        name = next(k for k, m in layout["modules"].items() if m["type"] == "Conv2d")
        layout["modules"][name]["args"][key] = value
    return edit


def _module_type(value):
    def edit(layout, d):
        name = next(iter(layout["modules"]))
        layout["modules"][name]["type"] = value
    return edit


def _rename_module(new: str):
    def edit(layout, d):
        old = next(iter(layout["modules"]))
        layout["modules"][new] = layout["modules"].pop(old)
        for n in layout["graph"]:
            if n["op"] == "call_module" and n["target"] == old:
                n["target"] = new
    return edit


def _append(node: dict):
    def edit(layout, d):
        graph = layout["graph"]
        graph.insert(len(graph) - 1, node)
    return edit


REJECTED = {  # crafted layout -> words the ValueError must contain
    "function getattr": (_replace_node("n1", target="getattr"), ["'n1'", "getattr", "not an allowed"]),
    "function eval": (_replace_node("n1", target="eval"), ["'n1'", "eval", "not an allowed"]),
    "function __import__": (_replace_node("n1", target="__import__"), ["'n1'", "not an allowed"]),
    "qualified name": (_replace_node("n1", target="torch.nn.functional.relu"),
                       ["'n1'", "not an allowed"]),
    "method __reduce__": (_replace_node("n1", op="call_method", target="__reduce__"),
                          ["'n1'", "call_method", "not an allowed tensor method"]),
    "unknown op": (_replace_node("n1", op="call_python"), ["'n1'", "unknown op"]),
    "string argument": (_replace_node("n1", args=[{"node": "x"}, "os.system"]),
                        ["'n1'", "'os.system'", "not allowed"]),
    "dtype argument": (_replace_node("n1", kwargs={"inplace": {"dtype": "float32"}}),
                       ["'n1'", "not allowed"]),
    "unknown keyword": (_replace_node("n1", kwargs={"weights_only": False}), ["'n1'", "keywords"]),
    "forward reference": (_replace_node("n1", args=[{"node": "output"}]), ["'n1'", "unknown or later"]),
    "undeclared module": (_replace_node("n1", op="call_module", target="os.system"),
                          ["'n1'", "unknown module"]),
    "undeclared constant": (_append({"name": "c", "op": "get_attr", "target": "w", "args": [],
                                     "kwargs": {}}), ["'c'", "unknown constant"]),
    "bad node name": (_replace_node("a; import os"), ["invalid or duplicate name"]),
    "module type": (_module_type("Module"), ["type 'Module' is not allowed"]),
    "module type path": (_module_type("torch.nn.Conv2d"), ["is not allowed"]),
    "module arg type": (_set_module("kernel_size", "3"), ["kernel_size", "expected"]),
    "module arg range": (_set_module("out_channels", -1), ["out_channels", "expected"]),
    "module arg unknown": (_set_module("device", "cuda"), ["unknown argument 'device'"]),
    "module name": (_rename_module("__class__"), ["collides"]),
    "module path": (_rename_module("a..b"), ["invalid module name"]),
}


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_loader_rejects_what_is_not_in_its_tables(base_export, tmp_path, case):
    edit, words = REJECTED[case]
    exc = _attempt(_craft(base_export, tmp_path, edit))
    assert isinstance(exc, ValueError), f"{case}: {exc!r}"
    for w in words:
        assert w in str(exc), (case, str(exc))


def test_weights_must_match_layout(base_export, tmp_path):
    from safetensors.torch import load_file, save_file

    d = _craft(base_export, tmp_path, lambda layout, d: None)
    tensors = load_file(str(d / "model.safetensors"))
    name = next(k for k in tensors if k.endswith("weight"))
    tensors[name] = tensors[name][:1].contiguous()
    save_file(tensors, str(d / "model.safetensors"))
    exc = _attempt(d)
    assert isinstance(exc, ValueError) and "size mismatch" in str(exc)


def test_old_format_refused_with_reexport_hint(base_export, tmp_path):
    marker = tmp_path / "MARKER_old_loader"

    def edit(layout, d):  # an old artifact, with the python file it used to ship
        layout["format"] = "robustdial-export/1"
        (d / "load_exported.py").write_text(f"open({str(marker)!r}, 'w').close()\n")

    d = _craft(base_export, tmp_path, edit)
    with pytest.raises(ValueError, match="re-export"):
        load_exported(d)
    assert not marker.exists()


def test_loading_never_unpickles_or_uses_torch_load(base_export, monkeypatch):
    def forbidden(*a, **k):
        raise AssertionError("the loader must not unpickle")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    net = load_exported(base_export)
    with torch.no_grad():
        assert net(torch.rand(2, *SHAPE)).shape == (2, 10)


def test_loader_source_has_no_string_to_code_path():
    tree = ast.parse(LOADER_PATH.read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not imported & {"importlib", "pickle", "marshal", "os", "subprocess", "torch.fx",
                           "builtins", "runpy"}, imported
    assert {m.split(".")[0] for m in imported} <= {"__future__", "json", "logging", "math",
                                                   "operator", "re", "sys", "collections",
                                                   "dataclasses", "pathlib", "types", "typing",
                                                   "torch", "safetensors"}, imported
    called = {n.func.id for n in ast.walk(tree)
              if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert not called & {"exec", "eval", "compile", "__import__", "getattr", "setattr",
                         "hasattr", "open"}, called
    attrs = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert not attrs & {"load", "fx", "GraphModule", "import_module", "system"}, attrs


# -- writing: refuse non-empty targets, --overwrite replaces everything, atomic ----------------
def _small_model():
    return rd.create_model("small_cnn", in_channels=1, conditioning="oat").eval()


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


def test_export_refuses_non_empty_directory(tmp_path):
    out = tmp_path / "exp"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite"):
        export_model(_small_model(), out, {"lam": 0.3}, input_shape=SHAPE)
    assert (out / "notes.txt").read_text() == "mine" and _siblings(out) == ["exp"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not a directory"):
        export_model(_small_model(), tmp_path / "file", {"lam": 0.3}, input_shape=SHAPE,
                     overwrite=True)


def test_export_into_empty_directory(tmp_path):
    out = tmp_path / "exp"
    out.mkdir()
    export_model(_small_model(), out, {"lam": 0.3}, input_shape=SHAPE)
    assert sorted(p.name for p in out.iterdir()) == ["layout.json", "model.safetensors"]
    assert _siblings(out) == ["exp"]  # no temporary directory left beside it


def test_overwrite_removes_stale_files(tmp_path):
    out = tmp_path / "exp"
    model = _small_model()
    export_model(model, out, {"lam": 0.3}, input_shape=SHAPE)
    (out / "model.onnx").write_text("stale: an earlier λ")
    (out / "load_exported.py").write_text("# a loader shipped by the old format")
    export_model(model, out, {"lam": 0.7}, input_shape=SHAPE, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["layout.json", "model.safetensors"]
    assert json.loads((out / "layout.json").read_text())["dials"] == {"lam": 0.7}
    assert _siblings(out) == ["exp"]
    x = torch.rand(2, *SHAPE)
    with rd.conditioned(model, lam=0.7), torch.no_grad():
        torch.testing.assert_close(load_exported(out)(x), model(x), atol=1e-5, rtol=1e-5)


def test_failed_export_leaves_no_partial_directory(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(rexp, "export_onnx", boom)  # fails after the weights and layout are written
    out = tmp_path / "exp"
    with pytest.raises(RuntimeError, match="disk full"):
        export_model(_small_model(), out, {"lam": 0.3}, input_shape=SHAPE, onnx=True)
    assert not out.exists() and _siblings(out) == []
    out.mkdir()  # an earlier export survives a failed overwrite untouched
    (out / "layout.json").write_text("earlier")
    with pytest.raises(RuntimeError, match="disk full"):
        export_model(_small_model(), out, {"lam": 0.3}, input_shape=SHAPE, onnx=True, overwrite=True)
    assert [p.name for p in out.iterdir()] == ["layout.json"]
    assert (out / "layout.json").read_text() == "earlier" and _siblings(out) == ["exp"]


def test_cli_export_overwrite(tmp_path, capsys):
    from robustdial.cli import main

    rd.save(_small_model(), tmp_path / "ckpt", {"dataset": {"name": "mnist"}})
    out = tmp_path / "exp"
    argv = ["export", str(tmp_path / "ckpt"), "--dial", "lam=0.4", "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    (out / "model.onnx").write_text("stale")
    capsys.readouterr()
    assert main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err and (out / "model.onnx").exists()
    assert main(argv + ["--overwrite"]) == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["layout.json", "model.safetensors"]
