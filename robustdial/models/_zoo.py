"""Import every architecture file so its ``@register_model`` entrypoints register."""
from __future__ import annotations

from . import mini_cnn, mobilenet_v2, preact_resnet, resnet, resnet38, small_cnn, wrn  # noqa: F401 (registration)

ARCHITECTURE_MODULES = ("mini_cnn", "small_cnn", "resnet", "preact_resnet", "resnet38", "wrn", "mobilenet_v2")
