"""Load a model exported by ``robustdial export`` — one standalone file, torch + safetensors only.

The loader lives in the robustdial repository at ``robustdial/export/loader.py``
and is not shipped inside the artifact (an artifact never contains code). Use it
as ``robustdial.export.load_exported(dir)``, or copy this single file anywhere
(it imports nothing from robustdial)::

    from loader import load_exported
    model = load_exported("export_dir")          # an nn.Module in eval mode
    logits = model(images)                       # images in [0, 1], (B, C, H, W)

or ``python loader.py EXPORT_DIR`` to print a summary and run a zero input.

An export (format ``robustdial-export/2``) is data only:

* ``model.safetensors`` — the tensors (safetensors never unpickles);
* ``layout.json`` — the network as a list of graph nodes. Every operation name
  in it is a key of a fixed table in this file (:data:`MODULES`,
  :data:`FUNCTIONS`, :data:`METHODS`); every module's constructor arguments are
  checked (types, ranges) against that table; node arguments are numbers,
  booleans, ``None``, lists and ``{"node": name}`` / ``{"tuple": [...]}`` /
  ``{"slice": [start, stop, step]}`` and nothing else.

The graph is run by a small interpreter loop (:class:`ExportedModel`). No string
from the artifact is ever imported, looked up as an attribute, compiled,
evaluated or turned into code; ``torch.load`` and pickle are never used.
Anything not in the tables is refused with a ``ValueError`` naming the node.
Artifacts of the older format ``robustdial-export/1`` are refused (re-export
them with a current robustdial).
"""
from __future__ import annotations

import json
import logging
import math
import operator
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

__all__ = ["FORMAT", "FUNCTIONS", "METHODS", "MODULES", "ExportedModel", "load_exported",
           "read_layout"]

FORMAT = "robustdial-export/2"
OLD_FORMATS = ("robustdial-export/1",)
LAYOUT_FILE = "layout.json"
WEIGHTS_FILE = "model.safetensors"
MAX_LAYOUT_BYTES = 64 * 2**20  # a layout is a few hundred kB even for WRN-34-10
MAX_NESTING = 6  # nesting depth of one node argument (lists / tuples)
_MAX_DIM = 2**24  # channel / feature counts and kernel sizes above this are refused

_log = logging.getLogger(__name__)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")  # node names, placeholder and kwarg names
_COMPONENT = re.compile(r"[A-Za-z0-9_]+\Z")  # one part of a dotted module / tensor name
_NODE_KEYS = frozenset({"name", "op", "target", "args", "kwargs"})


# ---------------------------------------------------------------------------
# Fixed tables: artifact strings are only ever used as keys into these.
# ---------------------------------------------------------------------------
def _check_int(v: Any, lo: int, hi: int = _MAX_DIM) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ValueError(f"expected an integer in [{lo}, {hi}], got {v!r}")


def _pos_int(v: Any) -> Any:
    _check_int(v, 1)
    return v


def _nonneg_int(v: Any) -> Any:
    _check_int(v, 0)
    return v


def _any_int(v: Any) -> Any:
    _check_int(v, -64, 64)  # a dimension index
    return v


def _bool(v: Any) -> Any:
    if not isinstance(v, bool):
        raise ValueError(f"expected true or false, got {v!r}")
    return v


def _false(v: Any) -> Any:
    if v is not False:
        raise ValueError(f"only false is supported, got {v!r}")
    return v


def _float(lo: float, hi: float, none: bool = False) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if v is None and none:
            return v
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                or not lo <= v <= hi:
            raise ValueError(f"expected a number in [{lo}, {hi}]{' or null' if none else ''}, "
                             f"got {v!r}")
        return float(v)
    return check


def _pair(item: Callable[[Any], Any], none: bool = False) -> Callable[[Any], Any]:
    """An int (checked by ``item``) or a list of two; ``None`` too if ``none``."""
    def check(v: Any) -> Any:
        if v is None and none:
            return v
        if isinstance(v, list):
            if len(v) != 2:
                raise ValueError(f"expected one value or a list of two, got {v!r}")
            return tuple(item(e) for e in v)
        return item(v)
    return check


def _choice(*values: Any) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if not isinstance(v, str) or v not in values:
            raise ValueError(f"expected one of {list(values)}, got {v!r}")
        return v
    return check


def _padding(v: Any) -> Any:
    if isinstance(v, str):
        return _choice("same", "valid")(v)
    return _pair(_nonneg_int)(v)


