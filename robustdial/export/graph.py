"""The plain model as a data-only JSON graph of whitelisted operations, and channel removal.

Layout (``layout.json``, format ``robustdial-export/2``)::

    {"format": "robustdial-export/2",
     "modules": {"<dotted name>": {"type": "Conv2d", "args": {...constructor kwargs}}, ...},
     "constants": ["<dotted name of a constant tensor>", ...],
     "graph": [{"name": "x", "op": "placeholder", "target": "x", "args": [], "kwargs": {}},
               {"name": "conv1", "op": "call_module", "target": "conv1",
                "args": [{"node": "x"}], "kwargs": {}},
               {"name": "add", "op": "call_function", "target": "add", ...},
               {"name": "output", "op": "output", "target": "output", "args": [{"node": "fc"}]}],
     ...metadata}

``op`` is one of ``placeholder`` (an input), ``get_attr`` (a constant tensor),
``call_module`` (a module of ``modules``), ``call_function``, ``call_method``
and ``output``. Module types, function and tensor-method names are *keys of
fixed tables* in the loader (``robustdial/export/loader.py``: ``MODULES``,
``FUNCTIONS``, ``METHODS``), not import paths; module constructor arguments are
checked against the table. Argument values are numbers, booleans, ``null``,
lists, ``{"node": name}`` (an earlier node), ``{"tuple": [...]}`` and
``{"slice": [start, stop, step]}``. The tensors are in ``model.safetensors``
under their dotted names (the plain model's ``state_dict``). The loader runs
the graph with an interpreter loop; no string of the layout becomes code.
"""
from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from .loader import FORMAT, FUNCTIONS, METHODS, MODULES

__all__ = ["FORMAT", "graph_layout", "remove_zero_channels", "trace"]

# traced callables that are the same operation as a loader table entry (same arguments)
_ALIASES = {torch.relu: "relu"}

# modules that act per channel and keep the channel order
_CHANNELWISE = (nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Identity, nn.MaxPool2d,
                nn.AvgPool2d, nn.Dropout, nn.Hardtanh)
_CHANNELWISE_FN = (torch.relu, torch.nn.functional.relu, torch.nn.functional.relu6,
                   torch.nn.functional.leaky_relu)


def trace(plain: nn.Module) -> fx.GraphModule:
    """``torch.fx.symbolic_trace`` (eval-mode no-ops removed), clear error for dynamic forwards."""
    for m in plain.modules():  # input-shape checks branch on shapes: skipped in the graph
        if callable(getattr(m, "check_input", None)):
            m.check_input = lambda x: None
    try:
        gm = fx.symbolic_trace(plain)
    except Exception as exc:  # noqa: BLE001 - tracing errors come in many types
        raise ValueError(f"{type(plain).__name__} cannot be exported as a static graph at these "
                         f"dials ({type(exc).__name__}: {exc}); data-dependent control flow such "
                         "as adaptive early exit is not exportable — fix the dial (e.g. exit=k)"
                         ) from None
    for node in list(gm.graph.nodes):  # Identity (folded FiLM) and eval-mode Dropout: no-ops
        if node.op == "call_module" and isinstance(gm.get_submodule(node.target),
                                                   (nn.Identity, nn.Dropout)):
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm


