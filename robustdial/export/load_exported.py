"""Load a model exported by ``robustdial export`` — needs only torch and safetensors.

This file is copied verbatim beside every export. Usage::

    from load_exported import load_exported
    model = load_exported("export_dir")          # a torch.fx.GraphModule in eval mode
    logits = model(images)                       # images in [0, 1], (B, C, H, W)

or ``python load_exported.py export_dir`` to print the layout and run a zero
input. ``layout.json`` describes the network as a graph of standard
``torch.nn`` modules (format ``robustdial-export/1``, documented in its
``"doc"`` field); ``model.safetensors`` holds the tensors.
"""
from __future__ import annotations

import importlib
import json
import operator
import sys
from pathlib import Path
from typing import Any

import torch
import torch.fx as fx
from safetensors.torch import load_file
from torch import nn

FORMAT = "robustdial-export/1"
_ALLOWED = ("torch", "operator", "math")


def _resolve_function(name: str) -> Any:
    mod, _, attr = name.rpartition(".")
    if mod.split(".")[0] not in _ALLOWED:
        raise ValueError(f"refusing to call {name}: only torch/operator/math functions")
    if mod == "operator":
        return getattr(operator, attr)
    return getattr(importlib.import_module(mod), attr)


def _decode(value: Any, env: dict[str, fx.Node]) -> Any:
    if isinstance(value, list):
        return [_decode(v, env) for v in value]
    if isinstance(value, dict):
        (kind, inner), = value.items()
        if kind == "node":
            return env[inner]
        if kind == "tuple":
            return tuple(_decode(v, env) for v in inner)
        if kind == "slice":
            return slice(*(_decode(v, env) for v in inner))
        if kind == "dtype":
            return getattr(torch, inner)
        if kind == "dict":
            return {k: _decode(v, env) for k, v in inner.items()}
        raise ValueError(f"unknown argument encoding {kind!r}")
    return value


def _place(root: nn.Module, dotted: str, obj: Any) -> None:
    *parents, leaf = dotted.split(".")
    for p in parents:
        if not hasattr(root, p):
            root.add_module(p, nn.Module())
        root = getattr(root, p)
    if isinstance(obj, nn.Module):
        root.add_module(leaf, obj)
    else:
        root.register_buffer(leaf, obj)


def load_exported(path: str | Path, device: str | torch.device = "cpu") -> fx.GraphModule:
    """Rebuild the exported network from ``path/layout.json`` and ``path/model.safetensors``."""
    path = Path(path)
    layout = json.loads((path / "layout.json").read_text())
    if layout.get("format") != FORMAT:
        raise ValueError(f"{path}/layout.json: format {layout.get('format')!r}, expected {FORMAT!r}")
    tensors = load_file(str(path / "model.safetensors"))
    root = nn.Module()
    for name, spec in layout["modules"].items():
        cls = getattr(nn, spec["type"])
        args = {k: tuple(v) if isinstance(v, list) else v for k, v in spec["args"].items()}
        _place(root, name, cls(**args))
    for name in layout["attributes"]:
        _place(root, name, tensors[name])
    graph = fx.Graph()
    env: dict[str, fx.Node] = {}
    for n in layout["graph"]:
        args = tuple(_decode(a, env) for a in n["args"])
        kwargs = {k: _decode(v, env) for k, v in n["kwargs"].items()}
        op, target = n["op"], n["target"]
        if op == "placeholder":
            node = graph.placeholder(target)
        elif op == "get_attr":
            node = graph.get_attr(target)
        elif op == "call_module":
            node = graph.call_module(target, args, kwargs)
        elif op == "call_function":
            node = graph.call_function(_resolve_function(target), args, kwargs)
        elif op == "call_method":
            node = graph.call_method(target, args, kwargs)
        elif op == "output":
            node = graph.output(args[0])
        else:
            raise ValueError(f"unknown graph op {op!r}")
        env[n["name"]] = node
    model = fx.GraphModule(root, graph)
    model.load_state_dict(tensors, strict=True)
    return model.to(device).eval()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python load_exported.py EXPORT_DIR")
    net = load_exported(sys.argv[1])
    info = json.loads((Path(sys.argv[1]) / "layout.json").read_text())
    shape = info.get("input_shape", [3, 32, 32])
    with torch.no_grad():
        out = net(torch.zeros(1, *shape))
    print(f"loaded {len(info['modules'])} modules; output shape {tuple(out.shape)}")