def _out_size(v: Any) -> Any:
    return None if v is None else _pos_int(v)


@dataclass(frozen=True)
class ModuleSpec:
    """A whitelisted ``torch.nn`` class and a checker per constructor argument."""

    cls: type[nn.Module]
    args: Mapping[str, Callable[[Any], Any]]
    has_params: bool = False


@dataclass(frozen=True)
class OpSpec:
    """A whitelisted function: the callable, its positional arity and allowed kwargs."""

    fn: Callable[..., Any]
    min_args: int
    max_args: int
    kwargs: frozenset[str] = frozenset()


_CONV = {"in_channels": _pos_int, "out_channels": _pos_int, "kernel_size": _pair(_pos_int),
         "stride": _pair(_pos_int), "padding": _padding, "dilation": _pair(_pos_int),
         "groups": _pos_int, "bias": _bool,
         "padding_mode": _choice("zeros", "reflect", "replicate", "circular")}
_POOL = {"kernel_size": _pair(_pos_int), "stride": _pair(_pos_int, none=True),
         "padding": _pair(_nonneg_int), "ceil_mode": _bool}

MODULES: Mapping[str, ModuleSpec] = MappingProxyType({
    "Conv2d": ModuleSpec(nn.Conv2d, MappingProxyType(_CONV), True),
    "Linear": ModuleSpec(nn.Linear, MappingProxyType(
        {"in_features": _pos_int, "out_features": _pos_int, "bias": _bool}), True),
    "BatchNorm2d": ModuleSpec(nn.BatchNorm2d, MappingProxyType(
        {"num_features": _pos_int, "eps": _float(0.0, 1.0), "momentum": _float(0.0, 1.0, none=True),
         "affine": _bool, "track_running_stats": _bool, "bias": _bool}), True),
    "ReLU": ModuleSpec(nn.ReLU, MappingProxyType({"inplace": _bool})),
    "ReLU6": ModuleSpec(nn.ReLU6, MappingProxyType({"inplace": _bool})),
    "MaxPool2d": ModuleSpec(nn.MaxPool2d, MappingProxyType(
        {**_POOL, "dilation": _pair(_pos_int), "return_indices": _false})),
    "AvgPool2d": ModuleSpec(nn.AvgPool2d, MappingProxyType(
        {**_POOL, "count_include_pad": _bool, "divisor_override": _out_size})),
    "AdaptiveAvgPool2d": ModuleSpec(nn.AdaptiveAvgPool2d, MappingProxyType(
        {"output_size": _pair(_out_size)})),
    "Flatten": ModuleSpec(nn.Flatten, MappingProxyType({"start_dim": _any_int, "end_dim": _any_int})),
    "Identity": ModuleSpec(nn.Identity, MappingProxyType({})),
})

FUNCTIONS: Mapping[str, OpSpec] = MappingProxyType({
    "add": OpSpec(operator.add, 2, 2),
    "sub": OpSpec(operator.sub, 2, 2),
    "mul": OpSpec(operator.mul, 2, 2),
    "truediv": OpSpec(operator.truediv, 2, 2),
    "getitem": OpSpec(operator.getitem, 2, 2),
    "flatten": OpSpec(torch.flatten, 1, 3, frozenset({"start_dim", "end_dim"})),
    "cat": OpSpec(torch.cat, 1, 2, frozenset({"dim"})),
    "mean": OpSpec(torch.mean, 1, 3, frozenset({"dim", "keepdim"})),
    "relu": OpSpec(F.relu, 1, 2, frozenset({"inplace"})),
    "relu6": OpSpec(F.relu6, 1, 2, frozenset({"inplace"})),
    "conv2d": OpSpec(F.conv2d, 2, 7, frozenset({"bias", "stride", "padding", "dilation", "groups"})),
    "linear": OpSpec(F.linear, 2, 3, frozenset({"bias"})),
    # no ``training`` argument: the running statistics are never updated
    "batch_norm": OpSpec(F.batch_norm, 3, 5, frozenset({"weight", "bias", "momentum", "eps"})),
    "adaptive_avg_pool2d": OpSpec(F.adaptive_avg_pool2d, 2, 2, frozenset({"output_size"})),
    "avg_pool2d": OpSpec(F.avg_pool2d, 2, 7, frozenset(
        {"kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"})),
    "max_pool2d": OpSpec(F.max_pool2d, 2, 7, frozenset(
        {"kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"})),
})

