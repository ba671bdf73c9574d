"""Import every architecture file so its ``@register_model`` entrypoints register."""
from __future__ import annotations

import importlib
import logging

_log = logging.getLogger(__name__)

ARCHITECTURE_MODULES = ("small_cnn", "resnet", "preact_resnet", "resnet38", "wrn", "mobilenet_v2")

for _name in ARCHITECTURE_MODULES:
    try:
        importlib.import_module(f"robustdial.models.{_name}")
    except ModuleNotFoundError as exc:  # pragma: no cover - only while a file is missing
        if exc.name != f"robustdial.models.{_name}":
            raise
        _log.debug("architecture module %s not present", _name)
