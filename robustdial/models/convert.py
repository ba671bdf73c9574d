"""Load the RDI-Nets authors' released ResNet-38 checkpoint into ``create_model("resnet38", exits=True)``.

Hu, Chen, Wang, Wang, "Triple Wins" (RDI-Nets), ICLR 2020; weights from
VITA-Group/triple-wins, ``cifar/checkpoint_60000.pth.tar`` (Max-Average
defence, 60,000 iterations, 692,310 parameters). The checkpoint is a dict
``{arch, state_dict, iter, best_prec1}`` whose keys carry DataParallel's
``module.`` prefix; :func:`robustdial.models.resnet38.authors_key` maps each
key to this library's ``segments`` / ``heads`` layout, and the weights load
strictly, so a missing or extra tensor is an error, never silently ignored.
The model takes inputs in [0, 1] without normalization, as the authors'.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

__all__ = ["convert_rdi_checkpoint", "convert_rdi_state_dict"]

_log = logging.getLogger(__name__)


def convert_rdi_state_dict(state_dict: dict[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """Rename the authors' ResNet-38 (with branches) keys to ``resnet38(exits=True)``'s names.

    Raises:
        KeyError: a key the mapping does not know (not an RDI ResNet-38).
    """
    from .resnet38 import authors_key

    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in state_dict.items():
        new = authors_key(key, exits=True)
        if new in out:
            raise KeyError(f"two checkpoint keys map to {new!r}")
        out[new] = value
    return out


def convert_rdi_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> nn.Module:
    """Build ``create_model("resnet38", exits=True)`` and load the authors' weights into it.

    Args:
        path: the authors' ``checkpoint_60000.pth.tar`` (or any checkpoint of
            their ``cifar10_resnet_38`` with branches).
        map_location: where tensors are loaded (the file was saved on CUDA).

    Returns:
        The model in eval mode, with the paper's exit weights and thresholds
        {0.32, 0.36, 0.39, 0.83, 1.12, 1.35} in ``exit_thresholds``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not such a checkpoint, or its tensors do not
            match the architecture (the message lists the differences).
    """
    from . import create_model

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; the authors' file is "
                                "cifar/checkpoint_60000.pth.tar from VITA-Group/triple-wins")
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds no state dict (got {type(ckpt).__name__})")
    arch = ckpt.get("arch") if isinstance(ckpt, dict) else None
    if arch is not None and "resnet_38" not in str(arch):
        raise ValueError(f"{path} is a {arch!r} checkpoint; only cifar10_resnet_38 converts")
    try:
        renamed = convert_rdi_state_dict(state)
    except KeyError as exc:
        raise ValueError(f"{path} is not an RDI ResNet-38 checkpoint: {exc}") from None
    fc = [k for k in state if k.removeprefix("module.") == "fc.weight"]
    if not fc:
        raise ValueError(f"{path} has no final classifier 'fc.weight'; not an RDI ResNet-38")
    num_classes = int(state[fc[0]].shape[0])
    model = create_model("resnet38", num_classes=num_classes, exits=True)
    # The authors keep the thresholds in code, not in the checkpoint: keep the
    # paper's values that the model was built with.
    renamed.setdefault("exit_thresholds", model.exit_thresholds.clone())
    missing, unexpected = model.load_state_dict(renamed, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path} does not match resnet38(exits=True): missing {missing}, "
                         f"unexpected {unexpected}")
    _log.info("loaded %s (arch %s, iteration %s)", path, arch, ckpt.get("iter"))
    return model.eval()