# Tensor methods: the first argument (self) must be a node holding a tensor.
METHODS: Mapping[str, OpSpec] = MappingProxyType({
    "size": OpSpec(torch.Tensor.size, 1, 2, frozenset({"dim"})),
    "dim": OpSpec(torch.Tensor.dim, 1, 1),
    "view": OpSpec(torch.Tensor.view, 1, 9),
    "reshape": OpSpec(torch.Tensor.reshape, 1, 9),
    "flatten": OpSpec(torch.Tensor.flatten, 1, 3, frozenset({"start_dim", "end_dim"})),
    "mean": OpSpec(torch.Tensor.mean, 1, 3, frozenset({"dim", "keepdim"})),
    "relu": OpSpec(torch.Tensor.relu, 1, 1),
    "contiguous": OpSpec(torch.Tensor.contiguous, 1, 1),
    "add": OpSpec(torch.Tensor.add, 2, 2),
    "mul": OpSpec(torch.Tensor.mul, 2, 2),
})


# ---------------------------------------------------------------------------
# Layout validation: JSON -> checked program (no strings become code).
# ---------------------------------------------------------------------------
class _Ref:
    """A reference to an earlier node's value (index into the interpreter's slots)."""

    __slots__ = ("slot",)

    def __init__(self, slot: int) -> None:
        self.slot = slot


def read_layout(path: str | Path) -> dict[str, Any]:
    """Parse ``path/layout.json`` and check its format (no code is run).

    Raises:
        ValueError: unreadable, too large, or not format ``robustdial-export/2``
            (an older format is refused with a hint to re-export).
    """
    file = Path(path) / LAYOUT_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{file} not found: not a robustdial export directory")
    if file.stat().st_size > MAX_LAYOUT_BYTES:
        raise ValueError(f"{file} is larger than {MAX_LAYOUT_BYTES} bytes; refusing to parse it")
    try:
        layout = json.loads(file.read_text(encoding="utf-8"))  # NaN / inf refused where interpreted
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"{file} is not valid JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(layout, dict):
        raise ValueError(f"{file}: expected a JSON object at the top level")
    fmt = layout.get("format")
    if fmt in OLD_FORMATS:
        raise ValueError(f"{file}: format {fmt!r} is no longer loaded (its loader could run code "
                         f"from the artifact); re-export the checkpoint with a current robustdial "
                         f"(`robustdial export CKPT --dial ... --out DIR --overwrite`) to get "
                         f"{FORMAT!r}")
    if fmt != FORMAT:
        raise ValueError(f"{file}: format {fmt!r} is not supported; this loader reads {FORMAT!r}")
    return layout


def _dotted(name: Any, what: str) -> str:
    if not isinstance(name, str) or not name or len(name) > 512 \
            or not all(_COMPONENT.match(p) for p in name.split(".")):
        raise ValueError(f"{LAYOUT_FILE}: invalid {what} name {name!r} (dotted names of letters, "
                         "digits and '_' only)")
    return name


def _place(root: nn.Module, dotted: str, obj: nn.Module | torch.Tensor, what: str) -> nn.Module:
    """Put ``obj`` at ``dotted`` below ``root`` (plain containers on the way); returns its parent.

    Names are only compared with existing ones (``dir``), never looked up as attributes.
    """
    *parents, leaf = dotted.split(".")
    node = root
    for p in parents:
        child = node._modules.get(p)
        if child is None:
            if p in dir(node):
                raise ValueError(f"{LAYOUT_FILE}: {what} {dotted!r} collides with an attribute")
            child = nn.Module()
            node.add_module(p, child)
        node = child
    if leaf in dir(node):
        raise ValueError(f"{LAYOUT_FILE}: {what} {dotted!r} is defined twice or collides with an "
                         "attribute")
    if isinstance(obj, nn.Module):
        node.add_module(leaf, obj)
    else:
        node.register_buffer(leaf, obj)
    return node


def _build_module(name: str, spec: Any) -> nn.Module:
    if not isinstance(spec, dict) or set(spec) - {"type", "args"}:
        raise ValueError(f"module {name!r}: expected {{'type': ..., 'args': {{...}}}}, got {spec!r}")
    kind, args = spec.get("type"), spec.get("args", {})
    entry = MODULES.get(kind) if isinstance(kind, str) else None
    if entry is None:
        raise ValueError(f"module {name!r}: type {kind!r} is not allowed; allowed types: "
                         f"{sorted(MODULES)}")
    if not isinstance(args, dict):
        raise ValueError(f"module {name!r} ({kind}): args must be a JSON object")
    checked: dict[str, Any] = {}
    for key, value in args.items():
        check = entry.args.get(key)
        if check is None:
            raise ValueError(f"module {name!r} ({kind}): unknown argument {key!r}; allowed: "
                             f"{sorted(entry.args)}")
        try:
            checked[key] = check(value)
        except ValueError as exc:
            raise ValueError(f"module {name!r} ({kind}): argument {key!r}: {exc}") from None
    if entry.has_params:
        checked["device"] = "meta"  # real tensors come from model.safetensors (assign=True)
    try:
        return entry.cls(**checked)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"module {name!r} ({kind}): {exc}") from None


