"""Model zoo: ``create_model(name, **options)`` and ``list_models()``."""
from __future__ import annotations

from ._layers import LayerSet, build_layer_set, plain_layer_set
from ._registry import create_model, list_models, model_entrypoint, register_model

__all__ = ["LayerSet", "build_layer_set", "create_model", "list_models", "model_entrypoint",
           "plain_layer_set", "register_model"]
