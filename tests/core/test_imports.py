"""Plain imports: every public name resolves to the same object whatever was imported first.

The old package used lazy ``__getattr__`` importers and a callable module, so
``rd.compress.quantize`` was a function or a module depending on import order.
Here every ``__all__`` name of every module is resolved in fresh interpreters
after importing all modules in different orders, and must be the same object
(by its kind, module and qualified name) as after a plain ``import robustdial``.
"""
from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import robustdial

REPO = Path(__file__).resolve().parents[2]

_PROBE = r"""
import importlib, json, random, sys, types
order = json.loads(sys.argv[1])
for name in order:
    importlib.import_module(name)
import robustdial
out = {}
for name in sorted(sys.modules):
    if not (name == "robustdial" or name.startswith("robustdial.")) or name.endswith("__main__"):
        continue
    mod = sys.modules[name]
    for attr in getattr(mod, "__all__", []):
        obj = getattr(mod, attr)
        if isinstance(obj, types.ModuleType):
            sig = "module " + obj.__name__
        else:
            sig = f"{type(obj).__name__} {getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', attr)}"
        out[f"{name}.{attr}"] = sig
# the case the issue reported: noise-injected ensemble first, then the projection function
rd = robustdial
rd.create_model("preact_resnet20", noise_injection=0.1, ensemble=2)
import torch
out["quantize-call"] = str(rd.compress.quantize(torch.ones(3), "binary").tolist())
out["evaluate-callable"] = str(callable(rd.evaluate) and not isinstance(rd.evaluate, types.ModuleType))
print(json.dumps(out))
"""


def _modules() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages(robustdial.__path__, "robustdial.")
             if not m.name.endswith("__main__")]
    return sorted(names)


def _resolve(order: list[str]) -> dict[str, str]:
    res = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(order)], cwd=REPO,
                         capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_every_public_name_resolves_the_same_whatever_the_import_order():
    mods = _modules()
    reference = _resolve([])
    assert reference["quantize-call"] == "[1.0, 1.0, 1.0]"
    assert reference["evaluate-callable"] == "True"
    for order in (list(reversed(mods)), mods[1::2] + mods[::2]):
        got = _resolve(order)
        diff = {k: (reference.get(k), v) for k, v in got.items() if reference.get(k, v) != v}
        assert not diff, diff


def test_no_public_function_shares_its_name_with_a_module():
    import importlib
    import types

    mods = set(_modules())
    for name in ["robustdial", *sorted(mods)]:
        mod = importlib.import_module(name)
        for attr in getattr(mod, "__all__", []):
            if f"{name}.{attr}" in mods:  # a sub-module of that name exists: the export must be it
                assert isinstance(getattr(mod, attr), types.ModuleType), f"{name}.{attr}"


def test_package_inits_have_no_lazy_getattr():
    for init in (REPO / "robustdial").rglob("__init__.py"):
        text = init.read_text()
        assert "def __getattr__" not in text, init
        assert "__class__ =" not in text, init  # the old callable-module trick