def _arg(value: Any, slots: Mapping[str, int], where: str, depth: int = 0) -> Any:
    """Check one argument value; node references become :class:`_Ref`."""
    if depth > MAX_NESTING:
        raise ValueError(f"{where}: arguments nested deeper than {MAX_NESTING}")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) > 2**62:
            raise ValueError(f"{where}: integer {value} out of range")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: non-finite number {value!r}")
        return value
    if isinstance(value, list):
        return [_arg(v, slots, where, depth + 1) for v in value]
    if isinstance(value, dict) and len(value) == 1:
        (kind, inner), = value.items()
        if kind == "node":
            if not isinstance(inner, str) or inner not in slots:
                raise ValueError(f"{where}: reference to unknown or later node {inner!r}")
            return _Ref(slots[inner])
        if kind == "tuple" and isinstance(inner, list):
            return tuple(_arg(v, slots, where, depth + 1) for v in inner)
        if kind == "slice" and isinstance(inner, list) and len(inner) == 3:
            parts = [_arg(v, slots, where, depth + 1) for v in inner]
            if not all(p is None or isinstance(p, (int, _Ref)) and not isinstance(p, bool)
                       for p in parts):
                raise ValueError(f"{where}: slice bounds must be integers, nodes or null")
            return slice(*parts)
    raise ValueError(f"{where}: argument {value!r} is not allowed (numbers, booleans, null, "
                     "lists, {'node'|'tuple'|'slice': ...} only)")


def _refs(value: Any) -> list[int]:
    if isinstance(value, _Ref):
        return [value.slot]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _refs(v)]
    if isinstance(value, slice):
        return _refs([value.start, value.stop, value.step])
    if isinstance(value, dict):
        return _refs(list(value.values()))
    return []


def _resolve(value: Any, env: list[Any]) -> Any:
    if isinstance(value, _Ref):
        return env[value.slot]
    if isinstance(value, list):
        return [_resolve(v, env) for v in value]
    if isinstance(value, tuple):
        return tuple(_resolve(v, env) for v in value)
    if isinstance(value, slice):
        return slice(_resolve(value.start, env), _resolve(value.stop, env), _resolve(value.step, env))
    return value


@dataclass
class _Step:
    name: str
    op: str
    target: str
    fn: Any  # a whitelisted callable, a module, or (owner, leaf) of a constant
    args: tuple
    kwargs: dict[str, Any]
    simple: bool  # all args are direct refs and no kwargs
    free: tuple[int, ...] = ()  # slots whose last use is this step


_OPS = ("placeholder", "get_attr", "call_module", "call_function", "call_method", "output")


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...'"


def _lookup(op: Any, target: Any, name: str, where: str, modules: Mapping[str, nn.Module],
            constants: Mapping[str, tuple[nn.Module, str]]) -> Any:
    """The loader's own object for a node's (op, target): a table entry, a module or a constant."""
    if op not in _OPS:
        raise ValueError(f"{where}: unknown op; allowed: {', '.join(_OPS)}")
    if op == "placeholder":
        if target != name:
            raise ValueError(f"{where}: an input node's target must equal its name")
        return None
    if op == "output":
        return None
    if not isinstance(target, str):
        raise ValueError(f"{where}: the target must be a string")
    if op == "get_attr":
        if target not in constants:
            raise ValueError(f"{where}: unknown constant (not declared in 'constants')")
        return constants[target]
    if op == "call_module":
        if target not in modules:
            raise ValueError(f"{where}: unknown module (not declared in 'modules')")
        return modules[target]
    table = FUNCTIONS if op == "call_function" else METHODS
    if target not in table:
        raise ValueError(f"{where}: {_short(target)} is not an allowed "
                         f"{'function' if op == 'call_function' else 'tensor method'}; "
                         f"allowed: {sorted(table)}")
    return table[target]


