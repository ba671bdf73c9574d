"""Import every architecture file so its ``@register_model`` entrypoints register."""
from __future__ import annotations

import importlib

ARCHITECTURE_MODULES = ("small_cnn", "resnet", "preact_resnet", "resnet38", "wrn", "mobilenet_v2")

for _name in ARCHITECTURE_MODULES:
    importlib.import_module(f"robustdial.models.{_name}")