def _channelwise(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        return type(gm.get_submodule(node.target)) in _CHANNELWISE
    return node.op == "call_function" and node.target in _CHANNELWISE_FN


@torch.no_grad()
def remove_zero_channels(gm: fx.GraphModule) -> int:
    """Remove all-zero input channels of convs where the producer can lose them too.

    A conv (groups 1) whose input slice ``w[:, c]`` is entirely zero ignores
    channel c. When its input comes from another conv (groups 1) through
    channel-wise modules only (BN, ReLU, pooling …), each node used once (a BN also
    called only there), channel c
    is removed from the producer's filters, the BNs in between and the
    consumer's input — the output is unchanged and the layers are narrower.

    Returns:
        The number of channels removed.
    """
    calls: dict[str, int] = {}
    for n in gm.graph.nodes:
        if n.op == "call_module":
            calls[n.target] = calls.get(n.target, 0) + 1
    removed = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_module":
            continue
        conv = gm.get_submodule(node.target)
        if type(conv) is not nn.Conv2d or conv.groups != 1 or calls[node.target] != 1:
            continue
        zero = ~(conv.weight != 0).transpose(0, 1).reshape(conv.in_channels, -1).any(dim=1)
        if not zero.any():
            continue
        chain, cur = [], node.args[0]
        while isinstance(cur, fx.Node) and len(cur.users) == 1 and _channelwise(gm, cur):
            if cur.op == "call_module" and calls[cur.target] != 1 and isinstance(
                    gm.get_submodule(cur.target), nn.BatchNorm2d):
                break  # a shared BN cannot lose channels (stateless modules may be shared)
            chain.append(cur)
            cur = cur.args[0]
        if not (isinstance(cur, fx.Node) and cur.op == "call_module" and len(cur.users) == 1
                and calls.get(cur.target) == 1):
            continue
        prod = gm.get_submodule(cur.target)
        if type(prod) is not nn.Conv2d or prod.groups != 1:
            continue
        keep = ~zero
        if not keep.any():
            keep[0] = True  # keep one channel so every shape stays valid
        idx = keep.nonzero().flatten()
        prod.weight = nn.Parameter(prod.weight[idx].clone())
        if prod.bias is not None:
            prod.bias = nn.Parameter(prod.bias[idx].clone())
        prod.out_channels = len(idx)
        for n in chain:
            if n.op != "call_module":
                continue
            bn = gm.get_submodule(n.target)
            if isinstance(bn, nn.BatchNorm2d):
                for attr in ("weight", "bias"):
                    t = getattr(bn, attr)
                    if t is not None:
                        setattr(bn, attr, nn.Parameter(t[idx].clone()))
                bn.running_mean = bn.running_mean[idx].clone()
                bn.running_var = bn.running_var[idx].clone()
                bn.num_features = len(idx)
        conv.weight = nn.Parameter(conv.weight[:, idx].clone())
        conv.in_channels = len(idx)
        removed += int((~keep).sum())
    return removed


def _encode(value: Any, where: str) -> Any:
    if isinstance(value, fx.Node):
        return {"node": value.name}
    if isinstance(value, tuple):
        return {"tuple": [_encode(v, where) for v in value]}
    if isinstance(value, list):
        return [_encode(v, where) for v in value]
    if isinstance(value, slice):
        return {"slice": [_encode(value.start, where), _encode(value.stop, where),
                          _encode(value.step, where)]}
    if value is None or isinstance(value, (bool, int, float)):
        return value
    raise ValueError(f"{where}: cannot export an argument of type {type(value).__name__} "
                     f"({value!r}); the export format takes numbers, booleans, None, lists, "
                     "tuples, slices and graph nodes")


def _function_name(fn: Any, where: str) -> str:
    if fn in _ALIASES:
        return _ALIASES[fn]
    for name, spec in FUNCTIONS.items():
        if spec.fn is fn:
            return name
    qual = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__name__', repr(fn))}"
    raise ValueError(f"{where}: cannot export a call to {qual}; the loader's fixed function "
                     f"table has {sorted(FUNCTIONS)} (robustdial/export/loader.py)")


def _module_args(m: nn.Module) -> dict[str, Any]:
    args: dict[str, Any] = {}
    allowed = MODULES[type(m).__name__].args
    for pname, p in inspect.signature(type(m).__init__).parameters.items():
        if pname in ("self", "device", "dtype") or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if pname not in allowed:  # a newer torch argument the loader's table does not check yet
            raise ValueError(f"{type(m).__name__} has a constructor argument {pname!r} that the "
                             "loader's MODULES table does not know; add it there")
        if pname == "bias" and isinstance(m, (nn.Conv2d, nn.Linear)):
            args["bias"] = m.bias is not None
            continue
        if pname == "bias" and isinstance(m, nn.BatchNorm2d):  # keyword of newer torch only:
            if m.affine and m.bias is None:  # written when not the default, so that other
                args["bias"] = False  # torch versions load the usual exports
            continue
        if not hasattr(m, pname):
            continue
        v = getattr(m, pname)
        args[pname] = list(v) if isinstance(v, tuple) else v
    return args


def graph_layout(gm: fx.GraphModule) -> dict[str, Any]:
    """The JSON layout of a traced plain model (see the module doc).

    Raises:
        ValueError: a layer, function, method or argument that the loader's fixed
            tables do not have (the message names the node).
    """
    modules: dict[str, Any] = {}
    constants: list[str] = []
    nodes = []
    for n in gm.graph.nodes:
        target: Any = n.target
        where = f"node {n.name} ({n.op} {getattr(n.target, '__name__', n.target)})"
        if n.op == "call_module":
            m = gm.get_submodule(n.target)
            spec = MODULES.get(type(m).__name__)
            if spec is None or spec.cls is not type(m):
                raise ValueError(f"{where}: module {n.target} ({type(m).__name__}) is not one of "
                                 f"the loader's layers {sorted(MODULES)} and cannot be exported")
            modules[n.target] = {"type": type(m).__name__, "args": _module_args(m)}
        elif n.op == "call_function":
            target = _function_name(n.target, where)
        elif n.op == "call_method":
            if n.target not in METHODS:
                raise ValueError(f"{where}: cannot export the tensor method {n.target!r}; the "
                                 f"loader's fixed method table has {sorted(METHODS)}")
        elif n.op == "get_attr":
            constants.append(n.target)
        elif n.op == "placeholder":
            if n.args:
                raise ValueError(f"{where}: inputs with default values cannot be exported")
            target = n.name
        nodes.append({"name": n.name, "op": n.op, "target": target,
                      "args": [_encode(a, where) for a in n.args],
                      "kwargs": {k: _encode(v, where) for k, v in n.kwargs.items()}})
    return {"format": FORMAT, "modules": modules, "constants": constants, "graph": nodes}