def _compile(layout: Mapping[str, Any], modules: Mapping[str, nn.Module],
             constants: Mapping[str, tuple[nn.Module, str]]) -> tuple[list[_Step], int, int]:
    graph = layout.get("graph")
    if not isinstance(graph, list) or not graph:
        raise ValueError(f"{LAYOUT_FILE}: 'graph' must be a non-empty list of nodes")
    slots: dict[str, int] = {}
    steps: list[_Step] = []
    n_inputs, output = 0, None
    for i, node in enumerate(graph):
        if not isinstance(node, dict) or set(node) - _NODE_KEYS or "op" not in node \
                or "name" not in node:
            raise ValueError(f"graph node #{i}: expected an object with keys {sorted(_NODE_KEYS)}, "
                             f"got {_short(node, 200)}")
        name, op, target = node["name"], node["op"], node.get("target")
        if not isinstance(name, str) or not _NAME.match(name) or name in slots:
            raise ValueError(f"graph node #{i} (op {_short(op)}): invalid or duplicate name "
                             f"{_short(name)}")
        where = f"graph node {name!r} (op {_short(op)}, target {_short(target)})"
        if output is not None:
            raise ValueError(f"{where}: nodes after the output node")
        fn = _lookup(op, target, name, where, modules, constants)  # before reading any argument
        raw_args, raw_kwargs = node.get("args", []), node.get("kwargs", {})
        if not isinstance(raw_args, list) or not isinstance(raw_kwargs, dict):
            raise ValueError(f"{where}: args must be a list and kwargs an object")
        args = tuple(_arg(a, slots, where) for a in raw_args)
        kwargs = {}
        for k, v in raw_kwargs.items():
            if not _NAME.match(k):
                raise ValueError(f"{where}: invalid keyword {_short(k)}")
            kwargs[k] = _arg(v, slots, where)
        if op in ("placeholder", "get_attr"):
            if args or kwargs:
                raise ValueError(f"{where}: takes no arguments")
            if op == "placeholder":
                if any(st.op != "placeholder" for st in steps):
                    raise ValueError(f"{where}: inputs must come first")
                n_inputs += 1
        elif op == "call_module":
            if len(args) != 1 or not isinstance(args[0], _Ref) or kwargs:
                raise ValueError(f"{where}: a module takes exactly one node as input")
        elif op in ("call_function", "call_method"):
            spec: OpSpec = fn
            if not spec.min_args <= len(args) <= spec.max_args or set(kwargs) - spec.kwargs:
                raise ValueError(f"{where}: takes {spec.min_args}..{spec.max_args} positional "
                                 f"arguments and keywords {sorted(spec.kwargs)}, got {len(args)} "
                                 f"and {sorted(kwargs)}")
            if op == "call_method" and not isinstance(args[0], _Ref):
                raise ValueError(f"{where}: a method is called on a node")
            fn = spec.fn
        else:  # output
            if len(args) != 1 or kwargs:
                raise ValueError(f"{where}: the output node has exactly one argument")
            output = args[0]
        simple = not kwargs and all(isinstance(a, _Ref) for a in args)
        steps.append(_Step(name, op, str(target), fn, args, kwargs, simple))
        slots[name] = len(slots)
    if output is None:
        raise ValueError(f"{LAYOUT_FILE}: the graph has no output node")
    if n_inputs == 0:
        raise ValueError(f"{LAYOUT_FILE}: the graph has no input (placeholder) node")
    last: dict[int, int] = {}
    for k, step in enumerate(steps):
        for s in _refs(list(step.args) + list(step.kwargs.values())):
            last[s] = k
    frees: dict[int, list[int]] = {}
    for s, k in last.items():
        if steps[k].op != "output":
            frees.setdefault(k, []).append(s)
    for k, ss in frees.items():
        steps[k].free = tuple(ss)
    return steps, n_inputs, len(slots)


class ExportedModel(nn.Module):
    """An exported network: whitelisted layers run by a fixed interpreter loop.

    ``model(x)`` evaluates the layout's graph node by node; each value is freed
    after its last use. The layers are ordinary ``torch.nn`` modules below this
    one (its ``state_dict`` keys are the names in ``model.safetensors``), so
    ``.to(device)``, ``.half()`` and hooks work as usual.

    Attributes:
        layout: the parsed ``layout.json`` (dials, input shape, provenance …).
    """

    def __init__(self, layout: dict[str, Any], tensors: Mapping[str, torch.Tensor]) -> None:
        super().__init__()
        self.layout = layout
        self._steps: list[_Step] = []
        self._n_inputs = self._n_slots = 0
        mods = layout.get("modules", {})
        consts = layout.get("constants", [])
        if not isinstance(mods, dict) or not isinstance(consts, list):
            raise ValueError(f"{LAYOUT_FILE}: 'modules' must be an object and 'constants' a list")
        modules: dict[str, nn.Module] = {}
        for name, spec in mods.items():
            _dotted(name, "module")
            modules[name] = _build_module(name, spec)
            _place(self, name, modules[name], "module")
        constants: dict[str, tuple[nn.Module, str]] = {}
        for name in consts:
            _dotted(name, "constant")
            if name not in tensors:
                raise ValueError(f"constant {name!r} is missing from {WEIGHTS_FILE}")
            constants[name] = (_place(self, name, tensors[name], "constant"), name.split(".")[-1])
        expected = set(self.state_dict())
        if expected != set(tensors):
            missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
            raise ValueError(f"{WEIGHTS_FILE} does not match {LAYOUT_FILE}: missing tensors "
                             f"{missing[:10]}, unexpected tensors {extra[:10]}")
        try:
            self.load_state_dict(dict(tensors), strict=True, assign=True)
        except RuntimeError as exc:
            raise ValueError(f"{WEIGHTS_FILE} does not match {LAYOUT_FILE}: {exc}") from None
        self._steps, self._n_inputs, self._n_slots = _compile(layout, modules, constants)

    def forward(self, *inputs: torch.Tensor) -> Any:
        """Run the graph on the inputs (one image batch for a robustdial export)."""
        if len(inputs) != self._n_inputs:
            raise TypeError(f"this model takes {self._n_inputs} input(s), got {len(inputs)}")
        env: list[Any] = [None] * self._n_slots
        for k, step in enumerate(self._steps):
            op = step.op
            if op == "placeholder":
                env[k] = inputs[k]
                continue
            if op == "get_attr":
                owner, leaf = step.fn
                env[k] = owner._buffers[leaf]
                continue
            if op == "output":
                return _resolve(step.args[0], env)
            if step.simple:
                args = [env[a.slot] for a in step.args]
                kwargs: dict[str, Any] = {}
            else:
                args = _resolve(list(step.args), env)
                kwargs = {key: _resolve(v, env) for key, v in step.kwargs.items()}
            if op == "call_method" and not isinstance(args[0], torch.Tensor):
                raise TypeError(f"graph node {step.name!r}: method {step.target!r} called on a "
                                f"{type(args[0]).__name__}, not a tensor")
            env[k] = step.fn(*args, **kwargs)
            for s in step.free:
                env[s] = None
        raise RuntimeError("the graph has no output node")  # unreachable: checked when loading

    def extra_repr(self) -> str:
        return f"format={FORMAT!r}, nodes={len(self._steps)}, dials={self.layout.get('dials')}"


def load_exported(path: str | Path, device: str | torch.device = "cpu") -> ExportedModel:
    """Rebuild an exported network from ``path/layout.json`` and ``path/model.safetensors``.

    Args:
        path: the export directory written by ``robustdial export`` /
            ``robustdial.export.export_model``.
        device: where to put the tensors.

    Returns:
        The network in eval mode; ``model(images)`` -> logits.

    Raises:
        ValueError: the artifact is not a valid ``robustdial-export/2`` export,
            or uses a layer, function or argument outside the fixed tables
            (the message names the node and its op). Nothing from the
            artifact is executed.
    """
    path = Path(path)
    layout = read_layout(path)
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} not found")
    tensors = load_file(str(weights))  # safetensors: raw tensor bytes, no pickle
    model = ExportedModel(layout, tensors)
    _log.debug("loaded %s: %d modules, %d nodes", path, len(layout.get("modules", {})),
               len(model._steps))
    return model.to(device).eval()


def _main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        print("usage: python loader.py EXPORT_DIR", file=sys.stderr)
        return 2
    net = load_exported(argv[0])
    shape = net.layout.get("input_shape", [3, 32, 32])
    if not (isinstance(shape, list) and 1 <= len(shape) <= 4
            and all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= 4096 for s in shape)):
        raise ValueError(f"{LAYOUT_FILE}: invalid input_shape {shape!r}")
    with torch.no_grad():
        out = net(torch.zeros(1, *shape))
    print(f"loaded {len(net.layout.get('modules', {}))} modules at dials {net.layout.get('dials')}; "
          f"output shape {tuple(out.shape)}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
